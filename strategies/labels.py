"""Triple-barrier labels from Vigil's own exit rule: would this entry's take-profit be hit before its stop?

An entry at the close of candle t (long or short, separately) gets the stop and the take-profit Vigil would place:
``stop_mult × ATR_t`` away (clamped to ``[min_stop_pct, max_stop_pct]`` of the price) and the take-profit
``max(tp_mult × ATR_t, min_reward_risk × stop distance)`` away. The label looks at the candles t+1 … t+horizon:

- 1 (win) when the take-profit is reached before the stop, AND the trade still makes money after the round-trip
  cost (taker fees and slippage on both sides);
- 0 otherwise: the stop comes first, both are inside one candle (the stop counts first, as the fill model does),
  or neither is reached within the horizon (the vertical barrier);
- NaN (no label) when the horizon runs past the data or across a gap, or the ATR is not known yet.

``outcome`` carries the net return of the barrier that ended the trade (the close at the horizon for the vertical
barrier), in units of the stop distance (R), after costs: what acting on the label would have earned.
Pure numpy, vectorised in chunks to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 4_000


@dataclass(frozen=True, slots=True)
class BarrierParams:
    horizon: int = 48                 # candles (48 × 5m = 4 h)
    stop_mult: float = 2.0            # STOP_ATR_MULT
    tp_mult: float = 3.0              # TAKE_PROFIT_ATR_MULT
    min_stop_pct: float = 0.5         # MIN_STOP_PCT
    max_stop_pct: float = 5.0         # MAX_STOP_PCT
    min_reward_risk: float = 1.5      # MIN_REWARD_RISK
    cost_pct: float = 0.14            # round trip: 2 × (taker 0.05 % + slippage 0.02 %)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be at least 1 candle, got {self.horizon}")
        if min(self.stop_mult, self.tp_mult, self.min_stop_pct, self.max_stop_pct) <= 0:
            raise ValueError("barrier multiples and stop percentages must be > 0")
        if self.min_stop_pct > self.max_stop_pct:
            raise ValueError("min_stop_pct must not exceed max_stop_pct")


@dataclass(frozen=True, slots=True)
class Labels:
    long: np.ndarray          # float64: 1, 0 or NaN
    short: np.ndarray
    long_outcome: np.ndarray  # float64: net R of acting on a long entry at t (NaN where unlabelled)
    short_outcome: np.ndarray


def barrier_distances(close: np.ndarray, atr: np.ndarray, p: BarrierParams) -> tuple[np.ndarray, np.ndarray]:
    """Stop and take-profit distances in price units, as the entry planner places them."""
    stop = np.clip(p.stop_mult * atr, close * p.min_stop_pct / 100.0, close * p.max_stop_pct / 100.0)
    take = np.maximum(p.tp_mult * atr, p.min_reward_risk * stop)
    return stop, take


def triple_barrier(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, p: BarrierParams,
                   *, segment_end: np.ndarray | None = None) -> Labels:
    """Labels for every candle. ``segment_end[t]`` is the index of the last candle of t's contiguous run of data
    (no gap between t and it); without it the whole series is one run."""
    n = len(close)
    high, low, close, atr = (np.asarray(a, dtype=np.float64) for a in (high, low, close, atr))
    end = np.full(n, n - 1, dtype=np.int64) if segment_end is None else np.asarray(segment_end, dtype=np.int64)
    out = [np.full(n, np.nan) for _ in range(4)]
    stop_dist, tp_dist = barrier_distances(close, atr, p)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        _label_chunk(start, stop, high, low, close, atr, stop_dist, tp_dist, end, p, out)
    return Labels(*out)


def _label_chunk(start: int, stop: int, high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray,
                 stop_dist: np.ndarray, tp_dist: np.ndarray, end: np.ndarray, p: BarrierParams,
                 out: list[np.ndarray]) -> None:
    h = p.horizon
    idx = np.arange(start, stop)
    usable = (idx + h <= end[idx]) & np.isfinite(atr[idx]) & (atr[idx] > 0)
    rows = idx[usable]
    if rows.size == 0:
        return
    ahead = rows[:, None] + np.arange(1, h + 1)[None, :]          # (rows, h) indices of the candles after entry
    hi, lo = high[ahead], low[ahead]
    entry = close[rows]
    cost = entry * p.cost_pct / 100.0
    sd, td = stop_dist[rows], tp_dist[rows]
    horizon_close = close[rows + h]
    for side, label_out, outcome_out in ((1, out[0], out[2]), (-1, out[1], out[3])):
        tp_price = entry + side * td
        sl_price = entry - side * sd
        first_tp, first_sl = first_touches(hi, lo, tp_price, sl_price, side)
        tp_first, sl_first = barrier_order(first_tp, first_sl, h)
        gross = np.where(tp_first, td, np.where(sl_first, -sd, side * (horizon_close - entry)))
        net = gross - cost
        label_out[rows] = (tp_first & (td - cost > 0)).astype(np.float64)
        outcome_out[rows] = net / sd


def first_touches(hi: np.ndarray, lo: np.ndarray, tp_price: np.ndarray, sl_price: np.ndarray, side: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``hi``/``lo`` (rows × candles after entry), the index of the first candle that reaches the
    take-profit and the stop (the number of candles when it never does)."""
    h = hi.shape[1]
    tp_hit = (hi >= tp_price[:, None]) if side == 1 else (lo <= tp_price[:, None])
    sl_hit = (lo <= sl_price[:, None]) if side == 1 else (hi >= sl_price[:, None])
    first_tp = np.where(tp_hit.any(axis=1), tp_hit.argmax(axis=1), h)
    first_sl = np.where(sl_hit.any(axis=1), sl_hit.argmax(axis=1), h)
    return first_tp, first_sl


def barrier_order(first_tp: np.ndarray, first_sl: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(take-profit first, stop first)``: a tie (both inside one candle) is the stop, as the fill model does."""
    tp_first = first_tp < first_sl
    sl_first = (first_sl <= first_tp) & (first_sl < horizon)
    return tp_first, sl_first


def segment_ends(open_ms: np.ndarray, interval_ms: int) -> np.ndarray:
    """For each candle, the index of the last candle before the next gap (or the last candle)."""
    n = len(open_ms)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(open_ms) != interval_ms)      # a gap after candle i
    last_of_run = np.append(breaks, n - 1)
    run = np.searchsorted(last_of_run, np.arange(n), side="left")
    return last_of_run[run].astype(np.int64)
