"""Scheduler: alignment to candle close, and jobs surviving exceptions (the next run still happens)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

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


@pytest.mark.slow
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


def gated_scheduler() -> tuple[EngineScheduler, asyncio.Event, dict[str, int]]:
    gate = asyncio.Event()
    seen = {"running": 0, "most": 0, "runs": 0}

    async def scan() -> None:
        seen["running"] += 1
        seen["most"] = max(seen["most"], seen["running"])
        try:
            await gate.wait()
        finally:
            seen["running"] -= 1
            seen["runs"] += 1

    async def noop() -> None:
        return None

    sched = EngineScheduler(clock=SystemClock(), bus=EventBus(), scan=scan, monitor=noop, scan_interval=3600,
                            monitor_interval=3600, scan_delay=0)
    return sched, gate, seen


async def test_operator_scan_waits_for_the_scheduled_scan_never_overlaps_it():
    sched, gate, seen = gated_scheduler()
    scheduled = asyncio.create_task(sched.run_job("scan"))
    await wait_for(lambda: seen["running"] == 1)
    operator = asyncio.create_task(sched.run_now("scan"))  # /scan while the scheduled one runs
    await asyncio.sleep(0.05)
    assert seen["running"] == 1 and not operator.done()
    gate.set()
    await asyncio.wait_for(asyncio.gather(scheduled, operator), 5)
    assert seen == {"running": 0, "most": 1, "runs": 2}
    gate.clear()
    operator = asyncio.create_task(sched.run_now("scan"))
    await wait_for(lambda: seen["running"] == 1)
    await sched.run_job("scan")  # a scheduled run while /scan runs is skipped, not stacked
    gate.set()
    await asyncio.wait_for(operator, 5)
    assert seen["most"] == 1 and seen["runs"] == 3


async def test_drain_lets_the_job_in_flight_finish_within_a_bound():
    sched, gate, seen = gated_scheduler()
    job = asyncio.create_task(sched.run_job("scan"))
    await wait_for(lambda: seen["running"] == 1)
    draining = asyncio.create_task(sched.drain(5))
    await asyncio.sleep(0.05)
    assert not draining.done()  # shutdown waits for the job
    gate.set()
    assert await asyncio.wait_for(draining, 5) is True
    assert job.done() and seen["runs"] == 1
    await sched.run_job("scan")  # nothing starts once shutting down
    assert seen["runs"] == 1


async def test_drain_gives_up_after_its_bound():
    sched, gate, seen = gated_scheduler()
    job = asyncio.create_task(sched.run_job("scan"))
    await wait_for(lambda: seen["running"] == 1)
    assert await sched.drain(0.2) is False
    gate.set()
    await asyncio.wait_for(job, 5)


async def test_drain_then_close_shuts_the_scheduler_down_once():
    """SIGTERM drains the scheduler, then the runtime closes it again: no SchedulerNotRunningError."""
    async def noop() -> None:
        return None

    sched = EngineScheduler(clock=SystemClock(), bus=EventBus(), scan=noop, monitor=noop, scan_interval=300,
                            monitor_interval=60, scan_delay=5)
    sched.start()
    assert await sched.drain(1.0)
    sched.shutdown()   # Runtime.close() after the drain: must be harmless
    sched.shutdown()
