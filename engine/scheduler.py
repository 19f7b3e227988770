"""APScheduler 3 wiring: the scan job (aligned to candle close + a few seconds) and the monitor job.

Both run on the asyncio loop that runs everything else (``AsyncIOScheduler``), with ``max_instances=1``
and ``coalesce=True``. A job that raises is logged, counted and reported as an ``Alert``; the scheduler
keeps its next run. One job never overlaps itself: an operator's /scan waits for a scheduled scan in flight
(and a scheduled one that comes while /scan runs is skipped). On shutdown ``drain`` lets the jobs in flight
finish, within a bound, before the exchange and the database close.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from core.clock import Clock
from engine.events import Alert, EventBus, Level

log = logging.getLogger(__name__)

JobFn = Callable[[], Awaitable[object]]
JobListener = Callable[[str, float], None]  # (job name, duration in seconds), called after every run


def next_aligned(now: datetime, interval_seconds: int, delay_seconds: int) -> datetime:
    """First time ≥ now that is a multiple of the interval since the epoch, plus ``delay_seconds``.

    With a 300 s interval the scan runs at hh:00:05, hh:05:05, … just after each 5m candle closes.
    """
    ts = now.timestamp()
    base = math.floor(ts / interval_seconds) * interval_seconds
    candidate = base + delay_seconds
    if candidate < ts:
        candidate = base + interval_seconds + delay_seconds
    return datetime.fromtimestamp(candidate, tz=UTC)


@dataclass(slots=True)
class JobStats:
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_error: str = ""
    history: list[str] = field(default_factory=list)


class EngineScheduler:
    """Owns the AsyncIOScheduler; the job bodies are supplied by the caller (the runtime)."""

    def __init__(self, *, clock: Clock, bus: EventBus, scan: JobFn, monitor: JobFn, scan_interval: int,
                 monitor_interval: int, scan_delay: int) -> None:
        self.clock = clock
        self.bus = bus
        self._jobs: dict[str, JobFn] = {"scan": scan, "monitor": monitor}
        self.scan_interval = scan_interval
        self.monitor_interval = monitor_interval
        self.scan_delay = scan_delay
        self.stats: dict[str, JobStats] = {"scan": JobStats(), "monitor": JobStats()}
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.listeners: list[JobListener] = []  # the app's watchdog and metrics; must not raise or block
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self._jobs}
        self._closing = False
        self._shut_down = False

    def start(self) -> None:
        """Must be called from inside the running event loop."""
        # alignment is computed on the engine's (exchange) clock, APScheduler runs on the system clock
        now = self.clock.now()
        first_scan = datetime.now(UTC) + (next_aligned(now, self.scan_interval, self.scan_delay) - now)
        self.scheduler.add_job(
            self.run_job, IntervalTrigger(seconds=self.scan_interval, start_date=first_scan, timezone=UTC),
            args=["scan"], id="scan", name="market scan", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, self.scan_interval // 2), replace_existing=True)
        self.scheduler.add_job(
            self.run_job, IntervalTrigger(seconds=self.monitor_interval, timezone=UTC),
            args=["monitor"], id="monitor", name="position monitor", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, self.monitor_interval // 2), replace_existing=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=1))
        self.scheduler.start()
        log.info("scheduler started: scan every %ss (first at %s), monitor every %ss", self.scan_interval,
                 self.next_run("scan"), self.monitor_interval)

    def shutdown(self) -> None:
        """Idempotent: APScheduler 3's AsyncIOScheduler only queues its shutdown on the loop (``running`` stays true
        until it ran), and a second ``shutdown()`` before that raises SchedulerNotRunningError."""
        if self._shut_down:
            return
        self._closing = self._shut_down = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def drain(self, within: float) -> bool:
        """Stop starting jobs and wait up to ``within`` seconds for the ones in flight, then shut down. True if
        none was left. (APScheduler's own shutdown cancels the jobs in flight: it comes last.)"""
        self._closing = True
        if self.scheduler.running:
            self.scheduler.pause()
        try:
            async with asyncio.timeout(within):
                for lock in self._locks.values():
                    async with lock:
                        pass
        except TimeoutError:
            log.warning("a job was still running after %.0fs; shutting down anyway", within)
            self.shutdown()
            return False
        self.shutdown()
        return True

    def running(self, name: str) -> bool:
        return self._locks[name].locked()

    def next_run(self, name: str) -> datetime | None:
        job = self.scheduler.get_job(name)
        return None if job is None else job.next_run_time

    async def run_now(self, name: str) -> None:
        """Run a job at once (operator command); waits for the same job in flight rather than overlap it."""
        await self.run_job(name, wait=True)

    async def run_job(self, name: str, *, wait: bool = False) -> None:
        """Run one job body unless the same job is running (then skip, or ``wait`` for it); never lets an
        exception escape into APScheduler."""
        lock = self._locks[name]
        if (lock.locked() and not wait) or self._closing:
            log.info("%s job skipped: %s", name, "shutting down" if self._closing else "already running")
            return
        async with lock:
            if not self._closing:
                await self._run_body(name)

    async def _run_body(self, name: str) -> None:
        stats = self.stats[name]
        stats.runs += 1
        stats.last_started = self.clock.now()
        started = time.monotonic()
        try:
            await self._jobs[name]()
        except Exception as exc:
            stats.failures += 1
            stats.consecutive_failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s job failed", name)
            await self.bus.publish(Alert(
                time=self.clock.now(), level=Level.WARNING if stats.consecutive_failures < 3 else Level.CRITICAL,
                message=f"{name} job failed ({stats.last_error}); it will run again at the next interval",
                detail={"job": name, "consecutive_failures": str(stats.consecutive_failures)}))
        else:
            stats.consecutive_failures = 0
        finally:
            stats.last_finished = self.clock.now()
            for listener in self.listeners:
                listener(name, time.monotonic() - started)
