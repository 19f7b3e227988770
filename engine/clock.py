"""Clocks. The engine never calls ``datetime.now`` directly; it asks a clock, so tests and the backtester
can drive time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, backtests, demo)."""

    def __init__(self, start: datetime) -> None:
        _require_utc(start)
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        _require_utc(when)
        if when < self._now:
            raise ValueError(f"ManualClock cannot go back in time: {when} < {self._now}")
        self._now = when

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


def _require_utc(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() != timedelta(0):
        raise ValueError(f"expected a timezone-aware UTC datetime, got {when!r}")


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    _require_utc(when)
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
