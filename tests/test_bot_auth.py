"""Deny by default: a user outside TELEGRAM_ALLOWED_USER_IDS gets no answer and changes nothing, whether
they type commands (in a private or a group chat) or press someone else's Confirm button."""

from __future__ import annotations

from pathlib import Path

from bot.commands import COMMANDS
from engine.trading.halts import load_halts
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_harness import OPERATOR, STRANGER, close_cockpit, fake, open_cockpit  # noqa: F401

GROUP = -100123


async def test_a_stranger_gets_nothing_and_changes_nothing(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        await trade_a_little(cockpit)
        await cockpit.send("/close BTCUSDT")
        (confirm, _), _ = [(d, lbl) for lbl, d in cockpit.buttons()]
        start = len(fake.calls)
        attempts = [f"/{c.name}" for c in COMMANDS] + ["/close all", "/kill", "/paper off", "/set LEVERAGE 50",
                                                        "/breakers reset", "hello"]
        for text in attempts:
            fake.push_text(STRANGER, text)
        fake.push_text(STRANGER, "/kill", chat_id=GROUP)
        fake.press(STRANGER, fake.message_with_button(confirm), confirm)
        await cockpit.settle()  # the operator's /help after them: every stranger update has been handled

        after = fake.calls[start:]
        assert [c for c in after if c.chat_id in (STRANGER, GROUP)] == []
        assert [c for c in after if c.method == "answerCallbackQuery"] == []
        assert cockpit.bot.gate.rejected == len(attempts) + 2
        assert await cockpit.service.open_symbols() == ["BTCUSDT"]
        halts = await load_halts(cockpit.rig.repos.state)
        assert halts.entries_allowed and not halts.killed
        assert cockpit.rig.trader.config.risk.leverage == 3 and cockpit.service.mode == "paper"
        row = await cockpit.rig.repos.db.fetchone("SELECT COUNT(*) FROM confirmations WHERE used_at IS NULL")
        assert tuple(row) == (1,)  # the operator's confirmation is untouched ...
        calls = await cockpit.press(confirm)  # ... and still works for the operator
        assert any("Closed BTCUSDT" in c.text for c in calls)
    finally:
        await close_cockpit(cockpit)


async def test_an_allowed_user_in_a_group_chat_is_answered_there(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        (reply,) = await cockpit.send("/status", chat=GROUP)
        assert "PAPER" in reply.text
    finally:
        await close_cockpit(cockpit)
