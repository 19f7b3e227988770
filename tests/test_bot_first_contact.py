"""First contact: /start greets the operator; a stranger's /start gets nothing but their id is logged;
notifications Telegram refuses (403 "bot can't initiate conversation") before the operator opened the chat
stay queued and arrive after their first message — while other chats keep receiving theirs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.notifier import parse_levels
from engine.events import Alert, Level
from tests.fakes.telegram_server import CANNOT_INITIATE, FakeTelegram
from tests.test_bot_harness import (  # noqa: F401
    OPERATOR,
    SECOND_OPERATOR,
    STRANGER,
    close_cockpit,
    fake,
    open_cockpit,
    wait_for,
    wait_until,
)


@pytest.fixture
async def closed_fake() -> AsyncIterator[FakeTelegram]:
    """A Bot API where nobody has written to the bot yet (a fresh install)."""
    async with FakeTelegram() as server:
        yield server


def note(i: int) -> Alert:
    return Alert(time=datetime(2025, 3, 20, tzinfo=UTC), level=Level.INFO, message=f"note {i}")


def refused(server: FakeTelegram, chat: int) -> list:
    return [c for c in server.calls if c.method == "sendMessage" and c.chat_id == chat and not c.ok]


async def test_start_greets_with_the_state_and_where_to_begin(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        (reply,) = await cockpit.send("/start")
        assert "Hello, this is Vigil" in reply.text and "PAPER" in reply.text and "running" in reply.text
        assert "Equity" in reply.text and "Where to begin" in reply.text
        for command in ("/status", "/help", "/pause", "/paper off"):
            assert command in reply.text
        (deep_link,) = await cockpit.send("/start from-readme")  # t.me/bot?start=payload
        assert "Hello, this is Vigil" in deep_link.text
    finally:
        await close_cockpit(cockpit)


async def test_a_strangers_start_gets_nothing_and_their_id_is_logged(tmp_path: Path, fake: FakeTelegram,  # noqa: F811
                                                                     caplog: pytest.LogCaptureFixture):
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.auth"):
            for _ in range(3):  # logged once: a stranger repeating /start does not flood the log
                fake.push_text(STRANGER, "/start")
            await cockpit.settle()
        assert fake.sent(chat_id=STRANGER) == []
        logged = [r for r in caplog.records if getattr(r, "telegram_user_id", None) == STRANGER]
        assert len(logged) == 1 and logged[0].levelno == logging.WARNING
        assert str(STRANGER) in logged[0].getMessage()  # the id is in the line the operator reads
        assert cockpit.bot.gate.rejected == 3
    finally:
        await close_cockpit(cockpit)


async def test_the_fake_refuses_like_telegram_until_the_user_wrote(closed_fake: FakeTelegram):
    from telegram import Bot
    from telegram.error import Forbidden

    async with Bot("123456:TEST-token-not-a-secret", base_url=closed_fake.base_url) as bot:
        with pytest.raises(Forbidden) as refused_send:
            await bot.send_message(OPERATOR, "hello")
        assert CANNOT_INITIATE.removeprefix("Forbidden: ") in refused_send.value.message
        closed_fake.push_text(OPERATOR, "/start")
        assert (await bot.send_message(OPERATOR, "hello")).text == "hello"
        assert (await bot.send_message(-100123, "group")).text == "group"  # groups: no such rule


async def test_refused_notifications_wait_for_the_operators_first_message(tmp_path: Path,
                                                                         closed_fake: FakeTelegram):
    closed_fake.opened_chats.add(SECOND_OPERATOR)  # the second operator started the bot long ago
    cockpit = await open_cockpit(tmp_path, closed_fake, chat_ids=(OPERATOR, SECOND_OPERATOR),
                                 notify_levels=parse_levels(""))
    queue = cockpit.bot.queue
    try:
        await wait_for(lambda: len(refused(closed_fake, OPERATOR)) >= 1)  # the startup message: 403
        for i in range(1, 4):
            await cockpit.rig.bus.publish(note(i))
        # the other chat is not held up by the closed one
        await wait_for(lambda: sum("note " in t for t in closed_fake.texts(SECOND_OPERATOR)) == 3)
        await wait_until(lambda: _count(cockpit, "PENDING", OPERATOR, 4))
        assert await _count(cockpit, "FAILED", OPERATOR, 0)
        assert len(refused(closed_fake, OPERATOR)) == 1  # not hammered: the chat waits for its user
        assert OPERATOR in cockpit.bot.notifier.waiting_chats

        (greeting,) = await cockpit.send("/start")
        assert "Hello, this is Vigil" in greeting.text
        await wait_for(lambda: sum("note " in t for t in closed_fake.texts(OPERATOR)) == 3)
        texts = [t for t in closed_fake.texts(OPERATOR) if "note " in t or "Vigil started" in t]
        assert ["started" if "Vigil started" in t else t.split("note ")[1] for t in texts] == ["started", "1", "2", "3"]
        await wait_until(lambda: _count(cockpit, "PENDING", OPERATOR, 0))
        assert await _count(cockpit, "FAILED", None, 0) and await queue.pending_count() == 0
        assert cockpit.bot.notifier.waiting_chats == set()
    finally:
        await close_cockpit(cockpit)


async def _count(cockpit, status: str, chat: int | None, expected: int) -> bool:
    sql = "SELECT COUNT(*) FROM notification_queue WHERE status = ?"
    params: tuple = (status,)
    if chat is not None:
        sql, params = sql + " AND chat_id = ?", (status, chat)
    row = await cockpit.rig.repos.db.fetchone(sql, params)
    return row is not None and row[0] == expected
