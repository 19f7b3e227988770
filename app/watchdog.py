"""In-process watchdog: exit the process when the position monitor has stopped finishing its ticks.

Docker's ``unhealthy`` status does not restart a container under ``restart: unless-stopped``; an exit does.
The watchdog runs on its own thread, so it fires even when the event loop itself is stuck, and ends the
process with ``EXIT_WATCHDOG`` without running shutdown code that might hang too. That is as safe as a crash:
every write is a committed SQLite transaction, and the start-up reconciliation takes over after the restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_WATCHDOG = 4
MONITOR_JOB = "monitor"


def exit_process(stalled_seconds: float) -> None:
    log.critical("watchdog: no position-monitor tick has finished for %.0f s; exiting with code %d so the "
                 "process is restarted (the start-up reconciliation takes over)", stalled_seconds, EXIT_WATCHDOG)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_WATCHDOG)


class Watchdog:
    """``beat`` on every finished monitor tick; ``on_stall`` runs once when none came for ``limit_seconds``."""

    def __init__(self, limit_seconds: float, *, on_stall: Callable[[float], None] = exit_process,
                 monotonic: Callable[[], float] = time.monotonic, check_every: float | None = None) -> None:
        if limit_seconds <= 0:
            raise ValueError("the watchdog limit must be positive")
        self.limit = limit_seconds
        self.on_stall = on_stall
        self._now = monotonic
        self._last = monotonic()
        self.check_every = check_every if check_every is not None else max(0.2, min(5.0, limit_seconds / 10))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def job_finished(self, name: str, duration: float) -> None:
        """Scheduler listener: a finished monitor tick (successful or not) is a sign of life."""
        if name == MONITOR_JOB:
            self._last = self._now()

    def stalled_for(self) -> float | None:
        """Seconds since the last tick when that is over the limit, else None."""
        age = self._now() - self._last
        return age if age > self.limit else None

    def start(self) -> Watchdog:
        self._last = self._now()  # start-up work before the first tick does not count
        self._thread = threading.Thread(target=self._watch, name="vigil-watchdog", daemon=True)
        self._thread.start()
        log.info("watchdog armed: exit if no monitor tick finishes for %.0f s", self.limit)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            age = self.stalled_for()
            if age is not None:
                self.on_stall(age)
                return
