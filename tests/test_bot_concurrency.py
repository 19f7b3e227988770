"""Updates are handled concurrently: a slow /scan or /chart does not hold up other commands, chart rendering
leaves the event loop, the auth gate still stops every stranger's update, and a confirmation pressed many
times at once acts once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.charts import render_equity_chart
from engine.market import MarketSnapshot
from engine.trading.halts import load_halts
from storage.records import EquityPoint, OrderPurpose
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_confirm import answers, confirm_and_cancel
from tests.test_bot_harness import (  # noqa: F401
    OPERATOR,
    STRANGER,
    Cockpit,
    close_cockpit,
    fake,
    open_cockpit,
    wait_for,
)


class GatedMarket:
    """The trader's market data, except that ``snapshot`` waits until the test opens the gate (a slow scan)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def snapshot(self, symbols: Iterable[str]) -> MarketSnapshot:
        self.entered.set()
        await self.release.wait()
        return await self.inner.snapshot(symbols)


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake)
    await trade_a_little(c)
    yield c
    await close_cockpit(c)


def quoting(cockpit: Cockpit, message_id: int) -> list:
    return [c for c in cockpit.fake.sent(chat_id=OPERATOR) if c.quoted == message_id]


async def test_a_slow_scan_does_not_block_other_commands(cockpit: Cockpit):
    gated = GatedMarket(cockpit.rig.trader.market)
    cockpit.rig.trader.market = gated
    scan = cockpit.fake.push_text(OPERATOR, "/scan")
    try:
        await asyncio.wait_for(gated.entered.wait(), 5)
        (status,) = await cockpit.send("/status")  # answered while the scan is still waiting for its data
        assert "Open positions 1" in status.text
        (positions,) = await cockpit.send("/positions")
        assert "BTCUSDT" in positions.text
        assert quoting(cockpit, scan) == []
    finally:
        gated.release.set()
    (reply,) = await cockpit.replies_to(scan, OPERATOR)
    assert "Scan at" in reply.text


async def test_chart_renders_off_the_event_loop(cockpit: Cockpit):
    entered, release = threading.Event(), threading.Event()
    threads: list[int] = []

    def slow_render(points: Sequence[EquityPoint], title: str) -> bytes:
        threads.append(threading.get_ident())
        entered.set()
        release.wait(10)  # on the loop this would freeze every other command for these seconds
        return render_equity_chart(points, title)

    cockpit.bot.ctx.render_chart = slow_render
    chart = cockpit.fake.push_text(OPERATOR, "/chart 2")
    try:
        await asyncio.to_thread(entered.wait, 5)
        (status,) = await cockpit.send("/status")
        assert "PAPER" in status.text and quoting(cockpit, chart) == []
    finally:
        release.set()
    (reply,) = await cockpit.replies_to(chart, OPERATOR, timeout=30)  # matplotlib's first import is slow
    assert reply.method == "sendPhoto" and reply.files["photo"].startswith(b"\x89PNG")
    assert threads and threads[0] != threading.get_ident()


async def test_the_auth_gate_stops_every_strangers_update_under_concurrency(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    confirm, _ = confirm_and_cancel(cockpit)
    message = cockpit.fake.message_with_button(confirm)
    assert message is not None
    before = len(cockpit.fake.calls)
    asked = []
    for _ in range(4):  # a stranger hammers the real button and dangerous commands amid the operator's commands
        cockpit.fake.press(STRANGER, message, confirm)
        cockpit.fake.push_text(STRANGER, "/kill")
        cockpit.fake.push_text(STRANGER, "/pause")
        asked.append(cockpit.fake.push_text(OPERATOR, "/balance"))
    for message_id in asked:
        await cockpit.replies_to(message_id, OPERATOR)
    await cockpit.settle()
    later = cockpit.fake.calls[before:]
    assert [c for c in later if c.chat_id == STRANGER] == []
    assert [c for c in later if c.method in ("answerCallbackQuery", "editMessageText")] == []
    assert cockpit.bot.gate.rejected == 12
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]
    assert (await load_halts(cockpit.rig.repos.state)).entries_allowed
    calls = await cockpit.press(confirm)  # still the operator's, unused
    assert answers(calls) == ["Working…"] and await cockpit.service.open_symbols() == []


async def test_a_confirmation_pressed_many_times_at_once_acts_once(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    confirm, cancel = confirm_and_cancel(cockpit)
    message = cockpit.fake.message_with_button(confirm)
    assert message is not None
    trade_id = (await cockpit.rig.repos.trades.active("paper"))[0].id
    start = len(cockpit.fake.calls)
    for data in (confirm, confirm, cancel, confirm, confirm, cancel):
        cockpit.fake.press(OPERATOR, message, data)
    await wait_for(lambda: len(answers(cockpit.fake.calls[start:])) == 6)
    await cockpit.settle()
    got = answers(cockpit.fake.calls[start:])
    winners = [a for a in got if a in ("Working…", "Cancelled")]
    assert len(winners) == 1 and got.count("Already used — nothing done.") == 5
    exits = await cockpit.rig.repos.orders.for_trade(trade_id, OrderPurpose.EXIT)
    assert len(exits) == (1 if winners == ["Working…"] else 0)
    row = await cockpit.rig.repos.db.fetchone("SELECT COUNT(*) FROM trades WHERE status = 'CLOSED'")
    assert row[0] == (2 if winners == ["Working…"] else 1)
