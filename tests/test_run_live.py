"""``python main.py run`` in LIVE mode as a real process against the fake Binance futures server (real
``binance.AsyncClient``, real HTTP on 127.0.0.1, real bundled data).

The fake's clock starts at 2025-03-03 21:15 UTC: on the real data, Vigil's own technical voter signals an
ETHUSDT short at that candle close (the demo shows the same entry), so the process opens a real position
without any test-only strategy.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures
from tests.vigil_process import ROOT, Vigil, heartbeat, process_env, query

SIGNAL_TIME = datetime(2025, 3, 3, 21, 15, 1, tzinfo=UTC)
pytestmark = pytest.mark.slow


def live_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    return process_env(tmp_path, base_url, TRADING_MODE="live", BINANCE_API_KEY=TEST_API_KEY,
                       BINANCE_API_SECRET=TEST_API_SECRET, SYMBOLS="ETHUSDT,BTCUSDT", SCAN_INTERVAL_SECONDS="2",
                       **extra)


def open_algos(fake: FakeBinanceFutures, symbol: str, order_type: str | None = None) -> list[dict[str, Any]]:
    return [a for a in fake.algo_orders.values() if a["symbol"] == symbol and a["algoStatus"] == "NEW"
            and (order_type is None or a["orderType"] == order_type)]


def position_amt(fake: FakeBinanceFutures, symbol: str) -> Decimal:
    return fake.positions[symbol].amount


def market_orders(fake: FakeBinanceFutures, symbol: str) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o["symbol"] == symbol]


heartbeats = heartbeat


# ----------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("case", ["hedge", "multi_assets", "bad_key"])
async def test_startup_refuses_unsafe_accounts_with_one_line(tmp_path: Path, case: str):
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        env = live_env(tmp_path, fake.base_url)
        if case == "hedge":
            fake.set_hedge_mode()
        elif case == "multi_assets":
            fake.set_multi_assets()
        else:
            env["BINANCE_API_KEY"] = "not-the-right-key"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "run", env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = [line for line in out.decode().splitlines() if line.startswith("vigil:")]
    assert len(lines) == 1, out.decode() + err.decode()
    expected = {"hedge": "Hedge mode", "multi_assets": "Multi-Assets mode", "bad_key": "API key"}[case]
    assert expected in lines[0]
    assert "Traceback" not in out.decode() + err.decode()
    assert "not-the-right-key" not in out.decode() + err.decode()
    assert not fake.orders and not fake.algo_orders


# ----------------------------------------------------------------------------------------- full trade
async def next_ticks(vigil: Vigil, db_path: Path, count: int = 2) -> None:
    for _ in range(count):
        seen = heartbeats(db_path)
        await vigil.wait_until(lambda seen=seen: heartbeats(db_path) > seen)


FINE_WINDOWS = ((datetime(2025, 3, 4, 0, 50, tzinfo=UTC), datetime(2025, 3, 4, 2, 30, tzinfo=UTC)),
                (datetime(2025, 3, 4, 14, 50, tzinfo=UTC), datetime(2025, 3, 4, 17, 0, tzinfo=UTC)))


async def test_live_entry_trailing_stop_and_take_profit_booking(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(open_algos(fake, "ETHUSDT")) == 2)
            # the stop and the take-profit went through the Algo Order API with the exact parameters
            posts = [r.params for r in fake.calls("/fapi/v1/algoOrder", "POST")]
            assert [p["type"] for p in posts] == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
            for p in posts:
                assert (p["algoType"], p["closePosition"], p["workingType"], p["side"]) == (
                    "CONDITIONAL", "true", "MARK_PRICE", "BUY")
            assert fake.calls("/fapi/v1/order", "POST")[0].params["newClientOrderId"].endswith("-E1")
            assert position_amt(fake, "ETHUSDT") < 0
            first_stop = Decimal(posts[0]["triggerPrice"])
            await vigil.wait_until(lambda: query(db_path, "SELECT status FROM trades") == [("OPEN",)])

            # replay the real market: hourly, and candle by candle (5m) through the two sell-offs of 03-04
            # (01:00-02:30, 1R reached: partial exit + stop to break-even; 15:00-16:40, take-profit)
            while query(db_path, "SELECT status FROM trades") == [("OPEN",)]:
                assert fake.now < datetime(2025, 3, 5, tzinfo=UTC), "the trade never closed"
                fine = any(start <= fake.now < end for start, end in FINE_WINDOWS)
                await fake.advance(timedelta(minutes=5) if fine else timedelta(hours=1))
                await next_ticks(vigil, db_path)
                assert len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) <= 1  # never two stops
                if position_amt(fake, "ETHUSDT") != 0:
                    assert len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) == 1  # never unprotected
        finally:
            code = await vigil.terminate()
        assert code == 0

        # the trailing stop was moved by cancel + place on the Algo Order API, only ever tightening
        stop_posts = [Decimal(r.params["triggerPrice"]) for r in fake.calls("/fapi/v1/algoOrder", "POST")
                      if r.params["type"] == "STOP_MARKET"]
        assert len(stop_posts) >= 2 and stop_posts[0] == first_stop
        assert all(b < a for a, b in itertools.pairwise(stop_posts))   # a short's stop only moves down
        assert len(fake.calls("/fapi/v1/algoOrder", "DELETE")) >= len(stop_posts) - 1
        moved = query(db_path, "SELECT payload FROM events WHERE kind='StopMoved'")
        assert len(moved) == len(stop_posts) - 1

        # the close is booked from the exchange's own fills and funding income
        (entry, exit_price, qty, reason, pnl, fees, funding), = query(
            db_path, "SELECT entry_price, exit_price, initial_quantity, exit_reason, realized_pnl, fees, funding"
                     " FROM trades")
        eth_trades = [t for t in fake.trades if t["symbol"] == "ETHUSDT"]
        exits = [t for t in eth_trades if t["side"] == "BUY"]
        assert reason in ("take_profit", "trailing_stop")
        assert Decimal(pnl) == sum(Decimal(t["realizedPnl"]) for t in eth_trades)
        assert Decimal(pnl) == sum((Decimal(entry) - Decimal(t["price"])) * Decimal(t["qty"]) for t in exits)
        assert sum(Decimal(t["qty"]) for t in exits) == Decimal(qty)
        assert Decimal(fees) == sum(Decimal(t["commission"]) for t in eth_trades)
        expected_funding = sum(Decimal(i["income"]) for i in fake.income
                               if i["symbol"] == "ETHUSDT" and i["incomeType"] == "FUNDING_FEE")
        assert expected_funding != 0 and Decimal(funding) == expected_funding
        assert Decimal(exit_price) > 0 and open_algos(fake, "ETHUSDT") == []


async def test_live_take_profit_fill_is_booked_with_pnl_fees_and_funding(tmp_path: Path):
    """Exits management off: the exchange-side take-profit closes the trade and reconciliation books it."""
    db_path = tmp_path / "vigil.sqlite3"
    env = live_env(tmp_path, "", TRAIL_ENABLED="false", PARTIAL_LADDER="", STALE_AFTER_HOURS="0",
                   SIGNAL_EXIT_SCORE="0", TIME_STOP_HOURS="0")
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        env["BINANCE_BASE_URL"] = fake.base_url
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: query(db_path, "SELECT status FROM trades") == [("OPEN",)]
                                   and len(open_algos(fake, "ETHUSDT")) == 2)
            tp = Decimal(open_algos(fake, "ETHUSDT", "TAKE_PROFIT_MARKET")[0]["triggerPrice"])
            # real data: the ETH take-profit is reached on 2025-03-04 around 16:35 UTC; funding is paid on the way
            await fake.set_time(datetime(2025, 3, 4, 17, 0, tzinfo=UTC))
            assert position_amt(fake, "ETHUSDT") == 0
            await vigil.wait_until(lambda: query(db_path, "SELECT status FROM trades") == [("CLOSED",)])
        finally:
            assert await vigil.terminate() == 0
        (entry, exit_price, qty, reason, pnl, fees, funding), = query(
            db_path, "SELECT entry_price, exit_price, initial_quantity, exit_reason, realized_pnl, fees, funding"
                     " FROM trades")
        assert reason == "take_profit"
        eth_trades = [t for t in fake.trades if t["symbol"] == "ETHUSDT"]
        assert Decimal(exit_price) == Decimal(eth_trades[-1]["price"])
        assert abs(Decimal(exit_price) - tp) <= tp * Decimal("0.01")
        assert Decimal(pnl) == (Decimal(entry) - Decimal(exit_price)) * Decimal(qty)
        assert Decimal(fees) == sum(Decimal(t["commission"]) for t in eth_trades)
        expected_funding = sum(Decimal(i["income"]) for i in fake.income
                               if i["symbol"] == "ETHUSDT" and i["incomeType"] == "FUNDING_FEE")
        assert expected_funding != 0 and Decimal(funding) == expected_funding
        assert open_algos(fake, "ETHUSDT") == []


# ----------------------------------------------------------------------------------------- crash matrix
CRASH_POINTS = {
    # moment → (fault to arm, condition meaning "the process is now at that moment")
    "intent_written": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=False, delay=120),
                       lambda fake: len(fake.held) == 1),
    "order_sent_answer_lost": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=True, delay=120),
                               lambda fake: len(market_orders(fake, "ETHUSDT")) == 1),
    "filled_stop_not_placed": (dict(path="/fapi/v1/algoOrder", kind="timeout", method="POST", accept=False,
                                    delay=120), lambda fake: len(fake.held) == 1),
    "stop_placed": (dict(path="/fapi/v1/algoOrder", kind="timeout", method="POST", accept=False, delay=120, skip=1),
                    lambda fake: len(fake.held) == 1 and len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) == 1),
    "take_profit_placed": (None, lambda fake: len(open_algos(fake, "ETHUSDT")) == 2),
}


@pytest.mark.parametrize("moment", list(CRASH_POINTS))
async def test_crash_matrix_entry(tmp_path: Path, moment: str):
    db_path = tmp_path / "vigil.sqlite3"
    fault, reached = CRASH_POINTS[moment]
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        if fault is not None:
            fake.faults.next(**fault)
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: reached(fake))
        finally:
            await vigil.kill()
        before = heartbeats(db_path)

        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            def settled() -> bool:
                active = query(db_path, "SELECT symbol, quantity FROM trades WHERE status IN ('OPEN','PENDING')")
                return (heartbeats(db_path) > before and position_amt(fake, "ETHUSDT") != 0
                        and len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) == 1
                        and active == [("ETHUSDT", str(-position_amt(fake, "ETHUSDT")))])
            await vigil.wait_until(settled)
            stable = heartbeats(db_path)
            await vigil.wait_until(lambda: heartbeats(db_path) > stable)  # one more full monitor tick
            assert settled()
        finally:
            await vigil.terminate()
        # exactly one position, protected by exactly one stop, and no order sent twice for one intent
        assert len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) == 1
        assert len(open_algos(fake, "ETHUSDT", "TAKE_PROFIT_MARKET")) <= 1
        ids = [o["clientOrderId"] for o in fake.orders.values()]
        assert len(ids) == len(set(ids))
        filled = [o for o in market_orders(fake, "ETHUSDT") if o["status"] == "FILLED"]
        assert len(filled) == 1
        algo_ids = [a["clientAlgoId"] for a in fake.algo_orders.values()]
        assert len(algo_ids) == len(set(algo_ids))
        # books equal the exchange
        (qty, entry), = query(db_path, "SELECT quantity, entry_price FROM trades WHERE status='OPEN'")
        assert Decimal(qty) == -position_amt(fake, "ETHUSDT")
        assert Decimal(entry) == fake.positions["ETHUSDT"].entry
        assert query(db_path, "SELECT count(*) FROM orders WHERE status IN ('INTENT', 'UNKNOWN')") == [(0,)]


# ----------------------------------------------------------------------------------------- crashes while managing
MANAGE_CRASHES = {
    # moment → (fault armed after the entry is protected, "the process is now at that moment")
    "partial_intent_written": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=False, delay=120),
                               lambda fake: len(fake.held) == 1),
    "partial_answer_lost": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=True, delay=120),
                            lambda fake: len(market_orders(fake, "ETHUSDT")) == 2),
    "old_stop_cancelled_new_not_placed": (
        dict(path="/fapi/v1/algoOrder", kind="timeout", method="POST", accept=False, delay=120),
        lambda fake: len(fake.held) == 1),
}


@pytest.mark.parametrize("moment", list(MANAGE_CRASHES))
async def test_crash_matrix_partial_exit_and_stop_move(tmp_path: Path, moment: str):
    """SIGKILL in the middle of the first ladder step (⅓ closed at 1R, then the stop moved by cancel + place):
    after a restart the position is protected by exactly one stop, no step is taken twice, books = exchange."""
    db_path = tmp_path / "vigil.sqlite3"
    fault, reached = MANAGE_CRASHES[moment]
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(open_algos(fake, "ETHUSDT")) == 2
                                   and query(db_path, "SELECT status FROM trades") == [("OPEN",)])
            fake.faults.next(**fault)
            while not reached(fake):
                assert fake.now < datetime(2025, 3, 4, 3, 0, tzinfo=UTC), "the first ladder step never came"
                fine = fake.now >= datetime(2025, 3, 4, 0, 50, tzinfo=UTC)
                await fake.advance(timedelta(minutes=5) if fine else timedelta(hours=1))
                seen = heartbeats(db_path)
                # kill at the moment itself: do not wait for the tick (and its timeouts) to finish
                await vigil.wait_until(lambda seen=seen: reached(fake) or heartbeats(db_path) > seen)
        finally:
            await vigil.kill()
        before = heartbeats(db_path)

        vigil = await Vigil(live_env(tmp_path, fake.base_url), tmp_path).start()
        try:
            await vigil.wait_until(lambda: heartbeats(db_path) > before)
            await next_ticks(vigil, db_path, 3)
        finally:
            assert await vigil.terminate() == 0
        amount = position_amt(fake, "ETHUSDT")
        assert amount != 0
        assert len(open_algos(fake, "ETHUSDT", "STOP_MARKET")) == 1
        ids = [o["clientOrderId"] for o in fake.orders.values()]
        ids += [a["clientAlgoId"] for a in fake.algo_orders.values()]
        assert len(ids) == len(set(ids))  # nothing sent twice
        partial_fills = [o for o in market_orders(fake, "ETHUSDT")
                         if o["reduceOnly"] is True and o["status"] == "FILLED"]
        booked = query(db_path, "SELECT count(*) FROM orders WHERE purpose='PARTIAL' AND status='FILLED'")[0][0]
        assert len(partial_fills) == booked == 1  # the first ladder step, exactly once
        (qty,), = query(db_path, "SELECT quantity FROM trades WHERE status='OPEN'")
        assert Decimal(qty) == -amount
        assert query(db_path, "SELECT count(*) FROM orders WHERE status IN ('INTENT', 'UNKNOWN')") == [(0,)]


# ----------------------------------------------------------------------------------------- crashes during an exit
EXIT_CRASHES = {
    # the exit is a reduce-only market order sent by the time stop; the entry was the first POST /order
    "exit_intent_written": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=False, delay=120,
                                 skip=1), lambda fake: len(fake.held) == 1),
    "exit_sent_answer_lost": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=True, delay=120,
                                   skip=1), lambda fake: len(market_orders(fake, "ETHUSDT")) == 2),
    "exit_filled_orders_not_cancelled": (dict(path="/fapi/v1/algoOrder", kind="timeout", method="DELETE",
                                              accept=False, delay=120), lambda fake: len(fake.held) == 1),
}


def trade_orders(fake: FakeBinanceFutures, trade_id: int) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if f"-{trade_id}-" in o["clientOrderId"]]


@pytest.mark.parametrize("moment", list(EXIT_CRASHES))
async def test_crash_matrix_exit(tmp_path: Path, moment: str):
    """SIGKILL at each moment of an exit (a 4-second time stop makes the process close its trade by itself):
    after a restart trade 1 is closed exactly once, booked with its reason, and nothing of it is left open."""
    db_path = tmp_path / "vigil.sqlite3"
    fault, reached = EXIT_CRASHES[moment]
    env = live_env(tmp_path, "", TIME_STOP_HOURS="0.001", TRAIL_ENABLED="false", PARTIAL_LADDER="")
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        env["BINANCE_BASE_URL"] = fake.base_url
        fake.faults.next(**fault)
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: reached(fake))
        finally:
            await vigil.kill()

        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: query(db_path, "SELECT status FROM trades WHERE id=1") == [("CLOSED",)])
            await next_ticks(vigil, db_path, 2)
        finally:
            assert await vigil.terminate() == 0
        (reason, qty, fees), = query(db_path, "SELECT exit_reason, initial_quantity, fees FROM trades WHERE id=1")
        assert reason == "time_stop" and Decimal(fees) > 0
        orders = trade_orders(fake, 1)
        exits = [o for o in orders if o["reduceOnly"] is True]
        assert len(exits) == 1 and exits[0]["status"] == "FILLED"  # closed exactly once
        assert Decimal(exits[0]["executedQty"]) == Decimal(qty)
        mine = [a for a in fake.algo_orders.values() if "-1-" in a["clientAlgoId"]]
        assert [a for a in mine if a["algoStatus"] == "NEW"] == []  # nothing of trade 1 left on the exchange
        ids = [o["clientOrderId"] for o in fake.orders.values()]
        assert len(ids) == len(set(ids))
        assert query(db_path, "SELECT count(*) FROM orders WHERE status IN ('INTENT', 'UNKNOWN')") == [(0,)]
