"""``--strategy ema-cross``: the rule of ``../shared/reference/freqtrade-ema-cross/README.md``, as freqtrade books it.

- EMA20/EMA50 of the 5m close (``ewm(span, adjust=False)``); a long signal on candle t when EMA20 crosses
  above EMA50 (``ema20[t] > ema50[t] and ema20[t-1] <= ema50[t-1]``), a short signal on the opposite cross.
  The first 50 candles of each contiguous run of data (startup) give no signal, and after a data gap the EMAs
  start again: no indicator bridges a gap.
- The entry fills at the open of candle t+1, for 100 USDT at leverage 1: quantity = 100 / open rounded down to
  the lot step. One trade per symbol at a time; crosses while it is open are ignored. A trade that exits during
  candle k lets a signal of candle k-1 enter at k's open after a stop loss (freqtrade checks exits before entries),
  but only from candle k+1 after a ROI exit (as freqtrade's trade list shows: 30 same-candle re-entries, all
  after stops).
- Fee 0.05 % of the notional at each fill.
- Stop 2 % from the entry (long: ``entry × 0.98`` rounded UP to the tick; short: ``entry × 1.02`` rounded
  DOWN), hit on the candle's low/high; a candle that opens beyond it fills at that open.
- ROI: exit when the profit ratio after both fees AND the funding booked so far reaches 3 %, on the candle's
  high (long) or low (short). The exit price is the price of exactly 3 % rounded to the tick in the trade's
  favour (long up, short down), clamped into the candle: that is what freqtrade's ``close_rate`` column shows
  (e.g. LTC long at 69.44 with +0.0228 funding → 71.5787 → 71.58). A candle that opens beyond it fills at the open.
- Stop first when both are inside one candle. Both are checked from the entry candle on.
- Funding: each funding event at or after the entry time and at or before the candle being checked adds
  ``−side × rate × mark × quantity``; the mark is approximated by the 5m open at the funding time (we have no
  mark-price candles; freqtrade uses the 8h mark open, a difference of a few cents over the whole run).
- Trades still open at the end close at the price at ``end`` (the open of the candle starting at ``end`` if the
  data has it, else the last close), booked ``end_of_data``; a trade open when the data breaks off at a gap
  closes at the last close before the gap, also ``end_of_data``.

Signals are vectorised over the whole history; the event loop jumps from signal to signal and finds each exit
with a vectorised scan of the candles after the entry, so the cost is per trade, not per candle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from core.clock import from_ms, to_ms
from core.enums import ExitReason, PositionSide
from engine.backtest.data import CANDLE_MS, Candles, DataError, Funding, load_candles, load_funding, load_rules
from engine.backtest.results import BacktestResult, DataGap, TradeResult

STRATEGY = "ema-cross"
FAST, SLOW = 20, 50
STARTUP = 50


@dataclass(frozen=True, slots=True)
class EmaCrossParams:
    stake: float = 100.0
    fee: float = 0.0005
    stop: float = 0.02
    roi: float = 0.03
    fast: int = FAST
    slow: int = SLOW
    startup: int = STARTUP
    start_equity: Decimal = Decimal(1000)


ProgressFn = Callable[[int, int], None]   # (candles done, candles total)


# --- small fill helpers (candidates for engine/exchange/fills.py) -------------------------------------
def round_to_tick(price: float, tick: float, *, up: bool | None = None) -> float:
    """``price`` on the tick grid: to the nearest tick, or up/down (float noise never moves it a whole tick)."""
    steps = price / tick
    nearest = math.floor(steps + 0.5)
    n = nearest if up is None else math.ceil(steps - 1e-6) if up else math.floor(steps + 1e-6)
    return round(n * tick, 12)


def clamp_to_candle(price: float, low: float, high: float) -> float:
    """Nothing fills outside the candle's range."""
    return min(max(price, low), high)


def floor_to_step(quantity: float, step: float) -> float:
    return round(math.floor(quantity / step + 1e-6) * step, 12)


def gap_fill(level: float, open_: float, *, beyond_is_below: bool) -> float:
    """A trigger at ``level`` fills at ``level``, or at the candle's open when the candle opened beyond it."""
    if beyond_is_below:
        return open_ if open_ <= level else level
    return open_ if open_ >= level else level


