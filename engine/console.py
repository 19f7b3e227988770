"""Event sinks that need no network: the console printer and the persistent event log."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import TextIO

from engine.events import (
    Alert,
    BreakerReset,
    BreakerTripped,
    Event,
    PartialExit,
    ScanCompleted,
    StateChanged,
    StopMoved,
    TradeClosed,
    TradeOpened,
)
from storage.repositories import EventLogRepository


def describe(event: Event) -> str:
    """One human line per event (console, logs; Telegram has its own richer formatting)."""
    match event:
        case TradeOpened():
            return (f"OPEN  #{event.trade_id} {event.symbol} {event.side} {event.quantity} @ {event.entry_price} "
                    f"SL {event.stop_price} TP {event.take_profit_price} {event.leverage}x "
                    f"liq {event.liquidation_price} score {event.score:.2f} [{event.mode}]")
        case TradeClosed():
            return (f"CLOSE #{event.trade_id} {event.symbol} {event.side} {event.quantity} "
                    f"{event.entry_price} → {event.exit_price} ({event.reason}) pnl {_signed(event.realized_pnl)} "
                    f"fees {event.fees:.4f} funding {_signed(event.funding)} net {_signed(event.net_pnl)} USDT")
        case StopMoved():
            return f"STOP  #{event.trade_id} {event.symbol} {event.old_stop} → {event.new_stop} ({event.reason})"
        case PartialExit():
            return (f"PART  #{event.trade_id} {event.symbol} {event.quantity} @ {event.price} "
                    f"pnl {_signed(event.realized_pnl)} ({event.reason})")
        case BreakerTripped():
            return f"BREAKER TRIPPED {event.breaker}: {event.reason}"
        case BreakerReset():
            return f"BREAKER RESET {event.breaker}: {event.reason}"
        case StateChanged():
            return f"STATE {event.state}" + (f": {event.detail}" if event.detail else "")
        case ScanCompleted():
            extra = f" ({event.skipped_reason})" if event.skipped_reason else ""
            return (f"SCAN  {event.symbols} symbols, {event.signals} signals, {event.opened} opened, "
                    f"{event.cpu_ms:.0f} ms CPU{extra}")
        case Alert():
            return f"ALERT [{event.level.value}] {event.message}"
    return f"{event.kind} {event.to_dict()}"


def _signed(value: Decimal) -> str:
    return f"{value:+.4f}"


class ConsoleSink:
    """Prints every event, timestamped with the event's own (possibly simulated) time."""

    def __init__(self, stream: TextIO | None = None, *, show_scans: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.show_scans = show_scans

    async def handle(self, event: Event) -> None:
        if isinstance(event, ScanCompleted) and not self.show_scans:
            return
        print(f"{event.time:%Y-%m-%d %H:%M} {describe(event)}", file=self.stream, flush=True)


class EventLogSink:
    """Persists every event except routine scan reports to the ``events`` table."""

    def __init__(self, events: EventLogRepository) -> None:
        self.events = events

    async def handle(self, event: Event) -> None:
        if isinstance(event, ScanCompleted):
            return
        await self.events.append(time=event.time, kind=event.kind, payload=event.to_dict())
