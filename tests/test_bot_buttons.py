"""Command buttons: /status carries a refresh button that edits the message in place; a bare /close offers one
button per position, whose press asks for the usual confirmation on the same message. Only whitelisted,
harmless commands can be run from a button."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.trading.halts import load_halts
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_confirm import answers, confirm_and_cancel, edits
from tests.test_bot_harness import OPERATOR, Cockpit, close_cockpit, fake, open_cockpit  # noqa: F401


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake)
    await trade_a_little(c)
    yield c
    await close_cockpit(c)


async def test_status_refresh_edits_the_message_in_place(cockpit: Cockpit):
    (status,) = await cockpit.send("/status")
    assert status.buttons == [("🔄 Refresh", "k:status")] and "running" in status.text
    message = cockpit.fake.message_with_button("k:status")
    assert message is not None
    await cockpit.service.pause()
    calls = await cockpit.press("k:status")
    (edit,) = [c for c in calls if c.method == "editMessageText"]
    assert int(edit.params["message_id"]) == message.message_id and "paused" in edit.text
    assert edit.buttons == [("🔄 Refresh", "k:status")]
    again = await cockpit.press("k:status")  # nothing changed: Telegram refuses the edit, the bot says so
    assert answers(again) == ["Already up to date."]


async def test_bare_close_offers_one_button_per_position_then_asks(cockpit: Cockpit):
    cockpit.rig.voter.symbols = {"ETHUSDT"}
    await cockpit.rig.trader.scan()
    (picker,) = await cockpit.send("/close")
    assert picker.buttons == [("Close BTCUSDT", "k:close BTCUSDT"), ("Close ETHUSDT", "k:close ETHUSDT"),
                              ("Close all 2", "k:close all")]
    assert [len(row) for row in picker.params["reply_markup"]["inline_keyboard"]] == [1, 1, 1]
    calls = await cockpit.press("k:close ETHUSDT")
    assert any("Close <b>ETHUSDT</b> at market?" in t for t in edits(calls))
    assert sorted(await cockpit.service.open_symbols()) == ["BTCUSDT", "ETHUSDT"]  # asking closed nothing
    confirm, _ = confirm_and_cancel(cockpit)
    done = await cockpit.press(confirm)
    assert answers(done) == ["Working…"] and any("Closed ETHUSDT" in t for t in edits(done))
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]


async def test_buttons_cannot_run_anything_else(cockpit: Cockpit):
    await cockpit.send("/status")
    message = cockpit.fake.message_with_button("k:status")
    assert message is not None
    start = len(cockpit.fake.calls)
    cockpit.fake.press(OPERATOR, message, "k:kill")
    cockpit.fake.press(OPERATOR, message, "k:close FOOUSDT")
    await cockpit.settle()
    later = cockpit.fake.calls[start:]
    assert "Unknown button — nothing done." in answers(later)
    assert any("No open position on FOOUSDT" in t for t in edits(later))
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]
    assert not (await load_halts(cockpit.rig.repos.state)).killed


async def test_bare_close_without_positions(cockpit: Cockpit):
    await cockpit.service.close("all")
    (reply,) = await cockpit.send("/close")
    assert reply.text == "No open positions to close." and not reply.buttons
