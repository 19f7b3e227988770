"""Issue 10's observed cases, end to end: ``python main.py run`` in LIVE mode as a real process against the fake
Binance server (and the fake Telegram Bot API for /kill)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.binance_server import FakeBinanceFutures
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.test_bot_harness import OPERATOR
from tests.test_run_live import SIGNAL_TIME, heartbeats, live_env, next_ticks, open_algos, position_amt
from tests.vigil_process import Vigil, query

pytestmark = pytest.mark.slow
BTC, ETH, SOL = "BTCUSDT", "ETHUSDT", "SOLUSDT"


def closes(fake: FakeBinanceFutures, symbol: str) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o["symbol"] == symbol and o["reduceOnly"] is True]


async def test_adopted_position_keeps_its_size_and_gets_one_stop_after_a_503_then_a_4509(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        fake.open_position_by_hand(BTC, "BUY", "0.01")
        fake.faults.next("/fapi/v1/algoOrder", "503_unavailable", method="POST", symbol=BTC)
        fake.faults.next("/fapi/v1/algoOrder", "error", method="POST", symbol=BTC, status=400, code=-4509,
                         msg="TIF GTE can only be used with open positions.")
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(open_algos(fake, BTC, "STOP_MARKET")) == 1)
            await next_ticks(vigil, db_path, 3)
        finally:
            assert await vigil.terminate() == 0
        assert fake.faults.pending == []  # both refusals were met
        assert position_amt(fake, BTC) == Decimal("0.01")
        assert len(open_algos(fake, BTC, "STOP_MARKET")) == 1 and closes(fake, BTC) == []
        assert query(db_path, "SELECT status, quantity FROM trades WHERE symbol='BTCUSDT'") == [("OPEN", "0.01")]


async def test_long_adopted_ten_percent_under_water_gets_one_stop_below_the_mark_and_nothing_is_sold(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        fake.open_position_by_hand(BTC, "BUY", "0.01")
        await fake.set_price(BTC, fake.positions[BTC].entry * Decimal("0.9"))
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(open_algos(fake, BTC, "STOP_MARKET")) == 1)
            await next_ticks(vigil, db_path, 3)
        finally:
            assert await vigil.terminate() == 0
        (stop,) = open_algos(fake, BTC, "STOP_MARKET")
        assert stop["side"] == "SELL" and Decimal(stop["triggerPrice"]) < fake.price(BTC)
        assert closes(fake, BTC) == [] and position_amt(fake, BTC) == Decimal("0.01")


def account_flat(fake: FakeBinanceFutures) -> bool:
    return (all(p.amount == 0 for p in fake.positions.values())
            and not [a for a in fake.algo_orders.values() if a["algoStatus"] == "NEW"]
            and not fake.open_orders())


async def test_kill_leaves_no_position_no_conditional_order_no_plain_order(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake, FakeTelegram() as telegram:
        fake.open_position_by_hand(BTC, "BUY", "0.01")  # adopted at start
        env = live_env(tmp_path, fake.base_url, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_ALLOWED_USER_IDS=str(OPERATOR),
                       TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{telegram.port}")
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(open_algos(fake, BTC, "STOP_MARKET")) == 1
                                   and len(open_algos(fake, ETH, "STOP_MARKET")) == 1)
            fake.open_position_by_hand(SOL, "SELL", "1")  # by hand, just before /kill
            fake.place_limit_by_hand(ETH, "BUY", "0.1", "1000")  # a resting order of the operator's
            telegram.push_text(OPERATOR, "/kill")
            await vigil.wait_until(lambda: any(m.reply_markup for (chat, _), m in telegram.messages.items()
                                               if chat == OPERATOR and "Kill" in m.text))
            message = telegram.last_message_with_buttons(OPERATOR)
            confirm = next(b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row
                           if b["callback_data"].startswith("c:"))
            telegram.press(OPERATOR, message, confirm)
            await vigil.wait_until(lambda: account_flat(fake), timeout=60)
            seen = heartbeats(db_path)
            await vigil.wait_until(lambda: heartbeats(db_path) > seen)
            await next_ticks(vigil, db_path, 3)  # and it stays flat: nothing adopted, nothing opened
            assert account_flat(fake)
        finally:
            assert await vigil.terminate() == 0
        assert account_flat(fake)
        assert query(db_path, "SELECT count(*) FROM trades WHERE status IN ('OPEN', 'PENDING')") == [(0,)]
        reasons = {r[0] for r in query(db_path, "SELECT exit_reason FROM trades WHERE status='CLOSED'")}
        assert reasons == {"kill_switch"}


async def test_sigterm_lets_the_job_in_flight_finish_before_closing(tmp_path: Path):
    """SIGTERM arrives while the entry's stop request is in flight (held by the exchange): the job finishes
    (the stop is placed) before the exchange client and the database close."""
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        fake.faults.next("/fapi/v1/algoOrder", "timeout", method="POST", accept=False, delay=3, symbol=ETH)
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(fake.held) == 1)
        finally:
            assert await vigil.terminate() == 0
        await asyncio.sleep(0)
        assert position_amt(fake, ETH) != 0
        assert len(open_algos(fake, ETH, "STOP_MARKET")) == 1
        assert query(db_path, "SELECT count(*) FROM orders WHERE status IN ('INTENT', 'UNKNOWN')") == [(0,)]
