"""What ``main.py run`` adds around the engine for unattended operation: the watchdog, the daily database
backup and the Prometheus metrics. Started after the scheduler, stopped before the runtime closes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger

from app.backup import BackupError, take_backup
from app.runtime import Runtime
from app.watchdog import Watchdog
from engine.events import Alert, Level
from settings import Settings

if TYPE_CHECKING:  # prometheus_client is imported only when METRICS_PORT is set
    from app.metrics import MetricsServer, VigilMetrics

log = logging.getLogger(__name__)

BACKUP_JOB = "backup"


class StartupRefused(Exception):
    """An operations part cannot start; the message says what to change."""


class Operations:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics: VigilMetrics | None = None
        self.server: MetricsServer | None = None
        self.watchdog: Watchdog | None = None
        self._refresh: asyncio.Task[None] | None = None

    def serve_metrics(self) -> None:
        """Bind the metrics port first, so a taken port stops the start-up with a clear message."""
        if self.settings.metrics_port is None:
            return
        from app.metrics import MetricsError, MetricsServer, VigilMetrics

        self.metrics = VigilMetrics()
        try:
            self.server = MetricsServer(self.metrics, self.settings.metrics_host, self.settings.metrics_port).start()
        except MetricsError as exc:
            raise StartupRefused(str(exc)) from None

    def start(self) -> None:
        """Once the scheduler runs: listen to its jobs, arm the watchdog, schedule the daily backup."""
        scheduler = self.runtime.scheduler
        if scheduler is None:
            raise RuntimeError("start the scheduler before the operations")
        if self.metrics is not None:
            scheduler.listeners.append(self._job_finished)
            self._refresh_metrics()
        limit = self.settings.watchdog_limit_seconds
        if limit > 0:
            self.watchdog = Watchdog(limit)
            scheduler.listeners.append(self.watchdog.job_finished)
            self.watchdog.start()
        when = self.settings.backup_time_utc
        if when not in ("", "off"):
            hour, minute = (int(part) for part in when.split(":"))
            scheduler.scheduler.add_job(
                self.backup_now, CronTrigger(hour=hour, minute=minute, timezone=UTC), id=BACKUP_JOB,
                name="database backup", max_instances=1, coalesce=True, misfire_grace_time=3600,
                replace_existing=True)

    async def backup_now(self) -> None:
        s = self.settings
        try:
            await asyncio.to_thread(take_backup, s.db_path, s.backups_dir, self.runtime.clock.now(), s.backup_keep)
        except (BackupError, OSError) as exc:
            log.error("daily backup failed: %s", exc)
            await self.runtime.bus.publish(Alert(
                time=self.runtime.clock.now(), level=Level.WARNING,
                message=f"the daily database backup failed ({exc}); check the disk space and DATA_DIR"))

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._refresh is not None:
            self._refresh.cancel()
        if self.server is not None:
            self.server.stop()

    def _job_finished(self, name: str, duration: float) -> None:
        assert self.metrics is not None
        self.metrics.observe_job(name, duration)
        if name == "monitor":
            self._refresh_metrics()

    def _refresh_metrics(self) -> None:
        if self.metrics is None or (self._refresh is not None and not self._refresh.done()):
            return
        self._refresh = asyncio.get_running_loop().create_task(self._safe_refresh(self.metrics))

    async def _safe_refresh(self, metrics: VigilMetrics) -> None:
        try:
            await metrics.refresh(self.runtime)
        except Exception:
            metrics.refresh_failures.inc()
            log.warning("metrics refresh failed", exc_info=True)