# --- signals -------------------------------------------------------------------------------------------
def ema(values: np.ndarray, span: int) -> np.ndarray:
    """``pandas.Series(values).ewm(span=span, adjust=False).mean()``."""
    import pandas as pd

    return pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()


def cross_signals(close: np.ndarray, fast: int, slow: int, startup: int) -> np.ndarray:
    """+1 on a bullish cross, −1 on a bearish one, 0 elsewhere and on the first ``startup`` candles."""
    out = np.zeros(len(close), dtype=np.int8)
    if len(close) <= startup or len(close) < 2:
        return out
    f, s = ema(close, fast), ema(close, slow)
    up = (f[1:] > s[1:]) & (f[:-1] <= s[:-1])
    down = (f[1:] < s[1:]) & (f[:-1] >= s[:-1])
    out[1:][up] = 1
    out[1:][down] = -1
    out[:startup] = 0
    return out


# --- the event loop ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Trade:
    side: int
    entry: int          # candle index of the entry fill
    exit: int           # candle index where the trade is gone (entries may fill from here on)
    last: int           # candle index during which it closed (marked to market on entry..last-1)
    closed_ms: int
    entry_price: float
    exit_price: float
    quantity: float
    reason: ExitReason
    funding: float


class _SymbolRun:
    """One symbol's candles, funding and trades; symbols never interact (fixed stake, no position limit)."""

    def __init__(self, candles: Candles, funding: Funding, tick: float, step: float, params: EmaCrossParams,
                 start_ms: int, end_ms: int, end_price: float | None, end_funding: float) -> None:
        self.c = candles
        self.tick, self.step, self.p = tick, step, params
        self.start_ms, self.end_ms = start_ms, end_ms
        self.end_price, self.end_funding = end_price, end_funding
        # funding paid per unit of quantity for a long at each candle index (rate × mark at the event's candle)
        per_candle = np.zeros(len(candles) + 1)
        idx = np.searchsorted(candles.open_time, funding.time, side="left")
        inside = idx < len(candles)
        inside[inside] &= (candles.open_time[idx[inside]] - funding.time[inside]) < CANDLE_MS
        np.add.at(per_candle, idx[inside] + 1, funding.rate[inside] * candles.open[idx[inside]])
        self.funding_cum = np.cumsum(per_candle)   # funding_cum[i + 1] − funding_cum[e] = events in candles e..i
        self.trades: list[_Trade] = []

    def run(self) -> None:
        for lo, hi in self.c.segments():
            self._segment(lo, hi)

    def _segment(self, lo: int, hi: int) -> None:
        c, p = self.c, self.p
        signals = cross_signals(c.close[lo:hi], p.fast, p.slow, p.startup)
        signals[c.open_time[lo:hi] < self.start_ms] = 0
        candidates = np.flatnonzero(signals[:-1]) if hi - lo > 1 else np.empty(0, dtype=np.int64)
        last_segment = hi == len(c)
        free_from = lo   # first candle index where a new entry may fill
        for k in candidates:
            e = lo + int(k) + 1
            if e < free_from:
                continue
            trade = self._trade(int(signals[k]), e, hi, last_segment)
            if trade is None:
                continue
            self.trades.append(trade)
            # freqtrade frees the pair within the candle of a stop (a signal of the candle before may enter at its
            # open), but only after the candle of a ROI exit (its limit exit order fills at the candle's end)
            free_from = trade.exit if trade.reason is ExitReason.STOP_LOSS else trade.exit + 1

    def _trade(self, side: int, e: int, hi: int, last_segment: bool) -> _Trade | None:
        c, p = self.c, self.p
        entry = float(c.open[e])
        qty = floor_to_step(p.stake / entry, self.step)
        if qty <= 0:
            return None
        long = side > 0
        stop = round_to_tick(entry * (1 - p.stop), self.tick, up=True) if long else round_to_tick(
            entry * (1 + p.stop), self.tick, up=False)
        open_value = qty * entry * (1 + p.fee) if long else qty * entry * (1 - p.fee)
        i = e
        chunk = 256
        while i < hi:
            j = min(hi, i + chunk)
            funding = -side * qty * (self.funding_cum[i + 1:j + 1] - self.funding_cum[e])
            if long:
                roi_price = ((1 + p.roi) * open_value - funding) / (qty * (1 - p.fee))
                hit_stop = c.low[i:j] <= stop
                hit_roi = c.high[i:j] >= roi_price
            else:
                roi_price = ((1 - p.roi) * open_value + funding) / (qty * (1 + p.fee))
                hit_stop = c.high[i:j] >= stop
                hit_roi = c.low[i:j] <= roi_price
            hits = np.flatnonzero(hit_stop | hit_roi)
            if len(hits):
                h = int(hits[0])
                x = i + h
                at = int(c.open_time[x])
                if hit_stop[h]:
                    price = gap_fill(stop, float(c.open[x]), beyond_is_below=long)
                    return _Trade(side, e, x, x, at, entry, price, qty, ExitReason.STOP_LOSS, float(funding[h]))
                price = self._roi_price(float(roi_price[h]), x)
                return _Trade(side, e, x, x, at, entry, price, qty, ExitReason.TAKE_PROFIT, float(funding[h]))
            i = j
            chunk *= 2
        return self._end_trade(side, e, hi, last_segment, entry, qty)

    def _roi_price(self, exact: float, x: int) -> float:
        c = self.c
        return clamp_to_candle(round_to_tick(exact, self.tick), float(c.low[x]), float(c.high[x]))

    def _end_trade(self, side: int, e: int, hi: int, last_segment: bool, entry: float, qty: float) -> _Trade:
        """Still open when the data ends: at ``end`` (the price at that instant) or at the close before a gap."""
        c = self.c
        at_end = last_segment and self.end_price is not None
        price = self.end_price if at_end and self.end_price is not None else float(c.close[hi - 1])
        f_to = self.funding_cum[hi] + (self.end_funding if at_end else 0.0)
        funding = -side * qty * (f_to - self.funding_cum[e])
        closed = self.end_ms if at_end else int(c.open_time[hi - 1]) + CANDLE_MS
        return _Trade(side, e, hi, hi - 1, closed, entry, float(price), qty, ExitReason.END_OF_DATA, float(funding))


