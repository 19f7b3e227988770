"""Every command through the real PTB Application against the fake Bot API, in paper mode with open
positions on real data: answers, argument validation, halts, stale commands, the command menu."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.commands import COMMANDS
from engine.trading.halts import load_halts
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.test_bot_harness import OPERATOR, Cockpit, close_cockpit, fake, open_cockpit  # noqa: F401


async def trade_a_little(cockpit: Cockpit) -> None:
    """Open BTCUSDT and ETHUSDT, let an hour pass with monitor ticks, close ETHUSDT: one open, one closed."""
    rig = cockpit.rig
    rig.voter.symbols = {"BTCUSDT", "ETHUSDT"}
    assert len((await rig.trader.scan()).opened) == 2
    rig.voter.symbols = set()
    for _ in range(12):
        await rig.step(5)
        await rig.trader.monitor()
    await cockpit.service.close("ETHUSDT")


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake)
    await trade_a_little(c)
    yield c
    await close_cockpit(c)


async def test_menu_and_help_come_from_the_one_table(cockpit: Cockpit):
    menu = cockpit.fake.sent("setMyCommands")[-1].params["commands"]
    assert [c["command"] for c in menu] == [c.name for c in COMMANDS]
    (reply,) = await cockpit.send("/help")
    for command in COMMANDS:
        assert f"/{command.name}" in reply.text
    assert reply.params["parse_mode"] == "HTML"


async def test_read_commands_answer_in_paper_mode_with_positions(cockpit: Cockpit):
    (status,) = await cockpit.send("/status")
    assert "PAPER" in status.text and "running" in status.text and "BTCUSDT" in status.text
    assert "USDT" in status.text and "Open positions 1" in status.text and "Breakers: none tripped" in status.text

    (positions,) = await cockpit.send("/positions")
    assert "<b>BTCUSDT</b> LONG 3x" in positions.text
    assert "SL " in positions.text and "TP " in positions.text and "Liq " in positions.text
    assert "ETHUSDT" not in positions.text

    (balance,) = await cockpit.send("/balance")
    assert "Equity" in balance.text and "Available" in balance.text

    (pnl,) = await cockpit.send("/pnl")
    assert "last 7 days" in pnl.text and "2025-03-20" in pnl.text and "over 1 trade" in pnl.text
    (pnl3,) = await cockpit.send("/pnl 3")
    assert "last 3 days" in pnl3.text

    (trades,) = await cockpit.send("/trades")
    assert "ETHUSDT" in trades.text and "manual_close" in trades.text
    (trades1,) = await cockpit.send("/trades 1")
    assert "Last 1 closed trade" in trades1.text

    (perf,) = await cockpit.send("/performance")
    assert "Trades 1" in perf.text and "win rate" in perf.text and "ETHUSDT" in perf.text

    (mode,) = await cockpit.send("/paper")
    assert "PAPER" in mode.text

    (breakers,) = await cockpit.send("/breakers")
    assert "TRIPPED" not in breakers.text and ("daily_loss" in breakers.text or "No circuit" in breakers.text)


async def test_config_hides_secrets(cockpit: Cockpit):
    replies = await cockpit.send("/config", replies=2)  # the settings table is longer than one Telegram message
    text = "".join(r.text for r in replies)
    assert "RISK_PER_TRADE_PCT" in text and "notify.trade_opened" in text
    assert "TELEGRAM_BOT_TOKEN" in text and "set (hidden)" in text
    assert TOKEN not in text and TOKEN.split(":")[1] not in text


async def test_chart_sends_a_png_of_equity_and_drawdown(cockpit: Cockpit):
    (reply,) = await cockpit.send("/chart 2", timeout=30)  # matplotlib's first import is slow
    assert reply.method == "sendPhoto"
    assert reply.files["photo"].startswith(b"\x89PNG\r\n\x1a\n")
    assert "Equity" in reply.params["caption"] and "max drawdown" in reply.params["caption"]


async def test_scan_runs_now_and_reports(cockpit: Cockpit):
    cockpit.rig.voter.symbols = {"ETHUSDT"}
    (reply,) = await cockpit.send("/scan")
    assert "1 opened" in reply.text
    assert sorted(await cockpit.service.open_symbols()) == ["BTCUSDT", "ETHUSDT"]


async def test_pause_resume_stop_change_the_stored_halts(cockpit: Cockpit):
    state = cockpit.rig.repos.state
    (reply,) = await cockpit.send("/pause")
    assert "Paused" in reply.text and (await load_halts(state)).paused
    assert (await cockpit.rig.trader.scan()).opened == []
    await cockpit.send("/resume")
    assert (await load_halts(state)).entries_allowed
    (reply,) = await cockpit.send("/stop")
    assert "Stopped" in reply.text and (await load_halts(state)).stopped
    (status,) = await cockpit.send("/status")
    assert "stopped" in status.text


BAD_INPUTS = [
    "/pnl abc", "/pnl 0", "/pnl 1000", "/pnl 1 2", "/trades x", "/trades 999", "/chart -1", "/close a b",
    "/close DOGEUSDT", "/close BTC", "/close ETHUSDT", "/close BTCUSDT now", "/set", "/set LEVERAGE",
    "/set FOO 1", "/set LEVERAGE 500", "/set LEVERAGE abc", "/set MIN_STOP_PCT 9", "/set notify.trade_opened loud",
    "/set notify.nothing on", "/paper maybe", "/breakers fix", "/status now", "/kill everything",
]


async def test_bad_arguments_get_a_short_usage_and_change_nothing(cockpit: Cockpit):
    before_settings = cockpit.rig.settings.model_dump()
    before_levels = dict(cockpit.bot.notifier.levels)
    for text in BAD_INPUTS:
        (reply,) = await cockpit.send(text)
        assert "Usage" in reply.text and len(reply.text) < 600, text
        assert not reply.buttons, text
    assert await cockpit.service.open_symbols() == ["BTCUSDT"]
    assert cockpit.service.runtime.settings.model_dump() == before_settings
    assert cockpit.bot.notifier.levels == before_levels
    assert tuple(await cockpit.rig.repos.db.fetchone("SELECT COUNT(*) FROM confirmations")) == (0,)
    assert (await load_halts(cockpit.rig.repos.state)).entries_allowed


async def test_unknown_command_and_plain_text_point_to_help(cockpit: Cockpit):
    (reply,) = await cockpit.send("/frobnicate <b>")
    assert "Unknown command /frobnicate" in reply.text and "<b>" not in reply.text
    (reply,) = await cockpit.send("hello")
    assert "/help" in reply.text


async def test_commands_sent_while_offline_long_ago_are_ignored(cockpit: Cockpit):
    (reply,) = await cockpit.send("/pause", date=int(time.time() - timedelta(hours=1).total_seconds()))
    assert "Ignored /pause" in reply.text
    assert (await load_halts(cockpit.rig.repos.state)).entries_allowed


async def test_set_applies_a_safe_value_and_notification_levels(cockpit: Cockpit):
    (reply,) = await cockpit.send("/set leverage 4")
    assert "LEVERAGE" in reply.text and "3 → <b>4</b>" in reply.text
    assert cockpit.rig.trader.config.risk.leverage == 4
    (reply,) = await cockpit.send("/set notify.stop_moved off")
    assert "off" in reply.text and cockpit.bot.notifier.levels["stop_moved"] == "off"
    config = await cockpit.send("/config", replies=2)  # the settings table is longer than one Telegram message
    assert "LEVERAGE" in "".join(r.text for r in config)


async def test_a_reply_telegram_cannot_parse_is_resent_as_plain_text(cockpit: Cockpit):
    cockpit.fake.reject_html_containing = "Vigil commands"
    (reply,) = await cockpit.send("/help")
    assert "parse_mode" not in reply.params and reply.text.startswith("Vigil commands")
    assert "<b>" not in reply.text
