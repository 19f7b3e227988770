"""Entry point: ``await start_bot(settings, service, bus)`` → ``TelegramBot``; ``await bot.stop()`` at exit.

Everything runs on the caller's asyncio loop: the PTB ``Application`` is initialised, started and polls
with ``updater.start_polling``; the notifier's delivery task and the daily-summary task are plain asyncio
tasks. Updates are handled concurrently (a slow /scan, /kill or /chart does not hold up /status); for each
update the auth gate still runs first, and confirmations are claimed atomically, so they stay single-use.
Only chart rendering (CPU) leaves the loop, for a worker thread.

``start_bot`` never waits for Telegram: the notifier is subscribed to the bus at once (events queue in the
database from the first moment) and connecting happens in the background, retrying with backoff while
Telegram is unreachable. A rejected token leaves the bot off (console only)
with one clear log line; trading carries on either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from datetime import UTC, datetime

import httpx
from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application
from telegram.request import HTTPXRequest

from bot.auth import AuthGate
from bot.commands import menu, register
from bot.confirm import Confirmations
from bot.context import BotContext, BotOptions
from bot.format import esc
from bot.notifier import Notifier
from bot.redact import TokenRedactor
from bot.summary import daily_summary, next_run, startup_message
from engine.events import EventBus
from engine.service import EngineService
from settings import Settings
from storage.notifications import ConfirmationRepository, NotificationQueue, NotifierSettingsRepository

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


async def start_bot(settings: Settings, service: EngineService, bus: EventBus, *,
                    options: BotOptions | None = None) -> TelegramBot:
    """Start the Telegram bot for ``settings.telegram_bot_token`` (which must be set)."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    bot = TelegramBot(settings.telegram_bot_token.get_secret_value(), service, bus,
                      options or BotOptions.from_settings(settings),
                      allowed_user_ids=settings.telegram_allowed_user_ids)
    await bot.start()
    return bot


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle), built once per process: reading the bundle costs ~0.2 s of
    CPU, and PTB would build one for each of its two connections at every start (a restart, a test)."""
    return httpx.create_ssl_context()


class TelegramBot:
    def __init__(self, token: str, service: EngineService, bus: EventBus, options: BotOptions, *,
                 allowed_user_ids: list[int]) -> None:
        self.service = service
        self.bus = bus
        self.options = options
        self.redactor = TokenRedactor(token)
        self.redactor.install()  # before PTB is built: it logs its URLs (which contain the token) at DEBUG
        db = service.database
        self.queue = NotificationQueue(db)
        self.notifier = Notifier(self.queue, NotifierSettingsRepository(db), options.chat_ids, service.now,
                                 options.delivery, default_levels=options.notify_levels, trade_lookup=service.trade)
        self.gate = AuthGate(allowed_user_ids, on_contact=self.notifier.chat_opened)
        self.ctx = BotContext(service, Confirmations(ConfirmationRepository(db), service.now, options.confirm_ttl),
                              self.notifier, options, self.gate.allowed)
        # PTB's own defaults for both connections (256 and 1 connections), with our timeouts and one TLS context
        tls = {"verify": tls_context()}
        requests = HTTPXRequest(connection_pool_size=256, connect_timeout=options.connect_timeout,
                                read_timeout=options.read_timeout, write_timeout=options.read_timeout,
                                pool_timeout=options.connect_timeout, httpx_kwargs=tls)
        updates = HTTPXRequest(connection_pool_size=1, connect_timeout=options.connect_timeout,
                               read_timeout=options.read_timeout, httpx_kwargs=tls)
        builder = (Application.builder().token(token).concurrent_updates(options.concurrent_updates).job_queue(None)
                   .request(requests).get_updates_request(updates))
        if options.base_url:
            builder = builder.base_url(options.base_url)
        self.app: Application = builder.build()
        register(self.app, self.ctx, self.gate)
        self.ready = asyncio.Event()       # connected and polling
        self.token_rejected = False
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        applied = await self.service.apply_stored_settings()
        if applied:
            log.info("settings changed earlier with /set re-applied: %s", applied)
        await self.notifier.load_levels()
        self.bus.subscribe(self.notifier)
        pending = await self.queue.pending_count()
        try:
            text = await startup_message(self.service, pending=pending)
        except Exception:
            log.exception("could not build the startup status")
            text = f"🚀 <b>Vigil started</b> · mode {esc(self.service.mode)}"
        await self.notifier.enqueue("state", text)
        self._tasks.append(asyncio.create_task(self._connect(), name="telegram-connect"))
        if self.options.daily_summary_at is not None:
            self._tasks.append(asyncio.create_task(self._daily_summaries(), name="telegram-daily-summary"))
        log.info("Telegram bot starting (%d allowed user(s), %d queued notification(s))",
                 len(self.gate.allowed), pending)

    async def stop(self) -> None:
        """Say goodbye if Telegram is reachable (briefly), stop polling and the tasks; the queue stays."""
        if self.ready.is_set():
            with contextlib.suppress(Exception):
                await self.notifier.enqueue("state", "⏹ <b>Vigil is shutting down</b>.")
                async with asyncio.timeout(self.options.stop_flush_seconds):
                    await self.notifier.wait_idle()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.notifier.stop()
        with contextlib.suppress(ValueError):
            self.bus.unsubscribe(self.notifier)
        try:
            if self.app.updater is not None and self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
        except Exception:
            log.exception("error while stopping the Telegram application")
        finally:
            self.ready.clear()
            self.redactor.uninstall()

    async def _connect(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.app.initialize()
                break
            except InvalidToken:  # its text contains the token: never log it
                self.token_rejected = True
                log.error("Telegram rejected TELEGRAM_BOT_TOKEN: the bot is off, console only. "
                          "Notifications stay queued in the database.")
                return
            except TelegramError as exc:
                log.warning("Telegram unreachable at start (%s); retrying in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.connect_retry_max)
        try:
            await self.app.bot.set_my_commands(menu())
        except TelegramError as exc:
            log.warning("could not set the command menu (%s); commands still work", type(exc).__name__)
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            poll_interval=0.0, timeout=int(self.options.poll_timeout), bootstrap_retries=-1,
            allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY], error_callback=self._polling_error)
        self.notifier.start(self._send)
        self.ready.set()
        log.info("Telegram bot @%s is polling", self.app.bot.username)

    def _polling_error(self, error: TelegramError) -> None:
        log.warning("Telegram polling failed (%s); PTB retries with backoff", type(error).__name__)

    async def _send(self, chat_id: int, text: str, silent: bool, html: bool) -> None:
        await self.app.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML if html else None,
                                        disable_notification=silent, link_preview_options=NO_PREVIEW)

    async def _daily_summaries(self) -> None:
        at = self.options.daily_summary_at
        assert at is not None
        while True:
            now = datetime.now(UTC)
            await asyncio.sleep((next_run(now, at) - now).total_seconds() + 0.5)
            await self.send_daily_summary()

    async def send_daily_summary(self) -> None:
        try:
            text = await daily_summary(self.service)
        except Exception:
            log.exception("could not build the daily summary")
            return
        await self.notifier.send_category("daily_summary", text)
