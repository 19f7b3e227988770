"""Performance metrics of a ``BacktestResult``: pure functions, no I/O.

Conventions (also written into the report):
- Ratios are computed on the equity curve resampled to one point per UTC day (the last equity of each day) and
  annualised with **365 days**: crypto futures trade every day of the year.
  Sharpe = mean(daily return) / std(daily return, ddof=1) × √365; Sortino = mean(daily return) / downside
  deviation × √365, downside deviation = √(mean(min(r, 0)²)) over all days; Calmar = annualised return /
  max drawdown (both as fractions). A risk-free rate of 0 is assumed.
- Annualised return = (end equity / start equity)^(365 / days) − 1, days = the length of ``[start, end)``.
- Max drawdown is measured on the full (per-candle) equity curve; its duration runs from the peak before the
  deepest trough to the first time equity is back at that peak (or to the end when it never is).
- Exposure = share of ``[start, end)`` with at least one position open.
- Buy-and-hold: the start equity split equally over the symbols at their first close in the window, held to
  the end (no fees); a symbol whose data stops or breaks off keeps its last value.
- Monte Carlo of trade order: the closed trades' net P&L reshuffled ``runs`` times with a seeded RNG; each order
  gives a realised-equity path (start equity + cumulative P&L) and its max drawdown %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from core.clock import from_ms, to_ms
from engine.backtest.results import BacktestResult, TradeResult, iso

DAYS_PER_YEAR = 365
DAY_MS = 86_400_000
MC_RUNS = 1000
MC_SEED = 20_240_514


@dataclass(frozen=True, slots=True)
class Drawdown:
    pct: float                   # deepest fall below the running peak, % (≥ 0)
    peak_at: datetime | None
    trough_at: datetime | None
    recovered_at: datetime | None  # None: not recovered by the end
    duration_days: float         # peak → recovery (or → end)


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    trades: int
    wins: int
    net_pnl: float
    fees: float
    funding: float
    avg_return_pct: float

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades * 100 if self.trades else 0.0


@dataclass(frozen=True, slots=True)
class Benchmark:
    """Buy-and-hold equity on the same time grid as the strategy's curve."""

    equity: np.ndarray
    return_pct: float
    annualised_return_pct: float
    sharpe: float
    max_drawdown_pct: float


@dataclass(frozen=True, slots=True)
class MonteCarlo:
    runs: int
    seed: int
    median_drawdown_pct: float
    p95_drawdown_pct: float
    worst_drawdown_pct: float


@dataclass(frozen=True, slots=True)
class Metrics:
    start_equity: float
    end_equity: float
    net_pnl: float
    return_pct: float
    annualised_return_pct: float
    sharpe: float
    sortino: float
    calmar: float
    drawdown: Drawdown
    trades: int
    wins: int
    win_rate: float
    profit_factor: float         # inf when nothing lost
    expectancy: float            # mean net P&L per trade, USDT
    average_r: float | None      # mean R multiple over trades with a stop
    exposure_pct: float
    trades_per_day: float
    fees: float
    funding: float
    days: float
    by_symbol: tuple[GroupRow, ...] = ()
    by_side: tuple[GroupRow, ...] = ()
    by_exit_reason: tuple[GroupRow, ...] = ()
    buy_and_hold: Benchmark | None = None
    monte_carlo: MonteCarlo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_drawdown_pct(self) -> float:
        return self.drawdown.pct


# --- curve statistics ---------------------------------------------------------------------------------
def daily_equity(times_ms: np.ndarray, equity: np.ndarray, start_equity: float) -> np.ndarray:
    """The start equity followed by the last equity of each UTC day that has a point."""
    if len(times_ms) == 0:
        return np.array([start_equity])
    # a point at exactly 00:00 closes the previous day
    day = (np.asarray(times_ms, dtype=np.int64) - 1) // DAY_MS
    last = np.flatnonzero(np.append(day[1:] != day[:-1], True))
    return np.concatenate(([start_equity], np.asarray(equity, dtype=np.float64)[last]))


def daily_returns(times_ms: np.ndarray, equity: np.ndarray, start_equity: float) -> np.ndarray:
    values = daily_equity(times_ms, equity, start_equity)
    return values[1:] / values[:-1] - 1


