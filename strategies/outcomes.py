"""The outcome of one live vote: would its side have reached the take-profit before the stop within the horizon?

The same question the ML labels ask (``strategies.labels``), asked of one entry after the fact: the entry is the
close of the candle the vote was cast on, the stop and the take-profit are Vigil's own (``barrier_distances``: the
stop ATR multiple clamped to the min/max stop %, the take-profit at least ``min_reward_risk`` stops away), the
candles are the ``horizon`` entry-timeframe candles after it, and the first touch is found by the same code
(``first_touches``, ``barrier_order``: a candle that reaches both counts as the stop). So a resolved vote's ``won``
equals the triple-barrier label of that candle, and a voter's confidence is scored against the thing the model is
trained to predict.

- ``TP``: the take-profit came first (a win when it still pays the round-trip cost, as in the labels);
- ``SL``: the stop came first, or both in one candle;
- ``TIMEOUT``: neither within the horizon (a loss, as in the labels; ``r`` is the close at the horizon);
- ``VOID``: it cannot be told: no usable ATR, or a hole in the candles before the vote was decided;
- ``None`` (still open): fewer than ``horizon`` candles so far and neither barrier reached yet.

A price gap needs no special case: a candle that opens beyond a barrier has its high or low beyond it.
Pure numpy over plain arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from strategies.labels import BarrierParams, barrier_distances, barrier_order, first_touches


class Outcome(StrEnum):
    TP = "tp"
    SL = "sl"
    TIMEOUT = "timeout"
    VOID = "void"


DECIDED: tuple[Outcome, ...] = (Outcome.TP, Outcome.SL, Outcome.TIMEOUT)


@dataclass(frozen=True, slots=True)
class Resolution:
    outcome: Outcome | None      # None: still open
    r: float | None = None       # net return in stops (R) after the round-trip cost; None unless decided
    candles: int = 0             # candles after the entry that were looked at

    @property
    def won(self) -> bool:
        return self.outcome is Outcome.TP and self.r is not None and self.r > 0

    @property
    def decided(self) -> bool:
        return self.outcome in DECIDED


OPEN = Resolution(None)


def resolve_vote(direction: int, price: float, stop_atr: float, candle_ms: int, open_ms: np.ndarray,
                 high: np.ndarray, low: np.ndarray, close: np.ndarray, p: BarrierParams,
                 interval_ms: int = 300_000) -> Resolution:
    """The outcome of a ``direction`` (1 long, −1 short) entry at ``price`` on the close of the candle that opened
    at ``candle_ms``, from closed candles (``open_ms`` ascending; any may precede the entry: they are skipped)."""
    if direction not in (1, -1):
        raise ValueError(f"only a LONG (1) or SHORT (-1) vote has an outcome, got {direction}")
    if not (math.isfinite(stop_atr) and stop_atr > 0 and math.isfinite(price) and price > 0):
        return Resolution(Outcome.VOID)
    open_ms = np.asarray(open_ms, dtype=np.int64)
    after = open_ms > candle_ms
    times = open_ms[after]
    expected = candle_ms + interval_ms * np.arange(1, len(times) + 1, dtype=np.int64)
    contiguous = int(np.argmin(times == expected)) if len(times) and not (times == expected).all() else len(times)
    hole = contiguous < len(times)                           # a later candle exists past a missing one
    k = min(contiguous, p.horizon)
    if k == 0:
        return Resolution(Outcome.VOID) if hole else OPEN
    hi = np.asarray(high, dtype=np.float64)[after][:k][None, :]
    lo = np.asarray(low, dtype=np.float64)[after][:k][None, :]
    stop_dist, tp_dist = (float(x[0]) for x in barrier_distances(np.array([price]), np.array([stop_atr]), p))
    tp_price = np.array([price + direction * tp_dist])
    sl_price = np.array([price - direction * stop_dist])
    first_tp, first_sl = first_touches(hi, lo, tp_price, sl_price, direction)
    tp_first, sl_first = barrier_order(first_tp, first_sl, k)
    cost = price * p.cost_pct / 100.0
    if tp_first[0]:
        return Resolution(Outcome.TP, (tp_dist - cost) / stop_dist, int(first_tp[0]) + 1)
    if sl_first[0]:
        return Resolution(Outcome.SL, (-stop_dist - cost) / stop_dist, int(first_sl[0]) + 1)
    if k == p.horizon:
        last = float(np.asarray(close, dtype=np.float64)[after][k - 1])
        return Resolution(Outcome.TIMEOUT, (direction * (last - price) - cost) / stop_dist, k)
    return Resolution(Outcome.VOID, None, k) if hole else Resolution(None, None, k)


@dataclass(frozen=True, slots=True)
class Resolutions:
    """``resolve_vote`` of many entries at once (the backtest's vote book), one value per entry."""

    decided: np.ndarray        # bool: take-profit, stop or time-out (False: void, or still open at the data's end)
    won: np.ndarray            # bool: ``Resolution.won``
    known_ms: np.ndarray       # int64: close time of the candle that decided it (meaningless where not decided)


def resolve_entries(rows: np.ndarray, direction: np.ndarray, price: np.ndarray, stop_atr: np.ndarray,
                    open_ms: np.ndarray, high: np.ndarray, low: np.ndarray, p: BarrierParams,
                    interval_ms: int = 300_000, chunk: int = 500) -> Resolutions:
    """``resolve_vote`` for entries on the close of candle ``rows`` (indices into the candle arrays) with the
    whole later history known, and the moment each outcome became known (the close of its deciding candle: the
    first that touched a barrier, or the horizon's last). The same rule: the candles after the entry up to the
    first hole, a take-profit first only when the stop is not touched in the same or an earlier candle, a time-out
    after ``horizon`` candles; an entry whose contiguous candles end before it is decided is void (or still
    open at the end of the data): never decided."""
    rows = np.asarray(rows, dtype=np.int64)
    direction = np.asarray(direction, dtype=np.int64)
    n, m, h = len(open_ms), len(rows), p.horizon
    decided = np.zeros(m, dtype=bool)
    won = np.zeros(m, dtype=bool)
    known = np.zeros(m, dtype=np.int64)
    if m == 0:
        return Resolutions(decided, won, known)
    open_ms = np.asarray(open_ms, dtype=np.int64)
    high, low = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    breaks = np.flatnonzero(np.diff(open_ms) != interval_ms)          # a hole right after candle i
    seg_end = np.append(breaks, n - 1)[np.searchsorted(np.append(breaks, n - 1), rows)]
    k = np.minimum(seg_end - rows, h)                                  # contiguous candles after each entry
    price, stop_atr = np.asarray(price, dtype=np.float64), np.asarray(stop_atr, dtype=np.float64)
    ok = np.isfinite(stop_atr) & (stop_atr > 0) & np.isfinite(price) & (price > 0) & (k > 0)
    stop_dist, tp_dist = barrier_distances(price, np.where(ok, stop_atr, 1.0), p)
    ahead = np.arange(1, h + 1)[None, :]
    for lo in range(0, m, chunk):
        sl_ = slice(lo, min(m, lo + chunk))
        idx = rows[sl_, None] + ahead
        inside = ahead <= k[sl_, None]
        hi = np.where(inside, high[np.minimum(idx, n - 1)], -np.inf)
        lw = np.where(inside, low[np.minimum(idx, n - 1)], np.inf)
        for side in (1, -1):
            pick = np.flatnonzero(direction[sl_] == side)
            if pick.size == 0:
                continue
            e = lo + pick
            tp_price = price[e] + side * tp_dist[e]
            sl_price = price[e] - side * stop_dist[e]
            first_tp, first_sl = first_touches(hi[pick], lw[pick], tp_price, sl_price, side)
            tp_first, sl_first = barrier_order(first_tp, first_sl, h)
            timeout = ~tp_first & ~sl_first & (k[e] == h)
            cost = price[e] * p.cost_pct / 100.0
            decided[e] = (tp_first | sl_first | timeout) & ok[e]
            won[e] = tp_first & ((tp_dist[e] - cost) / stop_dist[e] > 0) & ok[e]
            last = np.where(tp_first, first_tp, np.where(sl_first, first_sl, h - 1))
            known[e] = open_ms[rows[e]] + (last + 2) * interval_ms
    return Resolutions(decided, won, known)
