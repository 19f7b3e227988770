"""Opening by hand (/long, /short) and the blacklist: sized and protected exactly like a scan entry, only after
Confirm, refused while halted, paused, killed or behind a breaker; blacklisted symbols are never traded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.blacklist import BLACKLIST_KEY
from engine.exchange.types import PositionSide
from engine.trading.trader import EntryRefused
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_confirm import answers, confirm_and_cancel, edits
from tests.test_bot_harness import Cockpit, close_cockpit, fake, open_cockpit  # noqa: F401
from tests.test_bot_service import trip_daily_loss
from tests.trading_fixtures import build_rig


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake)
    await trade_a_little(c)  # BTCUSDT open, ETHUSDT closed
    yield c
    await close_cockpit(c)


async def test_a_manual_entry_is_sized_and_protected_like_a_scan_entry(tmp_path: Path):
    scanned = await build_rig(tmp_path / "scan.sqlite3", voted={"ETHUSDT"})
    manual = await build_rig(tmp_path / "hand.sqlite3", voted=set())
    try:
        (trade_id,) = (await scanned.trader.scan()).opened
        by_scan = await scanned.repos.trades.get(trade_id)
        by_hand = await manual.trader.open_manual("ETHUSDT", PositionSide.LONG)
        fields = ("symbol", "side", "quantity", "entry_price", "stop_price", "take_profit_price", "leverage")
        assert [getattr(by_hand, f) for f in fields] == [getattr(by_scan, f) for f in fields]
        assert by_hand.stop_price < by_hand.entry_price
        stops = [o for o in await manual.exchange.open_protective_orders() if o.symbol == "ETHUSDT"]
        assert {o.kind.value for o in stops} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
        with pytest.raises(EntryRefused, match="already in a position"):
            await manual.trader.open_manual("ETHUSDT", PositionSide.SHORT)
    finally:
        await scanned.close()
        await manual.close()


async def test_long_asks_then_opens_only_on_confirm(cockpit: Cockpit):
    (ask,) = await cockpit.send("/long ethusdt")
    assert "Open <b>LONG ETHUSDT</b>" in ask.text and "SL " in ask.text and "Risk " in ask.text
    assert len(ask.buttons) == 2 and await cockpit.service.open_symbols() == ["BTCUSDT"]
    confirm, _ = confirm_and_cancel(cockpit)
    calls = await cockpit.press(confirm)
    assert answers(calls) == ["Working…"] and any("✅ Opened" in t and "ETHUSDT" in t for t in edits(calls))
    assert sorted(await cockpit.service.open_symbols()) == ["BTCUSDT", "ETHUSDT"]
    trade = next(t for t in await cockpit.rig.repos.trades.active("paper") if t.symbol == "ETHUSDT")
    assert trade.side == "LONG" and trade.stop_price < trade.entry_price
    assert any(o.symbol == "ETHUSDT" for o in await cockpit.rig.exchange.open_protective_orders())
    replay = await cockpit.press(confirm)
    assert answers(replay) == ["Already used — nothing done."]


async def test_short_opens_a_short_protected_above(cockpit: Cockpit):
    await cockpit.send("/short ETHUSDT")
    confirm, _ = confirm_and_cancel(cockpit)
    await cockpit.press(confirm)
    trade = next(t for t in await cockpit.rig.repos.trades.active("paper") if t.symbol == "ETHUSDT")
    assert trade.side == "SHORT" and trade.stop_price > (trade.entry_price or Decimal(0))


async def test_manual_entries_are_refused_while_halted_or_behind_a_breaker(cockpit: Cockpit):
    await cockpit.send("/pause")
    (reply,) = await cockpit.send("/long ETHUSDT")
    assert "paused" in reply.text and "/resume" in reply.text and not reply.buttons
    await cockpit.send("/resume")

    await cockpit.send("/long ETHUSDT")  # asked while running ...
    confirm, _ = confirm_and_cancel(cockpit)
    await cockpit.send("/stop")                     # ... stopped before the Confirm
    calls = await cockpit.press(confirm)
    assert any("not opened" in t and "stopped" in t for t in edits(calls))
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]
    await cockpit.send("/resume")

    await trip_daily_loss(cockpit.rig)
    (reply,) = await cockpit.send("/short ETHUSDT")
    assert "breaker" in reply.text and "daily_loss" in reply.text and not reply.buttons
    await cockpit.service.reset_breakers()

    await cockpit.service.kill()
    (reply,) = await cockpit.send("/long ETHUSDT")
    assert "kill-switch" in reply.text and not reply.buttons
    assert await cockpit.service.open_symbols() == []


BAD = ["/long", "/long BTC", "/long ETHUSDT now", "/short 123", "/blacklist drop ETHUSDT", "/blacklist add",
       "/blacklist add eth"]


async def test_bad_or_impossible_manual_entries(cockpit: Cockpit):
    for text in BAD:
        (reply,) = await cockpit.send(text)
        assert "Usage" in reply.text and not reply.buttons, text
    (busy,) = await cockpit.send("/long BTCUSDT")
    assert "already in a position on BTCUSDT" in busy.text
    (unknown,) = await cockpit.send("/short FOOUSDT")
    assert "not a tradable" in unknown.text
    row = await cockpit.rig.repos.db.fetchone("SELECT COUNT(*) FROM confirmations")
    assert row[0] == 0


async def test_blacklisted_symbols_are_never_traded_until_removed(cockpit: Cockpit):
    (empty,) = await cockpit.send("/blacklist")
    assert "No symbol is blacklisted" in empty.text
    (added,) = await cockpit.send("/blacklist add ethusdt")
    assert "ETHUSDT will not be traded" in added.text
    (held,) = await cockpit.send("/blacklist add BTCUSDT")
    assert "stays managed" in held.text and await cockpit.service.open_symbols() == ["BTCUSDT"]
    assert await cockpit.rig.repos.state.get(BLACKLIST_KEY) == ["BTCUSDT", "ETHUSDT"]
    (shown,) = await cockpit.send("/blacklist")
    assert "BTCUSDT, ETHUSDT" in shown.text

    cockpit.rig.voter.symbols = {"ETHUSDT"}
    report = await cockpit.rig.trader.scan()
    assert report.opened == [] and report.skipped["ETHUSDT"] == "blacklisted by the operator"
    (refused,) = await cockpit.send("/long ETHUSDT")
    assert "blacklisted" in refused.text and not refused.buttons
    (unknown,) = await cockpit.send("/blacklist add FOOUSDT")
    assert "not a symbol of this exchange" in unknown.text
    (not_listed,) = await cockpit.send("/blacklist remove SOLUSDT")
    assert "not blacklisted" in not_listed.text

    (removed,) = await cockpit.send("/blacklist remove ETHUSDT")
    assert "may be traded again" in removed.text
    assert len((await cockpit.rig.trader.scan()).opened) == 1
    assert sorted(await cockpit.service.open_symbols()) == ["BTCUSDT", "ETHUSDT"]


async def test_a_pause_while_the_manual_entry_reads_the_market_refuses_it(tmp_path: Path):
    from engine.service import CommandRefused
    from tests.test_bot_concurrency import GatedMarket
    from tests.test_bot_harness import service_for

    rig = await build_rig(tmp_path / "race.sqlite3", voted=set())
    try:
        service = service_for(rig)
        gated = GatedMarket(rig.trader.market)
        rig.trader.market = gated
        opening = asyncio.create_task(service.open_position("ETHUSDT", "LONG"))
        await asyncio.wait_for(gated.entered.wait(), 5)
        await service.pause()  # arrives while the entry is reading klines, before it takes the trader's lock
        gated.release.set()
        with pytest.raises(CommandRefused, match="paused"):
            await opening
        assert await service.open_symbols() == []
        row = await rig.repos.db.fetchone("SELECT COUNT(*) FROM orders")
        assert row[0] == 0
    finally:
        await rig.close()
