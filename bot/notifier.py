"""The Telegram notifier: an ``EventSink`` with a persistent queue (invariant 7).

``handle()`` only renders the event and appends it to the ``notification_queue`` table — trading never
waits for Telegram. A background task delivers the queue oldest-first: at most one message per second per
chat, honouring ``RetryAfter``, retrying network failures with capped backoff, so an outage, a flood limit
or a restart loses nothing and delivers in order later. A message Telegram refuses for good (blocked bot,
bad chat) is marked FAILED so it cannot block the ones behind it; rejected markup is resent as plain text.
Telegram refuses every message (403 "bot can't initiate conversation") to a user who has not opened the
chat yet: that chat's messages stay queued, the others flow, and ``chat_opened`` (the operator's first
message) delivers them.
Delivery is at-least-once: a crash between Telegram's answer and the SENT mark repeats that one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot.format import plain, split_message
from bot.notices import CATEGORIES, DEFAULT_LEVELS, LEVELS, always_loud, category, render
from engine.events import Event, TradeClosed
from storage.notifications import NotificationQueue, NotifierSettingsRepository, QueuedNotification
from storage.records import TradeRecord

log = logging.getLogger(__name__)

CANNOT_INITIATE = "can't initiate conversation"
TradeLookup = Callable[[int], Awaitable[TradeRecord | None]]
Sender = Callable[[int, str, bool, bool], Awaitable[object]]
"""``send(chat_id, text, silent, html)``; raises ``telegram.error`` exceptions."""


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    min_interval: float = 1.0   # seconds between two messages to the same chat (Telegram: 1 msg/s per chat)
    retry_base: float = 1.0     # first backoff after a network failure; doubles up to retry_max
    retry_max: float = 60.0
    keep_sent: timedelta = timedelta(days=7)


class Notifier:
    def __init__(self, queue: NotificationQueue, levels: NotifierSettingsRepository, chat_ids: Sequence[int],
                 now: Callable[[], datetime], options: DeliveryOptions | None = None,
                 default_levels: dict[str, str] | None = None, trade_lookup: TradeLookup | None = None) -> None:
        self.queue = queue
        self.levels_repo = levels
        self.chat_ids = tuple(dict.fromkeys(chat_ids))
        self.now = now
        self.options = options or DeliveryOptions()
        self.levels: dict[str, str] = dict(default_levels or DEFAULT_LEVELS)
        self.trade_lookup = trade_lookup
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sent: dict[int, float] = {}
        self.waiting_chats: set[int] = set()  # chats Telegram will not let us write to until the user writes
        self._contact: dict[int, float] = {}   # chat → monotonic time of the user's latest message
        self.delivered = 0

    # ------------------------------------------------------------------ settings
    async def load_levels(self) -> None:
        """Stored per-category levels (``/set notify.X``) override the configured defaults."""
        self.levels.update({c: lv for c, lv in (await self.levels_repo.all()).items() if c in CATEGORIES})

    async def set_level(self, name: str, level: str) -> None:
        if name not in CATEGORIES or level not in LEVELS:
            raise ValueError(f"unknown category or level: {name}={level}")
        await self.levels_repo.set(name, level, self.now())
        self.levels[name] = level

    # ------------------------------------------------------------------ the sink
    async def handle(self, event: Event) -> None:
        name = category(event)
        if name is None:
            return
        loud = always_loud(event)
        level = self.levels.get(name, "on")
        if level == "off" and not loud:
            return
        await self.enqueue(name, render(event, await self._trade_of(event)), silent=level == "silent" and not loud)

    async def _trade_of(self, event: Event) -> TradeRecord | None:
        """The booked trade behind a TradeClosed (its duration and leverage), if it can be read."""
        if not isinstance(event, TradeClosed) or self.trade_lookup is None:
            return None
        try:
            return await self.trade_lookup(event.trade_id)
        except Exception:
            log.exception("could not read trade %d for its notification", event.trade_id)
            return None

    async def enqueue(self, kind: str, text: str, *, silent: bool = False) -> None:
        """Queue an HTML message for every chat (split under Telegram's limit) and wake the sender."""
        rows = [(chat, kind, chunk, silent) for chat in self.chat_ids for chunk in split_message(text)]
        await self.queue.enqueue(rows, self.now())
        self._idle.clear()
        self._wake.set()

    async def send_category(self, name: str, text: str) -> None:
        """Queue a message of a category the bot produces itself (daily summary), honouring its level."""
        level = self.levels.get(name, "on")
        if level != "off":
            await self.enqueue(name, text, silent=level == "silent")

    # ------------------------------------------------------------------ delivery
    def start(self, send: Sender) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver_forever(send), name="telegram-notifier")
            self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait_idle(self) -> None:
        """Return once the delivery task has found nothing left to send (use under ``asyncio.timeout``)."""
        await self._idle.wait()

    async def _deliver_forever(self, send: Sender) -> None:
        failures = 0
        await self.queue.prune(self.now() - self.options.keep_sent)
        while True:
            try:
                item = await self._next()
                delay = await self._deliver(send, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifier delivery loop failed; retrying")
                delay = -1.0
            if delay < 0:
                failures += 1
                delay = min(self.options.retry_max, self.options.retry_base * 2 ** (failures - 1))
            elif delay == 0:
                failures = 0
            if delay > 0:
                await asyncio.sleep(delay)

    def chat_opened(self, chat_id: int) -> None:
        """The user of ``chat_id`` wrote to the bot: Telegram lets us write there now; deliver what waited."""
        self._contact[chat_id] = time.monotonic()
        if chat_id in self.waiting_chats:
            self.waiting_chats.discard(chat_id)
            log.info("Telegram chat %d is open now; delivering its queued notifications", chat_id)
            self._idle.clear()
            self._wake.set()

    async def _next(self) -> QueuedNotification:
        while True:
            item = await self.queue.next_pending(self.waiting_chats)
            if item is not None:
                return item
            self._wake.clear()
            item = await self.queue.next_pending(self.waiting_chats)  # an enqueue may have slipped in before clear()
            if item is not None:
                return item
            self._idle.set()
            await self._wake.wait()

    async def _deliver(self, send: Sender, item: QueuedNotification) -> float:
        """Try once. Returns 0 when done with the item, a wait in seconds, or -1 for "back off"."""
        await self._pace(item.chat_id)
        started = time.monotonic()
        try:
            await self._send_with_fallback(send, item)
        except RetryAfter as exc:
            wait = _retry_after_seconds(exc)
            log.warning("Telegram flood control: waiting %.1f s before message %d", wait, item.id)
            await self.queue.record_attempt(item.id, f"RetryAfter {wait}")
            return wait + 0.1
        except Forbidden as exc:
            if CANNOT_INITIATE not in exc.message.lower():
                return await self._give_up(item, exc)
            if self._contact.get(item.chat_id, float("-inf")) >= started:
                return 0  # the user wrote while this send was on its way: try again now
            if item.chat_id not in self.waiting_chats:
                log.warning("Telegram chat %d has not been opened: the operator must send /start to the bot once; "
                            "its notifications stay queued until then", item.chat_id)
            self.waiting_chats.add(item.chat_id)
            await self.queue.record_attempt(item.id, f"waiting for the first message: {exc.message}")
            return 0
        except (BadRequest, ChatMigrated) as exc:
            return await self._give_up(item, exc)
        except InvalidToken:
            log.error("Telegram rejected TELEGRAM_BOT_TOKEN; notifications stay queued")
            await self.queue.record_attempt(item.id, "invalid token")
            return self.options.retry_max
        except (NetworkError, TelegramError) as exc:
            log.warning("Telegram unreachable (%s); message %d stays queued", type(exc).__name__, item.id)
            await self.queue.record_attempt(item.id, f"{type(exc).__name__}: {exc.message}")
            return -1
        self._last_sent[item.chat_id] = time.monotonic()
        await self.queue.mark_sent(item.id, self.now())
        self.delivered += 1
        return 0

    async def _give_up(self, item: QueuedNotification, exc: TelegramError) -> float:
        log.error("Telegram refused notification %d for chat %d (%s); skipping it", item.id, item.chat_id,
                  type(exc).__name__)
        await self.queue.mark_failed(item.id, f"{type(exc).__name__}: {exc.message}")
        return 0

    async def _send_with_fallback(self, send: Sender, item: QueuedNotification) -> None:
        try:
            await send(item.chat_id, item.text, item.silent, True)
        except BadRequest as exc:
            if "parse" not in exc.message.lower() and "entit" not in exc.message.lower():
                raise
            log.warning("Telegram rejected the markup of message %d; sending it as plain text", item.id)
            await send(item.chat_id, plain(item.text), item.silent, False)

    async def _pace(self, chat_id: int) -> None:
        last = self._last_sent.get(chat_id)
        if last is not None:
            wait = self.options.min_interval - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)


def _retry_after_seconds(exc: RetryAfter) -> float:
    return float(exc._retry_after.total_seconds())  # the public attribute's type depends on a PTB env switch


def parse_levels(spec: str) -> dict[str, str]:
    """``"stop_moved=silent,scan=off"`` → levels over the defaults; raises ``ValueError`` on a bad entry."""
    levels = dict(DEFAULT_LEVELS)
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, level = part.partition("=")
        name, level = name.strip().lower(), level.strip().lower()
        if name not in CATEGORIES or level not in LEVELS:
            raise ValueError(f"NOTIFY_LEVELS: bad entry {part!r}; categories {', '.join(CATEGORIES)}; "
                             f"levels {', '.join(LEVELS)}")
        levels[name] = level
    return levels
