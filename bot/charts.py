"""Equity and drawdown as a PNG (matplotlib's object API on the Agg canvas: no pyplot, no GUI, no global
state). matplotlib is imported on first use, so the bot starts without paying for it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal

from storage.records import EquityPoint


def drawdown_pct(equity: Sequence[float]) -> list[float]:
    """Percentage below the running peak at each point (≤ 0)."""
    out: list[float] = []
    peak = float("-inf")
    for value in equity:
        peak = max(peak, value)
        out.append((value - peak) / peak * 100 if peak > 0 else 0.0)
    return out


def render_equity_chart(points: Sequence[EquityPoint], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = [p.time for p in points]
    equity = [float(p.equity) for p in points]
    wallet = [float(p.wallet) for p in points]
    drawdown = drawdown_pct(equity)
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(times, equity, color="#1f77b4", linewidth=1.6, label="equity")
    top.plot(times, wallet, color="#7f7f7f", linewidth=0.9, linestyle="--", label="wallet")
    top.set_title(title)
    top.set_ylabel("USDT")
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    bottom.fill_between(times, drawdown, 0, color="#d62728", alpha=0.35, step="post")
    bottom.plot(times, drawdown, color="#d62728", linewidth=0.8)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    low = min(drawdown)
    bottom.set_ylim(min(low * 1.1, -0.5), 0.2)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def max_drawdown_pct(points: Sequence[EquityPoint]) -> Decimal:
    values = drawdown_pct([float(p.equity) for p in points])
    return Decimal(str(round(min(values, default=0.0), 2)))
