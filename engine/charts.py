"""PNG charts shared by the bot's /chart and the backtest report: matplotlib's object API on the Agg canvas (no
pyplot, no GUI, no global state). matplotlib is imported on first use, so nothing pays for it until a chart is
drawn. Inputs are plain values (datetimes and floats); callers convert their records."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

EQUITY_COLOR = "#1f77b4"
WALLET_COLOR = "#7f7f7f"
BENCH_COLOR = "#ff7f0e"
DRAWDOWN_COLOR = "#d62728"


def drawdown_pct(equity: Sequence[float]) -> list[float]:
    """Percentage below the running peak at each point (≤ 0)."""
    out: list[float] = []
    peak = float("-inf")
    for value in equity:
        peak = max(peak, value)
        out.append((value - peak) / peak * 100 if peak > 0 else 0.0)
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_equity(ax: Axes, times: Sequence[datetime], equity: Sequence[float], *, label: str = "equity",
                others: Sequence[tuple[str, Sequence[float], str, str]] = ()) -> None:
    """Equity line, plus other series ``(label, values, color, linestyle)`` on the same times."""
    ax.plot(times, equity, color=EQUITY_COLOR, linewidth=1.6, label=label)
    for name, values, color, style in others:
        ax.plot(times, values, color=color, linewidth=1.0, linestyle=style, label=name)
    ax.set_ylabel("USDT")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")


def plot_drawdown(ax: Axes, times: Sequence[datetime], equity: Sequence[float]) -> list[float]:
    drawdown = drawdown_pct(equity)
    ax.fill_between(times, drawdown, 0, color=DRAWDOWN_COLOR, alpha=0.35, step="post")
    ax.plot(times, drawdown, color=DRAWDOWN_COLOR, linewidth=0.8)
    ax.set_ylabel("drawdown %")
    ax.grid(alpha=0.3)
    ax.set_ylim(min(min(drawdown, default=0.0) * 1.1, -0.5), 0.2)
    return drawdown


def render_equity_chart(times: Sequence[datetime], equity: Sequence[float], wallet: Sequence[float] | None = None,
                        *, title: str) -> bytes:
    """Equity (and wallet) over drawdown: the bot's /chart."""
    fig = _figure(8, 5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    others = [("wallet", wallet, WALLET_COLOR, "--")] if wallet is not None else []
    plot_equity(top, times, equity, others=others)
    top.set_title(title)
    plot_drawdown(bottom, times, equity)
    fig.autofmt_xdate()
    return _png(fig)


def render_backtest_chart(times: Sequence[datetime], equity: Sequence[float], benchmark: Sequence[float] | None,
                          monthly: Sequence[tuple[int, int, float]], *, title: str, subtitle: str = "") -> bytes:
    """The backtest report: equity against buy-and-hold, drawdown, and a heatmap of monthly returns
    (``monthly`` = ``(year, month, return %)``)."""
    import numpy as np

    rows = max(1, len({y for y, _, _ in monthly}))
    heat = 0.45 + 0.5 * rows              # the heatmap grows with the number of years, not the other panels
    fig = _figure(11, 6.2 + 1.6 * heat)
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 1.2, heat])
    top = fig.add_subplot(grid[0])
    middle = fig.add_subplot(grid[1], sharex=top)
    bottom = fig.add_subplot(grid[2])
    last = f" → {equity[-1]:,.2f}" if len(equity) else ""
    others = [(f"buy & hold, equal weight → {benchmark[-1]:,.2f}", benchmark, BENCH_COLOR, "-")] if benchmark else []
    plot_equity(top, times, equity, label=f"strategy equity{last}", others=others)
    top.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    plot_drawdown(middle, times, equity)
    for label in top.get_xticklabels():
        label.set_visible(False)

    years = sorted({y for y, _, _ in monthly})
    cells = np.full((len(years), 12), np.nan)
    for y, mth, value in monthly:
        cells[years.index(y), mth - 1] = value
    limit = max(float(np.nanmax(np.abs(cells))) if np.isfinite(cells).any() else 1.0, 0.5)
    image = bottom.imshow(cells, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    bottom.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    bottom.set_yticks(range(len(years)), [str(y) for y in years])
    bottom.set_title("monthly return % (strategy)", fontsize=10)
    for (row, col), value in np.ndenumerate(cells):
        if np.isfinite(value):
            bottom.text(col, row, f"{value:+.1f}", ha="center", va="center", fontsize=9,
                        color="black" if abs(value) < 0.6 * limit else "white")
    fig.colorbar(image, ax=bottom, fraction=0.025, pad=0.01, label="%")
    return _png(fig)
