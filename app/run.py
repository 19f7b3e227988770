"""``main.py run``: open the database, start the runtime, the scheduler and (optionally) Telegram, and run
until SIGINT/SIGTERM — all on one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime

from app.instance_lock import AlreadyRunning, InstanceLock
from app.logs import configure_logging
from app.operations import Operations, StartupRefused
from app.runtime import Runtime
from core.clock import Clock, ExchangeClock
from engine.console import ConsoleSink, EventLogSink
from engine.events import EventBus, StateChanged
from engine.exchange.errors import AccountConfigError, AuthenticationError, ExchangeError
from engine.service import EngineService
from settings import Settings
from storage.db import Database, DatabaseError
from storage.repositories import Repositories
from strategies.model_store import ModelMismatch

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_STARTUP = 3


__all__ = ["configure_logging", "heartbeat_age", "run_bot"]


async def run_bot(settings: Settings, *, clock: Clock | None = None, stop_event: asyncio.Event | None = None) -> int:
    """Run until ``stop_event`` is set or a signal arrives. Returns the process exit code."""
    clock = clock or ExchangeClock()
    stop_event = stop_event or asyncio.Event()
    _install_signal_handlers(stop_event)
    log.info("Vigil starting: %s", {k: v for k, v in settings.redacted().items()
                                    if k in ("TRADING_MODE", "BINANCE_ENV", "DB_PATH", "LEVERAGE", "MARGIN_TYPE",
                                             "RISK_PER_TRADE_PCT", "MAX_OPEN_POSITIONS", "SCAN_INTERVAL_SECONDS",
                                             "MONITOR_INTERVAL_SECONDS")})
    lock = InstanceLock(settings.db_path)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"vigil: {exc}")
        return EXIT_STARTUP
    try:
        return await _run_locked(settings, clock, stop_event)
    finally:
        lock.release()


async def _run_locked(settings: Settings, clock: Clock, stop_event: asyncio.Event) -> int:
    try:
        db = await Database(settings.db_path).open()
    except DatabaseError as exc:
        print(f"vigil: {exc}")
        return EXIT_STARTUP
    repos = Repositories(db)
    bus = EventBus()
    bus.subscribe(EventLogSink(repos.events))
    bus.subscribe(ConsoleSink())
    runtime = Runtime(settings, repos, bus, clock)
    operations = Operations(settings, runtime)
    try:
        try:
            operations.serve_metrics()
        except StartupRefused as exc:
            print(f"vigil: {exc}")
            return EXIT_CONFIG
        try:
            await runtime.start()
        except (AccountConfigError, AuthenticationError) as exc:
            print(f"vigil: {exc.reason}")
            return EXIT_CONFIG
        except ModelMismatch as exc:
            print(f"vigil: {exc}")
            return EXIT_CONFIG
        except ExchangeError as exc:
            print(f"vigil: cannot reach Binance at start ({exc}); check the network and BINANCE_BASE_URL")
            return EXIT_STARTUP
        service = EngineService(runtime)
        await service.apply_stored_settings()  # operator /set changes survive restarts
        runtime.start_scheduler()
        operations.start()
        bot = await _start_telegram(settings, service, bus)
        await bus.publish(StateChanged(time=clock.now(), state="started",
                                       detail=f"mode {runtime.mode}; {(await service.status()).state}"))
        if bot is None:
            log.info("TELEGRAM_BOT_TOKEN is not set: running with the console only")
        await stop_event.wait()
        log.info("shutting down")
        if bot is not None:
            await bot.stop()
        return EXIT_OK
    finally:
        if runtime.scheduler is not None:  # the job in flight finishes (bounded) before the exchange and DB close
            await runtime.scheduler.drain(settings_drain_seconds(settings))
        operations.stop()
        await runtime.close()
        await db.close()


def settings_drain_seconds(settings: Settings) -> float:
    """How long shutdown waits for a job in flight: a monitor tick's stop retries fit in it."""
    return float(min(60, max(15, settings.monitor_interval_seconds)))


async def _start_telegram(settings: Settings, service: EngineService, bus: EventBus) -> _Stoppable | None:
    if settings.telegram_bot_token is None:
        return None
    try:
        from bot.app import start_bot
    except ImportError:
        log.warning("the Telegram bot is not available in this build; running with the console only")
        return None
    return await start_bot(settings, service, bus)


class _Stoppable:
    async def stop(self) -> None: ...


def _install_signal_handlers(stop_event: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-main thread or platform
            loop.add_signal_handler(sig, stop_event.set)


async def heartbeat_age(settings: Settings, now: datetime) -> float | None:
    """Seconds since the last monitor tick, or None if there is none (used by ``main.py health``)."""
    if not settings.db_path.exists():
        return None
    db = await Database(settings.db_path).open()
    try:
        value = await Repositories(db).state.get("monitor_heartbeat")
    finally:
        await db.close()
    if not value:
        return None
    return (now - datetime.fromisoformat(value)).total_seconds()