def sharpe_ratio(returns: np.ndarray) -> float:
    if len(returns) < 2:
        return 0.0
    sd = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / sd * math.sqrt(DAYS_PER_YEAR) if sd > 0 else 0.0


def sortino_ratio(returns: np.ndarray) -> float:
    if len(returns) == 0:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return float(np.mean(returns)) / downside * math.sqrt(DAYS_PER_YEAR) if downside > 0 else 0.0


def annualised_return(start_equity: float, end_equity: float, days: float) -> float:
    if start_equity <= 0 or days <= 0 or end_equity <= 0:
        return -1.0 if end_equity <= 0 < start_equity else 0.0
    return (end_equity / start_equity) ** (DAYS_PER_YEAR / days) - 1


def max_drawdown(times_ms: np.ndarray, equity: np.ndarray, start_equity: float | None = None) -> Drawdown:
    """Deepest fall below the running peak (the start equity counts as the first peak when given)."""
    values = np.asarray(equity, dtype=np.float64)
    times = np.asarray(times_ms, dtype=np.int64)
    if start_equity is not None and len(times):
        values = np.concatenate(([start_equity], values))
        times = np.concatenate(([times[0]], times))
    if len(values) == 0:
        return Drawdown(0.0, None, None, None, 0.0)
    peaks = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peaks > 0, (peaks - values) / peaks * 100, 0.0)
    trough = int(np.argmax(dd))
    if dd[trough] <= 0:
        return Drawdown(0.0, None, None, None, 0.0)
    peak_value = peaks[trough]
    peak = int(np.flatnonzero(values[: trough + 1] == peak_value)[-1])
    back = np.flatnonzero(values[trough:] >= peak_value)
    recovered = trough + int(back[0]) if len(back) else None
    end_ms = int(times[recovered]) if recovered is not None else int(times[-1])
    return Drawdown(float(dd[trough]), from_ms(int(times[peak])), from_ms(int(times[trough])),
                    from_ms(int(times[recovered])) if recovered is not None else None,
                    (end_ms - int(times[peak])) / DAY_MS)


def drawdown_of_path(path: np.ndarray) -> float:
    peaks = np.maximum.accumulate(path)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peaks > 0, (peaks - path) / peaks * 100, 0.0)
    return float(dd.max()) if len(dd) else 0.0


# --- trade statistics ---------------------------------------------------------------------------------
def profit_factor(pnls: Iterable[float]) -> float:
    values = list(pnls)
    won = sum(v for v in values if v > 0)
    lost = -sum(v for v in values if v < 0)
    if lost == 0:
        return math.inf if won > 0 else 0.0
    return won / lost


def exposure_pct(trades: Iterable[TradeResult], start_ms: int, end_ms: int) -> float:
    """Share of ``[start, end)`` covered by at least one open trade."""
    spans = sorted((max(to_ms(t.opened_at), start_ms), min(to_ms(t.closed_at), end_ms)) for t in trades)
    covered = 0
    cur_lo = cur_hi = None
    for lo, hi in spans:
        if hi <= lo:
            continue
        if cur_hi is None or lo > cur_hi:
            if cur_hi is not None and cur_lo is not None:
                covered += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_hi is not None and cur_lo is not None:
        covered += cur_hi - cur_lo
    total = end_ms - start_ms
    return covered / total * 100 if total > 0 else 0.0


def group(trades: Iterable[TradeResult], key: Callable[[TradeResult], str]) -> tuple[GroupRow, ...]:
    buckets: dict[str, list[TradeResult]] = {}
    for t in trades:
        buckets.setdefault(key(t), []).append(t)
    rows = []
    for name in sorted(buckets):
        ts = buckets[name]
        rows.append(GroupRow(
            key=name, trades=len(ts), wins=sum(1 for t in ts if t.net_pnl > 0),
            net_pnl=float(sum((t.net_pnl for t in ts), Decimal(0))), fees=float(sum((t.fees for t in ts), Decimal(0))),
            funding=float(sum((t.funding for t in ts), Decimal(0))),
            avg_return_pct=float(np.mean([t.return_pct for t in ts]))))
    return tuple(rows)


