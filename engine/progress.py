"""A one-line progress bar for long commands (download, backtest): drawn on a terminal only.

When the stream is not a terminal (a pipe, a log file, a test) nothing is written, so captured output
stays clean. Redraws are throttled to ``min_interval`` seconds; ``close()`` draws the final state and ends
the line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, unit: str, *, stream: TextIO | None = None, width: int = 28,
                 min_interval: float = 0.1) -> None:
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self.label = ""
        self._started = time.monotonic()
        self._drawn_at = float("-inf")
        self._closed = False

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + max(0, int(n))) if self.total else self.done + max(0, int(n))
        self._draw()

    def close(self) -> None:
        if self._closed:
            return
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True

    def render(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        elapsed = time.monotonic() - self._started
        label = f"{self.label} " if self.label else ""
        return (f"{label}[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:5.1f}% "
                f"{self.done:,}/{self.total:,} {self.unit} {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}")

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self.min_interval:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.render() + "\x1b[K")
        self.stream.flush()
