"""The daily backup job that ``run`` schedules, and the alert when a backup fails."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from app.backup import list_backups
from app.operations import BACKUP_JOB, Operations
from app.runtime import Runtime
from core.clock import ManualClock
from engine.events import Alert, Event, EventBus
from engine.scheduler import EngineScheduler
from settings import load_settings
from storage.db import Database
from storage.repositories import Repositories

NOW = datetime(2026, 3, 4, 2, 15, tzinfo=UTC)


class Collected:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


async def noop() -> None:
    return None


async def test_the_daily_backup_is_scheduled_and_writes_into_data_dir(tmp_path: Path):
    settings = load_settings(None, data_dir=tmp_path, backup_time_utc="02:15", backup_keep=2, watchdog_seconds=0)
    clock, bus, sink = ManualClock(NOW), EventBus(), Collected()
    bus.subscribe(sink)
    async with Database(settings.db_path) as db:
        runtime = Runtime(settings, Repositories(db), bus, clock)
        runtime.scheduler = EngineScheduler(clock=clock, bus=bus, scan=noop, monitor=noop, scan_interval=300,
                                            monitor_interval=60, scan_delay=5)
        operations = Operations(settings, runtime)
        operations.start()
        try:
            job = runtime.scheduler.scheduler.get_job(BACKUP_JOB)
            fields = {f.name: str(f) for f in job.trigger.fields}
            assert (fields["hour"], fields["minute"]) == ("2", "15")
            assert str(job.trigger.timezone) == "UTC"
            await operations.backup_now()
        finally:
            operations.stop()
    assert [p.name for p in list_backups(tmp_path / "backups")] == ["vigil-20260304T021500Z.sqlite3"]
    assert sink.events == []


async def test_a_failed_backup_alerts_the_operator(tmp_path: Path):
    settings = load_settings(None, data_dir=tmp_path, db_path=tmp_path / "missing" / "vigil.sqlite3",
                             watchdog_seconds=0)
    clock, bus, sink = ManualClock(NOW), EventBus(), Collected()
    bus.subscribe(sink)
    async with Database(tmp_path / "other.sqlite3") as db:
        operations = Operations(settings, Runtime(settings, Repositories(db), bus, clock))
        await operations.backup_now()
    assert [type(e) for e in sink.events] == [Alert]
    assert not (tmp_path / "backups").exists() or list_backups(tmp_path / "backups") == []


def test_backups_can_be_switched_off(tmp_path: Path):
    settings = load_settings(None, data_dir=tmp_path, backup_time_utc="off", watchdog_seconds=0)
    clock, bus = ManualClock(NOW), EventBus()
    runtime = Runtime(settings, Repositories(Database(tmp_path / "x.sqlite3")), bus, clock)
    runtime.scheduler = EngineScheduler(clock=clock, bus=bus, scan=noop, monitor=noop, scan_interval=300,
                                        monitor_interval=60, scan_delay=5)
    Operations(settings, runtime).start()
    assert runtime.scheduler.scheduler.get_job(BACKUP_JOB) is None
