"""What a backtest shows: an aligned plain-text summary, the JSON report ``{"trades": [...], "metrics": {...}}`` and
the PNG (equity against buy-and-hold, drawdown, monthly returns), drawn by ``engine.charts`` like the bot's /chart.
Writers create the file atomically (temp file + rename): a failed run never leaves half a report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic_files import write_atomically
from core.clock import from_ms
from engine.backtest.metrics import GroupRow, Metrics, metrics_json
from engine.backtest.results import BacktestResult

PNG_NAME = "backtest.png"
JSON_NAME = "backtest.json"


# --- terminal summary -----------------------------------------------------------------------------------
def _money(value: float) -> str:
    return f"{value:+,.2f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "∞" if math.isinf(value) else f"{value:.2f}"


def _table(title: str, rows: tuple[GroupRow, ...]) -> list[str]:
    if not rows:
        return []
    width = max(len(title), *(len(r.key) for r in rows))
    out = [f"{title:<{width}}  {'trades':>6}  {'win %':>6}  {'net P&L':>11}  {'avg %':>7}  {'fees':>9}  "
           f"{'funding':>8}"]
    out += [f"{r.key:<{width}}  {r.trades:>6}  {r.win_rate:>6.1f}  {_money(r.net_pnl):>11}  {r.avg_return_pct:>+7.2f}"
            f"  {r.fees:>9.2f}  {r.funding:>+8.2f}" for r in rows]
    return out


def render_summary(result: BacktestResult, m: Metrics) -> str:
    dd = m.drawdown
    bh = m.buy_and_hold
    lines = [
        f"=== Vigil backtest: {result.strategy} ({result.engine} engine) ===",
        f"period              {result.start:%Y-%m-%d} → {result.end:%Y-%m-%d} UTC (end exclusive, {m.days:.1f} days)",
        f"symbols             {', '.join(result.symbols)}  ({result.candles:,} candles)",
        "",
        f"{'':<20}{'strategy':>14}{'buy & hold':>14}",
        f"{'return %':<20}{m.return_pct:>+14.2f}{(f'{bh.return_pct:+.2f}' if bh else 'n/a'):>14}",
        f"{'annualised %':<20}{m.annualised_return_pct:>+14.2f}"
        f"{(f'{bh.annualised_return_pct:+.2f}' if bh else 'n/a'):>14}",
        f"{'Sharpe':<20}{m.sharpe:>14.2f}{(f'{bh.sharpe:.2f}' if bh else 'n/a'):>14}",
        f"{'max drawdown %':<20}{m.max_drawdown_pct:>14.2f}{(f'{bh.max_drawdown_pct:.2f}' if bh else 'n/a'):>14}",
        "",
        f"equity              {m.start_equity:,.2f} → {m.end_equity:,.2f} USDT (net {_money(m.net_pnl)})",
        f"Sortino / Calmar    {m.sortino:.2f} / {m.calmar:.2f}   (daily equity, 365-day year)",
        f"drawdown duration   {dd.duration_days:.1f} days"
        + (f" (peak {dd.peak_at:%Y-%m-%d}, trough {dd.trough_at:%Y-%m-%d}, "
           + (f"recovered {dd.recovered_at:%Y-%m-%d})" if dd.recovered_at else "not recovered)")
           if dd.peak_at and dd.trough_at else ""),
        f"trades              {m.trades} ({m.trades_per_day:.2f}/day, {result.open_at_end} closed at the end)",
        f"win rate            {m.win_rate:.1f} %   profit factor {_ratio(m.profit_factor)}",
        f"expectancy          {_money(m.expectancy)} USDT/trade   average R {_ratio(m.average_r)}",
        f"exposure            {m.exposure_pct:.1f} % of the time with a position",
        f"fees / funding      {m.fees:,.2f} paid / {_money(m.funding)} USDT",
    ]
    if m.monte_carlo is not None:
        mc = m.monte_carlo
        lines.append(f"Monte Carlo         max drawdown over {mc.runs} trade orders: "
                     f"median {mc.median_drawdown_pct:.2f} %, 95th pct {mc.p95_drawdown_pct:.2f} %")
    for h in result.halts:
        resumed = f", operator reset {h.resumed_at:%Y-%m-%d %H:%M}" if h.resumed_at else ", not resumed"
        lines.append(f"HALT                {h.time:%Y-%m-%d %H:%M} UTC: {h.reason}{resumed}")
    for g in result.gaps:
        lines.append(f"data gap            {g.symbol} {g.start:%Y-%m-%d %H:%M} → {g.end:%Y-%m-%d %H:%M} (not bridged)")
    for title, rows in (("symbol", m.by_symbol), ("side", m.by_side), ("exit reason", m.by_exit_reason)):
        table = _table(title, rows)
        if table:
            lines += ["", *table]
    lines.append(f"\nwall time           {result.wall_seconds:.2f} s")
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------------------
def report_json(result: BacktestResult, m: Metrics) -> dict[str, Any]:
    return {"trades": [t.to_json() for t in result.trades], "metrics": metrics_json(m, result)}


def write_json(path: Path, result: BacktestResult, m: Metrics) -> Path:
    write_atomically(path, lambda fh: fh.write(json.dumps(report_json(result, m), indent=1).encode()))
    return path


# --- PNG ----------------------------------------------------------------------------------------------
def monthly_returns(times_ms: np.ndarray, equity: np.ndarray, start_equity: float) -> list[tuple[int, int, float]]:
    """``(year, month, return %)`` from month-end equity (a point at exactly 00:00 of the 1st closes the month)."""
    if len(times_ms) == 0:
        return []
    stamps = [from_ms(int(t) - 1) for t in times_ms]
    out: list[tuple[int, int, float]] = []
    previous = start_equity
    for k, stamp in enumerate(stamps):
        last_of_month = k == len(stamps) - 1 or (stamps[k + 1].year, stamps[k + 1].month) != (stamp.year, stamp.month)
        if last_of_month:
            value = float(equity[k])
            out.append((stamp.year, stamp.month, (value / previous - 1) * 100 if previous else 0.0))
            previous = value
    return out


def render_png(result: BacktestResult, m: Metrics, *, max_points: int = 4000) -> bytes:
    from engine import charts

    step = max(1, len(result.equity_ms) // max_points)
    idx = np.arange(0, len(result.equity_ms), step)
    if len(result.equity_ms) and idx[-1] != len(result.equity_ms) - 1:
        idx = np.append(idx, len(result.equity_ms) - 1)
    times = [from_ms(int(t)) for t in result.equity_ms[idx]]
    bench = m.buy_and_hold.equity[idx].tolist() if m.buy_and_hold is not None else None
    monthly = monthly_returns(result.equity_ms, result.equity, float(result.start_equity))
    title = (f"{result.strategy} on {', '.join(result.symbols)}  {result.start:%Y-%m-%d} → {result.end:%Y-%m-%d}")
    subtitle = (f"net {m.net_pnl:+,.2f} USDT ({m.return_pct:+.2f} %), Sharpe {m.sharpe:.2f}, max DD "
                f"{m.max_drawdown_pct:.2f} %, {m.trades} trades"
                + (f"; buy & hold {m.buy_and_hold.return_pct:+.2f} %" if m.buy_and_hold is not None else ""))
    return charts.render_backtest_chart(times, result.equity[idx].tolist(), bench, monthly, title=title,
                                        subtitle=subtitle)


def write_report_dir(directory: Path, result: BacktestResult, m: Metrics) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PNG_NAME
    png = render_png(result, m)
    write_atomically(path, lambda fh: fh.write(png))
    return path
