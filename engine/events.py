"""Typed events the engine publishes, and the bus that hands them to sinks (console, Telegram, log).

Sinks must be fast and must never raise into the engine: a failing sink is logged and skipped, so
trading never waits for a notifier (invariant 7).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Level(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class Event:
    time: datetime

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True, slots=True)
class TradeOpened(Event):
    trade_id: int
    mode: str
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    stop_price: Decimal
    take_profit_price: Decimal
    leverage: int
    liquidation_price: Decimal
    fee: Decimal
    score: float
    votes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TradeClosed(Event):
    trade_id: int
    mode: str
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    reason: str
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding


@dataclass(frozen=True, slots=True)
class StopMoved(Event):
    trade_id: int
    symbol: str
    old_stop: Decimal
    new_stop: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class PartialExit(Event):
    trade_id: int
    symbol: str
    quantity: Decimal
    price: Decimal
    realized_pnl: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerTripped(Event):
    breaker: str
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerReset(Event):
    breaker: str
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """Pause, resume, stop, kill, mode switch."""

    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ScanCompleted(Event):
    symbols: int
    signals: int
    opened: int
    cpu_ms: float
    skipped_reason: str = ""


@dataclass(frozen=True, slots=True)
class Alert(Event):
    level: Level
    message: str
    detail: dict[str, str] = field(default_factory=dict)


class EventSink(Protocol):
    async def handle(self, event: Event) -> None:
        ...


class EventBus:
    """Fan-out of engine events to sinks. A sink failure never reaches the publisher."""

    def __init__(self) -> None:
        self._sinks: list[EventSink] = []

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: EventSink) -> None:
        self._sinks.remove(sink)

    async def publish(self, event: Event) -> None:
        for sink in list(self._sinks):
            try:
                await sink.handle(event)
            except Exception:
                log.exception("event sink %s failed on %s", type(sink).__name__, event.kind)


class RecordingSink:
    """Keeps every event in memory (demo summary, tests)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
