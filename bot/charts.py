"""/chart: the account's equity and drawdown as a PNG, drawn by the shared ``engine.charts`` (the backtest report
uses the same code)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from engine import charts
from storage.records import EquityPoint


def render_equity_chart(points: Sequence[EquityPoint], title: str) -> bytes:
    return charts.render_equity_chart([p.time for p in points], [float(p.equity) for p in points],
                                      [float(p.wallet) for p in points], title=title)


def max_drawdown_pct(points: Sequence[EquityPoint]) -> Decimal:
    values = charts.drawdown_pct([float(p.equity) for p in points])
    return Decimal(str(round(min(values, default=0.0), 2)))
