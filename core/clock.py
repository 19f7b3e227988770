"""Clocks. The engine never calls ``datetime.now`` directly; it asks a clock, so tests and the backtester
can drive time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ExchangeClock:
    """System time corrected by the exchange's clock offset (exchange time = local time + offset).

    ``run`` uses it so candle alignment, staleness checks and the paper simulation follow the exchange's
    own clock; ``follow()`` wires it to the adapter's measured offset (resynced by the adapter).
    """

    def __init__(self) -> None:
        self._offset_ms: Callable[[], int] = lambda: 0

    def follow(self, offset_ms: Callable[[], int]) -> None:
        self._offset_ms = offset_ms

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=self._offset_ms())


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
    if when.tzinfo is not UTC and (when.tzinfo is None or when.utcoffset() != timedelta(0)):
        raise ValueError(f"expected a timezone-aware UTC datetime, got {when!r}")


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    _require_utc(when)
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
