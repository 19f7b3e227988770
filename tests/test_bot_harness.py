"""Shared set-up for the Telegram tests: a real trader + façade over the paper exchange on real data, the
real PTB ``Application`` from ``bot.app.start_bot`` and the local fake Bot API. Also checks the harness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.runtime import Runtime
from bot.app import TelegramBot, start_bot
from bot.context import BotOptions
from bot.notices import CATEGORIES
from bot.notifier import DeliveryOptions
from engine.service import EngineService
from tests.fakes.telegram_server import TOKEN, Call, FakeTelegram
from tests.trading_fixtures import Rig, build_rig

OPERATOR = 1111
SECOND_OPERATOR = 2222
STRANGER = 6666
ALL_OFF = {c: "off" for c in CATEGORIES}


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


def options_for(fake: FakeTelegram, **overrides: Any) -> BotOptions:
    values: dict[str, Any] = dict(
        chat_ids=(OPERATOR,), base_url=fake.base_url, poll_timeout=1.0, connect_timeout=1.0, read_timeout=2.0,
        connect_retry_max=0.2, stop_flush_seconds=0.5, daily_summary_at=None, notify_levels=dict(ALL_OFF),
        delivery=DeliveryOptions(min_interval=0.01, retry_base=0.05, retry_max=0.2))
    values.update(overrides)
    return BotOptions(**values)


def service_for(rig: Rig) -> EngineService:
    return EngineService(Runtime.from_parts(rig.settings, rig.repos, rig.bus, rig.clock, exchange=rig.exchange,
                                            trader=rig.trader))


@dataclass
class Cockpit:
    """One running bot over one trader, driven like an operator's phone."""

    rig: Rig
    service: EngineService
    fake: FakeTelegram
    bot: TelegramBot
    options: BotOptions
    bots: list[TelegramBot] = field(default_factory=list)

    async def send(self, text: str, *, user: int = OPERATOR, chat: int | None = None, replies: int = 1,
                   date: int | None = None, timeout: float = 15.0) -> list[Call]:
        """Send a message as ``user`` (in ``chat``, default their private chat); return the bot's replies to
        that chat once ``replies`` arrived."""
        message_id = self.fake.push_text(user, text, chat_id=chat, date=date)
        return await self.replies_to(message_id, user if chat is None else chat, replies, timeout)

    async def press(self, data: str, *, user: int = OPERATOR, chat: int = OPERATOR) -> list[Call]:
        """Press the button with callback ``data`` on the message that carried it (or, for made-up data, on the
        latest message with buttons in ``chat``)."""
        message = self.fake.message_with_button(data) or self.fake.last_message_with_buttons(chat)
        start = len(self.fake.calls)
        self.fake.press(user, message, data)
        await wait_for(lambda: any(c.method == "answerCallbackQuery" for c in self.fake.calls[start:]))
        await self.settle()
        return [c for c in self.fake.calls[start:] if c.ok]

    async def replies_to(self, message_id: int, chat: int, count: int = 1, timeout: float = 15.0) -> list[Call]:
        """The bot's replies (they quote the command) to one message, once ``count`` of them arrived."""
        def replies() -> list[Call]:
            return [c for c in self.fake.calls if c.ok and c.chat_id == chat and c.quoted == message_id
                    and c.method in ("sendMessage", "sendPhoto")]
        await wait_for(lambda: len(replies()) >= count, timeout)
        return replies()

    async def settle(self) -> None:
        """Wait until every update sent so far was handled: once a /help sent last is answered, every earlier
        update has been fetched; updates run concurrently, so then wait for those still in flight."""
        await self.send("/help")
        async with asyncio.timeout(30):
            await self.bot.app.update_queue.join()

    def buttons(self, chat: int = OPERATOR) -> list[tuple[str, str]]:
        message = self.fake.last_message_with_buttons(chat)
        markup = message.reply_markup or {}
        return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]

    async def restart_bot(self, **overrides: Any) -> TelegramBot:
        await self.bot.stop()
        if overrides:
            self.options = options_for(self.fake, **overrides)
        self.bot = await start_bot(self.rig.settings, self.service, self.rig.bus, options=self.options)
        self.bots.append(self.bot)
        return self.bot


async def open_cockpit(tmp_path: Path, fake: FakeTelegram, *, wait_ready: bool = True,
                       rig_kwargs: dict[str, Any] | None = None, **option_overrides: Any) -> Cockpit:
    kwargs: dict[str, Any] = dict(telegram_bot_token=TOKEN, telegram_allowed_user_ids=[OPERATOR, SECOND_OPERATOR])
    kwargs.update(rig_kwargs or {})
    rig = await build_rig(tmp_path / "bot.sqlite3", **kwargs)
    service = service_for(rig)
    options = options_for(fake, **option_overrides)
    bot = await start_bot(rig.settings, service, rig.bus, options=options)
    cockpit = Cockpit(rig, service, fake, bot, options, [bot])
    if wait_ready:
        await wait_for(bot.ready.is_set)
    return cockpit


async def close_cockpit(cockpit: Cockpit) -> None:
    for bot in cockpit.bots:
        await bot.stop()
    await cockpit.rig.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.opened_chats.update({OPERATOR, SECOND_OPERATOR})  # the operators started the bot before
        yield server


async def test_harness_starts_polls_and_stops(tmp_path: Path, fake: FakeTelegram):
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        await wait_for(lambda: {"getMe", "setMyCommands", "getUpdates"} <= {c.method for c in fake.calls})
        await cockpit.settle()
    finally:
        await close_cockpit(cockpit)
    assert not cockpit.bot.app.running


async def test_startup_message_says_mode_and_state(tmp_path: Path, fake: FakeTelegram):
    cockpit = await open_cockpit(tmp_path, fake)
    try:
        await wait_for(lambda: any("Vigil started" in t for t in fake.texts(OPERATOR)))
        startup = next(t for t in fake.texts(OPERATOR) if "Vigil started" in t)
        assert "PAPER" in startup and "running" in startup
        assert TOKEN not in "".join(fake.texts())
    finally:
        await close_cockpit(cockpit)


def test_options_follow_settings_with_defaults():
    from bot.context import bot_api_base
    from tests.trading_fixtures import make_settings

    settings = make_settings(telegram_bot_token=TOKEN, telegram_allowed_user_ids=[5, 6],
                             telegram_api_base_url="http://127.0.0.1:9/")
    options = BotOptions.from_settings(settings)
    assert options.chat_ids == (5, 6) and options.base_url == "http://127.0.0.1:9/bot"
    assert options.confirm_ttl == timedelta(seconds=60) and options.notify_levels["scan"] == "off"
    assert bot_api_base(None) is None and bot_api_base("https://x.example/bot") == "https://x.example/bot"


def test_bad_notification_settings_fall_back_to_defaults_instead_of_stopping_the_trader():
    from datetime import time
    from types import SimpleNamespace

    values = SimpleNamespace(telegram_allowed_user_ids=[1], telegram_api_base_url=None,
                             notify_daily_summary_utc="25:00", notify_levels={"scan": "on"})
    options = BotOptions.from_settings(values)  # type: ignore[arg-type]
    assert options.daily_summary_at == time(0, 0) and options.notify_levels["scan"] == "on"
    values.notify_daily_summary_utc, values.notify_levels = "off", "scan=loud"
    options = BotOptions.from_settings(values)  # type: ignore[arg-type]
    assert options.daily_summary_at is None and options.notify_levels["scan"] == "off"
    values.notify_daily_summary_utc = time(6, 30)
    assert BotOptions.from_settings(values).daily_summary_at == time(6, 30)  # type: ignore[arg-type]