def _to_result(run: _SymbolRun, trade: _Trade, params: EmaCrossParams, tick: Decimal, step: Decimal
               ) -> TradeResult:
    entry = _dec(trade.entry_price, tick)
    exit_ = _dec(trade.exit_price, tick)
    qty = _dec(trade.quantity, step)
    fee_rate = Decimal(repr(params.fee))
    fees = entry * qty * fee_rate + exit_ * qty * fee_rate
    funding = Decimal(repr(round(trade.funding, 10)))
    gross = (exit_ - entry) * qty * trade.side
    stop_pct = Decimal(repr(params.stop))
    stop = entry * (1 - stop_pct) if trade.side > 0 else entry * (1 + stop_pct)
    return TradeResult(
        symbol=run.c.symbol, side=PositionSide.LONG if trade.side > 0 else PositionSide.SHORT,
        opened_at=from_ms(int(run.c.open_time[trade.entry])), closed_at=from_ms(trade.closed_ms),
        entry_price=entry, exit_price=exit_, quantity=qty, exit_reason=trade.reason.value,
        net_pnl=gross - fees + funding, fees=fees, funding=funding, risk=abs(entry - stop) * qty)


def _dec(value: float, quantum: Decimal) -> Decimal:
    return Decimal(repr(value)).quantize(quantum)