def monte_carlo(pnls: np.ndarray, start_equity: float, *, runs: int = MC_RUNS, seed: int = MC_SEED) -> MonteCarlo:
    """Max-drawdown distribution over ``runs`` random orders of the same trade P&Ls."""
    rng = np.random.default_rng(seed)
    if len(pnls) == 0 or runs <= 0:
        return MonteCarlo(runs, seed, 0.0, 0.0, 0.0)
    drawdowns = np.empty(runs)
    for k in range(runs):
        path = np.concatenate(([start_equity], start_equity + np.cumsum(rng.permutation(pnls))))
        drawdowns[k] = drawdown_of_path(path)
    return MonteCarlo(runs, seed, float(np.median(drawdowns)), float(np.percentile(drawdowns, 95)),
                      float(drawdowns.max()))


# --- buy and hold -------------------------------------------------------------------------------------
def buy_and_hold(closes: Mapping[str, tuple[np.ndarray, np.ndarray]], grid_ms: np.ndarray,
                 start_equity: float) -> np.ndarray:
    """Equal-weight buy-and-hold equity on ``grid_ms`` (close times): ``closes[symbol] = (close_time_ms, close)``
    over the window. Each symbol's ``start_equity / n`` buys at its first close and is valued at its latest close at
    or before each grid time (flat before its data starts and after it ends)."""
    grid = np.asarray(grid_ms, dtype=np.int64)
    if not closes:
        return np.full(len(grid), start_equity)
    share = start_equity / len(closes)
    total = np.zeros(len(grid))
    for times, values in closes.values():
        times = np.asarray(times, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if len(times) == 0:
            total += share
            continue
        idx = np.searchsorted(times, grid, side="right") - 1
        held = np.where(idx >= 0, values[np.clip(idx, 0, None)], values[0])
        total += share * held / values[0]
    return total


def benchmark(closes: Mapping[str, tuple[np.ndarray, np.ndarray]], grid_ms: np.ndarray, start_equity: float,
              days: float) -> Benchmark:
    equity = buy_and_hold(closes, grid_ms, start_equity)
    end = float(equity[-1]) if len(equity) else start_equity
    return Benchmark(
        equity=equity, return_pct=(end / start_equity - 1) * 100,
        annualised_return_pct=annualised_return(start_equity, end, days) * 100,
        sharpe=sharpe_ratio(daily_returns(grid_ms, equity, start_equity)),
        max_drawdown_pct=max_drawdown(grid_ms, equity, start_equity).pct)


# --- everything ---------------------------------------------------------------------------------------
def compute_metrics(result: BacktestResult, *, closes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    mc_runs: int = MC_RUNS, mc_seed: int = MC_SEED) -> Metrics:
    start_eq = float(result.start_equity)
    end_eq = float(result.end_equity)
    start_ms, end_ms = to_ms(result.start), to_ms(result.end)
    days = (end_ms - start_ms) / DAY_MS
    trades = result.trades
    pnls = np.array([float(t.net_pnl) for t in trades])
    returns = daily_returns(result.equity_ms, result.equity, start_eq)
    ann = annualised_return(start_eq, end_eq, days)
    dd = max_drawdown(result.equity_ms, result.equity, start_eq)
    rs = [r for r in (t.r_multiple for t in trades) if r is not None]
    wins = int(np.count_nonzero(pnls > 0))
    return Metrics(
        start_equity=start_eq, end_equity=end_eq, net_pnl=float(sum((t.net_pnl for t in trades), Decimal(0))),
        return_pct=(end_eq / start_eq - 1) * 100 if start_eq else 0.0, annualised_return_pct=ann * 100,
        sharpe=sharpe_ratio(returns), sortino=sortino_ratio(returns),
        calmar=ann / (dd.pct / 100) if dd.pct > 0 else 0.0, drawdown=dd,
        trades=len(trades), wins=wins, win_rate=wins / len(trades) * 100 if trades else 0.0,
        profit_factor=profit_factor(pnls.tolist()), expectancy=float(pnls.mean()) if len(pnls) else 0.0,
        average_r=float(np.mean(rs)) if rs else None, exposure_pct=exposure_pct(trades, start_ms, end_ms),
        trades_per_day=len(trades) / days if days > 0 else 0.0,
        fees=float(sum((t.fees for t in trades), Decimal(0))),
        funding=float(sum((t.funding for t in trades), Decimal(0))), days=days,
        by_symbol=group(trades, lambda t: t.symbol), by_side=group(trades, lambda t: t.side.value),
        by_exit_reason=group(trades, lambda t: str(t.exit_reason)),
        buy_and_hold=benchmark(closes, result.equity_ms, start_eq, days) if closes else None,
        monte_carlo=monte_carlo(pnls, start_eq, runs=mc_runs, seed=mc_seed))


def _num(value: float | None, digits: int = 6) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def metrics_json(m: Metrics, result: BacktestResult) -> dict[str, Any]:
    """The ``metrics`` object of the JSON report (``profit_factor`` is null when nothing was lost)."""
    dd = m.drawdown

    def rows(groups: tuple[GroupRow, ...]) -> list[dict[str, Any]]:
        return [{"key": g.key, "trades": g.trades, "wins": g.wins, "win_rate": _num(g.win_rate, 4),
                 "net_pnl": _num(g.net_pnl, 8), "fees": _num(g.fees, 8), "funding": _num(g.funding, 8),
                 "avg_return_pct": _num(g.avg_return_pct, 6)} for g in groups]

    out: dict[str, Any] = {
        "strategy": result.strategy, "engine": result.engine, "symbols": list(result.symbols),
        "start": iso(result.start), "end": iso(result.end), "days": _num(m.days, 4), "candles": result.candles,
        "start_equity": _num(m.start_equity, 8), "end_equity": _num(m.end_equity, 8),
        "net_pnl": _num(m.net_pnl, 8), "return_pct": _num(m.return_pct), "annualised_return_pct":
            _num(m.annualised_return_pct), "sharpe": _num(m.sharpe), "sortino": _num(m.sortino),
        "calmar": _num(m.calmar), "max_drawdown_pct": _num(dd.pct),
        "max_drawdown_peak_at": iso(dd.peak_at) if dd.peak_at else None,
        "max_drawdown_trough_at": iso(dd.trough_at) if dd.trough_at else None,
        "max_drawdown_recovered_at": iso(dd.recovered_at) if dd.recovered_at else None,
        "max_drawdown_duration_days": _num(dd.duration_days, 4),
        "trades": m.trades, "wins": m.wins, "win_rate": _num(m.win_rate, 4),
        "profit_factor": _num(m.profit_factor), "expectancy": _num(m.expectancy, 8),
        "average_r": _num(m.average_r), "exposure_pct": _num(m.exposure_pct, 4),
        "trades_per_day": _num(m.trades_per_day), "fees": _num(m.fees, 8), "funding": _num(m.funding, 8),
        "open_at_end": result.open_at_end,
        "by_symbol": rows(m.by_symbol), "by_side": rows(m.by_side), "by_exit_reason": rows(m.by_exit_reason),
        "halts": [{"time": iso(h.time), "reason": h.reason, "resumed_at": iso(h.resumed_at) if h.resumed_at else None}
                  for h in result.halts],
        "data_gaps": [{"symbol": g.symbol, "start": iso(g.start), "end": iso(g.end)} for g in result.gaps],
        "annualisation": f"daily equity returns, {DAYS_PER_YEAR} days a year, risk-free rate 0",
    }
    if m.buy_and_hold is not None:
        b = m.buy_and_hold
        out["buy_and_hold"] = {"return_pct": _num(b.return_pct), "annualised_return_pct": _num(
            b.annualised_return_pct), "sharpe": _num(b.sharpe), "max_drawdown_pct": _num(b.max_drawdown_pct)}
    if m.monte_carlo is not None:
        mc = m.monte_carlo
        out["monte_carlo"] = {"runs": mc.runs, "seed": mc.seed, "median_max_drawdown_pct": _num(
            mc.median_drawdown_pct), "p95_max_drawdown_pct": _num(mc.p95_drawdown_pct),
            "worst_max_drawdown_pct": _num(mc.worst_drawdown_pct)}
    return out
