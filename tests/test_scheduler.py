"""Scheduler: alignment to candle close, and jobs surviving exceptions (the next run still happens)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from core.clock import SystemClock
from engine.events import Alert, EventBus, RecordingSink
from engine.scheduler import EngineScheduler, next_aligned


def test_next_aligned_is_candle_close_plus_delay():
    now = datetime(2025, 3, 1, 12, 3, 20, tzinfo=UTC)
    assert next_aligned(now, 300, 5) == datetime(2025, 3, 1, 12, 5, 5, tzinfo=UTC)
    now = datetime(2025, 3, 1, 12, 5, 2, tzinfo=UTC)
    assert next_aligned(now, 300, 5) == datetime(2025, 3, 1, 12, 5, 5, tzinfo=UTC)
    assert next_aligned(datetime(2025, 3, 1, 12, 59, 59, tzinfo=UTC), 3600, 5) == datetime(
        2025, 3, 1, 13, 0, 5, tzinfo=UTC)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_job_that_raises_is_reported_and_runs_again():
    bus = EventBus()
    sink = RecordingSink()
    bus.subscribe(sink)
    calls = {"monitor": 0, "scan": 0}

    async def monitor() -> None:
        calls["monitor"] += 1
        if calls["monitor"] == 1:
            raise RuntimeError("boom")

    async def scan() -> None:
        calls["scan"] += 1

    sched = EngineScheduler(clock=SystemClock(), bus=bus, scan=scan, monitor=monitor, scan_interval=1,
                            monitor_interval=1, scan_delay=0)
    sched.start()
    try:
        await wait_for(lambda: calls["monitor"] >= 3)
    finally:
        sched.shutdown()
    stats = sched.stats["monitor"]
    assert stats.failures == 1 and stats.consecutive_failures == 0
    alerts = sink.of(Alert)
    assert len(alerts) == 1 and alerts[0].detail["job"] == "monitor"
    job = sched.scheduler.get_job("scan") if sched.scheduler.running else None
    assert job is None or job.max_instances == 1


async def test_jobs_are_configured_single_instance_and_coalesced():
    async def noop() -> None:
        return None

    sched = EngineScheduler(clock=SystemClock(), bus=EventBus(), scan=noop, monitor=noop, scan_interval=300,
                            monitor_interval=60, scan_delay=5)
    sched.start()
    try:
        for name in ("scan", "monitor"):
            job = sched.scheduler.get_job(name)
            assert job.max_instances == 1 and job.coalesce is True
        first_scan = sched.next_run("scan")
        assert first_scan.second == 5 and first_scan.minute % 5 == 0
    finally:
        sched.shutdown()