def run_ema_cross(data_dir: Path, symbols: list[str], start: datetime, end: datetime, *,
                  exchange_info: Path | None = None, params: EmaCrossParams | None = None,
                  progress: ProgressFn | None = None, candles: Mapping[str, Candles] | None = None) -> BacktestResult:
    """Backtest the EMA-cross rule on ``symbols`` over ``[start, end)`` from the files in ``data_dir``
    (``candles``: already loaded with ``load_window``, to read the files only once)."""
    wall = time.perf_counter()
    params = params or EmaCrossParams()
    candles_by_symbol = candles
    rules = load_rules(data_dir, symbols, exchange_info)
    start_ms, end_ms = to_ms(start), to_ms(end)
    runs: list[_SymbolRun] = []
    gaps: list[DataGap] = []
    candles_total = 0
    for n, symbol in enumerate(symbols):
        loaded = (candles_by_symbol or {}).get(symbol) or load_window(data_dir, symbol, start, end, params)
        candles, after = loaded.split(end_ms)
        if not np.any(candles.open_time >= start_ms):
            raise DataError(f"{symbol}: no candles between {start:%Y-%m-%d} and {end:%Y-%m-%d} in {data_dir}")
        funding = load_funding(data_dir, symbol)
        ends_at_end = int(candles.open_time[-1]) + CANDLE_MS == end_ms and len(after) and after.open_time[0] == end_ms
        end_price = float(after.open[0]) if ends_at_end else None
        at_end = (funding.time >= end_ms) & (funding.time < end_ms + CANDLE_MS)
        end_funding = float(np.sum(funding.rate[at_end])) * end_price if end_price is not None else 0.0
        r = rules[symbol]
        run = _SymbolRun(candles, funding, float(r.tick_size), float(r.step_size), params, start_ms, end_ms,
                         end_price, end_funding)
        run.run()
        runs.append(run)
        gaps.extend(candles.gaps())
        candles_total += int(np.count_nonzero(candles.open_time >= start_ms))
        if progress is not None:
            progress(n + 1, len(symbols))
    trades = sorted((_to_result(run, t, params, rules[run.c.symbol].tick_size,
                                rules[run.c.symbol].step_size) for run in runs for t in run.trades),
                    key=lambda t: (t.opened_at, t.symbol))
    times, equity = equity_curve(runs, params.start_equity, start_ms, end_ms, params.fee)
    net = sum((t.net_pnl for t in trades), Decimal(0))
    return BacktestResult(
        strategy=STRATEGY, engine="fast", symbols=tuple(symbols), start=start, end=end,
        start_equity=params.start_equity, end_equity=params.start_equity + net, trades=tuple(trades),
        equity_ms=times, equity=equity, candles=candles_total,
        open_at_end=sum(1 for t in trades if t.exit_reason == ExitReason.END_OF_DATA and to_ms(t.closed_at) == end_ms),
        gaps=tuple(gaps), wall_seconds=time.perf_counter() - wall)


def load_window(data_dir: Path, symbol: str, start: datetime, end: datetime, params: EmaCrossParams | None = None
                ) -> Candles:
    """What ``run_ema_cross`` reads: the window, the startup candles before it and the candle opening at ``end``
    (its open is the price at which trades still open at the end are closed)."""
    warmup = (params or EmaCrossParams()).startup
    return load_candles(data_dir, symbol, start, from_ms(to_ms(end) + CANDLE_MS), warmup=warmup)


def equity_curve(runs: list[_SymbolRun], start_equity: Decimal, start_ms: int, end_ms: int, fee: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Equity at every 5m close of ``[start, end)``: start equity + realised P&L + open trades marked at the close
    (less their entry fee). A trade's P&L is realised at the close of the candle it exited in."""
    first = min((int(r.c.open_time[r.c.open_time >= start_ms][0]) for r in runs if len(r.c)), default=start_ms)
    grid = np.arange(first, end_ms, CANDLE_MS, dtype=np.int64)
    equity = np.full(len(grid), float(start_equity))
    realised = np.zeros(len(grid))
    for run in runs:
        c = run.c
        pos = np.searchsorted(grid, c.open_time)   # candles before ``first`` (warm-up) land on 0 and are skipped
        valid = c.open_time >= first
        for t in run.trades:
            sl = slice(t.entry, t.last)
            marked = t.side * t.quantity * (c.close[sl] - t.entry_price) - t.quantity * t.entry_price * fee
            ok = valid[sl]
            equity[pos[sl][ok]] += marked[ok]
            gross = t.side * t.quantity * (t.exit_price - t.entry_price)
            realised[pos[t.last]] += gross - t.quantity * (t.entry_price + t.exit_price) * fee + t.funding
    equity += np.cumsum(realised)
    return grid + CANDLE_MS, equity


def load_error(exc: Exception) -> str:
    return str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
