"""Realised results over closed trades, for the operator: P&L per day, week or month, and statistics by exit
reason, side and duration. Pure functions of the trades (UTC calendar: weeks start on Monday)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from storage.records import TradeRecord

ZERO = Decimal(0)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class PeriodResult:
    start: date
    trades: int
    wins: int
    net_pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class GroupResult:
    """Closed trades sharing one exit reason or one side."""

    name: str
    trades: int
    wins: int
    net_pnl: Decimal

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


@dataclass(frozen=True, slots=True)
class Durations:
    average: timedelta
    median: timedelta
    shortest: timedelta
    longest: timedelta
    average_win: timedelta | None
    average_loss: timedelta | None


@dataclass(frozen=True, slots=True)
class TradeStats:
    trades: int
    reasons: tuple[GroupResult, ...]   # most frequent first
    sides: tuple[GroupResult, ...]     # LONG, SHORT
    durations: Durations | None        # None without any trade with both times


def period_start(day: date, period: Period) -> date:
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def previous_start(start: date, period: Period) -> date:
    if period is Period.DAY:
        return start - timedelta(days=1)
    if period is Period.WEEK:
        return start - timedelta(days=7)
    return (start - timedelta(days=1)).replace(day=1)


def period_starts(now: datetime, period: Period, count: int) -> list[date]:
    """The starts of the ``count`` periods ending with the current one, newest first."""
    starts = [period_start(now.date(), period)]
    while len(starts) < count:
        starts.append(previous_start(starts[-1], period))
    return starts


def results_by_period(trades: Iterable[TradeRecord], now: datetime, period: Period, count: int
                      ) -> list[PeriodResult]:
    """Every one of the last ``count`` periods (empty ones included), newest first, by the close time."""
    starts = period_starts(now, period, count)
    grouped: dict[date, list[TradeRecord]] = {s: [] for s in starts}
    for trade in trades:
        if trade.closed_at is None:
            continue
        start = period_start(trade.closed_at.date(), period)
        if start in grouped:
            grouped[start].append(trade)
    return [PeriodResult(start, len(ts), sum(1 for t in ts if t.net_pnl > 0), sum((t.net_pnl for t in ts), ZERO),
                         sum((t.fees for t in ts), ZERO)) for start, ts in grouped.items()]


def trade_stats(trades: Sequence[TradeRecord]) -> TradeStats:
    reasons = _groups(trades, lambda t: t.exit_reason or "unknown")
    sides = _groups(trades, lambda t: t.side)
    return TradeStats(len(trades), tuple(sorted(reasons, key=lambda g: (-g.trades, g.name))),
                      tuple(sorted(sides, key=lambda g: g.name)), _durations(trades))


def duration_of(trade: TradeRecord) -> timedelta | None:
    if trade.opened_at is None or trade.closed_at is None:
        return None
    return max(trade.closed_at - trade.opened_at, timedelta(0))


def _groups(trades: Sequence[TradeRecord], key: object) -> list[GroupResult]:
    by: dict[str, list[TradeRecord]] = {}
    for trade in trades:
        by.setdefault(key(trade), []).append(trade)  # type: ignore[operator]
    return [GroupResult(name, len(ts), sum(1 for t in ts if t.net_pnl > 0), sum((t.net_pnl for t in ts), ZERO))
            for name, ts in by.items()]


def _durations(trades: Sequence[TradeRecord]) -> Durations | None:
    timed = [(d, t.net_pnl > 0) for t in trades if (d := duration_of(t)) is not None]
    if not timed:
        return None
    all_ = [d for d, _ in timed]
    wins = [d for d, won in timed if won]
    losses = [d for d, won in timed if not won]
    return Durations(_mean(all_), timedelta(seconds=statistics.median(d.total_seconds() for d in all_)),
                     min(all_), max(all_), _mean(wins) if wins else None, _mean(losses) if losses else None)


def _mean(values: Sequence[timedelta]) -> timedelta:
    return sum(values, timedelta(0)) / len(values)
