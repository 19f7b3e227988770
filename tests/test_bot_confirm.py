"""Dangerous commands act only after Confirm from the same user; expired, replayed, cancelled or foreign
buttons do nothing; a confirmation survives a restart of the bot; /paper off refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from engine.trading.halts import load_halts
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_harness import (  # noqa: F401
    OPERATOR,
    SECOND_OPERATOR,
    Cockpit,
    close_cockpit,
    fake,
    open_cockpit,
    wait_for,
)
from tests.test_bot_service import trip_daily_loss


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake)
    await trade_a_little(c)
    yield c
    await close_cockpit(c)


def confirm_and_cancel(cockpit: Cockpit, chat: int = OPERATOR) -> tuple[str, str]:
    (confirm, _), (cancel, _) = [(data, label) for label, data in cockpit.buttons(chat)]
    assert confirm.startswith("c:") and cancel.startswith("x:")
    return confirm, cancel


def answers(calls: list) -> list[str]:
    return [c.params.get("text", "") for c in calls if c.method == "answerCallbackQuery"]


def edits(calls: list) -> list[str]:
    return [c.text for c in calls if c.method == "editMessageText"]


async def test_close_acts_only_after_confirm_and_a_replay_does_nothing(cockpit: Cockpit):
    (ask,) = await cockpit.send("/close btcusdt")
    assert "Close <b>BTCUSDT</b>" in ask.text and [b[0] for b in ask.buttons] == ["✅ Confirm", "✖️ Cancel"]
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]  # asking changed nothing
    confirm, _ = confirm_and_cancel(cockpit)

    calls = await cockpit.press(confirm)
    assert answers(calls) == ["Working…"]
    assert any("Closed BTCUSDT" in t for t in edits(calls))
    assert await cockpit.service.open_symbols() == []
    closed = await cockpit.service.trades(5)
    assert {(t.symbol, t.exit_reason) for t in closed} == {("BTCUSDT", "manual_close"), ("ETHUSDT", "manual_close")}

    replay = await cockpit.press(confirm)
    assert answers(replay) == ["Already used — nothing done."] and edits(replay) == []
    assert len(await cockpit.service.trades(5)) == len(closed)


async def test_another_allowed_user_cannot_confirm_someone_elses_close(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    confirm, _ = confirm_and_cancel(cockpit)
    foreign = await cockpit.press(confirm, user=SECOND_OPERATOR)
    assert answers(foreign) == ["This confirmation is not yours — nothing done."]
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]
    calls = await cockpit.press(confirm)  # still usable by the one who asked
    assert answers(calls) == ["Working…"] and await cockpit.service.open_symbols() == []


async def test_cancel_does_nothing_and_spends_the_confirmation(cockpit: Cockpit):
    await cockpit.send("/close all")
    confirm, cancel = confirm_and_cancel(cockpit)
    calls = await cockpit.press(cancel)
    assert answers(calls) == ["Cancelled"] and any("Cancelled — nothing done" in t for t in edits(calls))
    late = await cockpit.press(confirm)
    assert answers(late) == ["Already used — nothing done."]
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]


async def test_kill_expired_button_does_nothing_then_a_fresh_one_kills(cockpit: Cockpit):
    cockpit.rig.voter.symbols = {"ETHUSDT"}
    await cockpit.rig.trader.scan()
    cockpit.rig.voter.symbols = set()
    assert sorted(await cockpit.service.open_symbols()) == ["BTCUSDT", "ETHUSDT"]

    (ask,) = await cockpit.send("/kill")
    assert "Kill-switch" in ask.text and "2 position" in ask.text
    confirm, _ = confirm_and_cancel(cockpit)
    cockpit.rig.clock.advance(timedelta(seconds=61))
    calls = await cockpit.press(confirm)
    assert answers(calls) == ["Expired — nothing done."] and any("Expired" in t for t in edits(calls))
    assert len(await cockpit.service.open_symbols()) == 2
    assert (await load_halts(cockpit.rig.repos.state)).entries_allowed

    await cockpit.send("/kill")
    confirm, _ = confirm_and_cancel(cockpit)
    calls = await cockpit.press(confirm)
    assert any("Kill-switch done" in t for t in edits(calls))
    assert await cockpit.service.open_symbols() == []
    assert await cockpit.rig.exchange.open_protective_orders() == []
    assert (await load_halts(cockpit.rig.repos.state)).killed


async def test_confirmation_still_works_after_a_restart(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    confirm, _ = confirm_and_cancel(cockpit)
    await cockpit.restart_bot()
    await wait_for(cockpit.bot.ready.is_set)
    calls = await cockpit.press(confirm)
    assert answers(calls) == ["Working…"] and await cockpit.service.open_symbols() == []


async def test_confirmation_expired_during_a_restart_is_refused_cleanly(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    confirm, _ = confirm_and_cancel(cockpit)
    await cockpit.restart_bot()
    cockpit.rig.clock.advance(timedelta(minutes=5))
    await wait_for(cockpit.bot.ready.is_set)
    calls = await cockpit.press(confirm)
    assert answers(calls) == ["Expired — nothing done."]
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]


async def test_forged_button_data_does_nothing(cockpit: Cockpit):
    await cockpit.send("/close BTCUSDT")
    calls = await cockpit.press("c:AAAAAAAAAAAAAAAAAAAAAA")
    assert answers(calls) == ["Unknown button — nothing done."]
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]


async def test_paper_off_refuses_without_keys(cockpit: Cockpit):
    (reply,) = await cockpit.send("/paper off")
    assert "BINANCE_API_KEY" in reply.text and not reply.buttons
    assert cockpit.service.mode == "paper"


async def test_paper_off_refuses_with_open_paper_positions_then_asks_when_flat(cockpit: Cockpit):
    runtime = cockpit.service.runtime
    runtime.settings = runtime.settings.model_copy(update={"binance_api_key": "k", "binance_api_secret": "s"})
    (reply,) = await cockpit.send("/paper off")
    assert "still open" in reply.text and "BTCUSDT" in reply.text and not reply.buttons
    await cockpit.service.close("BTCUSDT")
    (ask,) = await cockpit.send("/paper off")
    assert "LIVE" in ask.text and "real money" in ask.text and len(ask.buttons) == 2
    _, cancel = confirm_and_cancel(cockpit)
    await cockpit.press(cancel)
    assert cockpit.service.mode == "paper"


async def test_risky_set_needs_confirmation_and_survives_restart(cockpit: Cockpit):
    (ask,) = await cockpit.send("/set LEVERAGE 10")
    assert "Raise <b>LEVERAGE</b>" in ask.text and cockpit.rig.trader.config.risk.leverage == 3
    confirm, _ = confirm_and_cancel(cockpit)
    calls = await cockpit.press(confirm)
    assert any("3 → <b>10</b>" in t for t in edits(calls))
    assert cockpit.rig.trader.config.risk.leverage == 10
    # as if the process restarted with the environment's settings
    cockpit.service.runtime.settings = cockpit.rig.settings
    config = cockpit.rig.trader.config
    cockpit.rig.trader.config = replace(config, risk=replace(config.risk, leverage=3))
    await cockpit.restart_bot()
    assert cockpit.rig.trader.config.risk.leverage == 10


async def test_breakers_show_a_trip_and_reset_only_after_confirm(cockpit: Cockpit):
    await trip_daily_loss(cockpit.rig)
    (view,) = await cockpit.send("/breakers")
    assert "<b>daily_loss</b> TRIPPED" in view.text and "resets at UTC midnight" in view.text
    (status,) = await cockpit.send("/status")
    assert "Breakers tripped: daily_loss" in status.text
    (ask,) = await cockpit.send("/breakers reset")
    assert "Reset every tripped circuit breaker" in ask.text and len(ask.buttons) == 2
    assert (await cockpit.service.breakers())[0].tripped
    confirm, _ = confirm_and_cancel(cockpit)
    calls = await cockpit.press(confirm)
    assert any("Reset: daily_loss" in t for t in edits(calls))
    (view,) = await cockpit.send("/breakers")
    assert "TRIPPED" not in view.text
