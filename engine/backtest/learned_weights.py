"""``LEARNED_WEIGHTS=true`` in the fast backtest: the live vote book replayed over the signal tables, causally.

The live bot (``engine.trading.vote_log.VoteLog``, ``strategies.consensus.LearnedConsensus``) does, at each scan:
decide with the weights learned so far, in the symbol's regime as of its previous scan; then record the votes of
every symbol with at least one non-FLAT voter, each with the regime of this scan; then, every ``resolve_every``,
resolve the entries whose outcome is known by now and relearn the weights from the newest ``window`` decided votes
of each voter and regime (``strategies.weights``); then, on the first scan of each UTC day, prune the votes older
than the retention. This module does the same over the scan times of a fast backtest:

- which votes are recorded: every non-FLAT vote of every symbol in the scan (the votes do not depend on the
  weights, and a scan happens whatever the breakers say, so nothing here depends on the trades);
- outcomes: ``strategies.outcomes.resolve_entries`` (the rule of ``resolve_vote``) from the whole 5m history, each
  with the close of the candle that decided it; it enters the weights at the first resolve at or after that close,
  and the weights of a resolve apply from the next scan on. The weights at a scan never use an outcome that was
  not known at that scan;
- weights: per (voter, regime), the newest ``window`` decided votes by (scan time, symbol order) kept
  incrementally, their squared errors summed exactly (integers), and ``strategies.weights.skill_of``, the formula
  the live vote book uses, on (count, Brier score, wins). The live Brier sum is exactly rounded (``math.fsum``), so
  the same votes give the same weight to the last bit (the vectorised votes' confidences match the live ones to
  about 1e-12, not bit for bit);
- the consensus: ``Consensus.combine_arrays`` with each row's weights; the tables' ``direction`` and ``score`` (and
  ``signal_at``) are replaced, nothing else changes, so the engine itself is unchanged.

Approximations, both only where the data has a hole: a scan one candle into a gap reuses the previous row (as
the live scan does) and is recorded twice as the live book does, but the row's decision is the one of its first
scan; and the live book resolves from its cached candles, which around a hole may void an entry later or
differently than ``resolve_entries`` (void votes never count either way).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np

from engine.backtest.signals import BASE_MS, scan_indices
from engine.exchange.types import KlineBatch
from engine.trading.vote_log import VoteLogConfig
from strategies.consensus import Consensus
from strategies.outcomes import resolve_entries
from strategies.regime import REGIMES
from strategies.signal_table import SymbolSignals, _Arrays
from strategies.types import Direction, Signal
from strategies.weights import WeightParams, skill_of, squared_error

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
EXACT = 1074                       # every double's squared error is an integer number of 2**-1074


def _exact(x: float) -> int:
    """``x`` (≥ 0) as an integer count of 2**-1074: sums of these are exact."""
    num, den = x.as_integer_ratio()
    return num << (EXACT - den.bit_length() + 1)


class LearnedSignals(SymbolSignals):
    """A signal table whose consensus (``direction``, ``score``, ``signal_at``) is the one with learned weights;
    features, windows, ATR, price and context are the base table's."""

    def signal_at(self, i: int) -> Signal | None:
        signal = super().signal_at(i)
        if signal is None:
            return None
        return replace(signal, direction=Direction(int(self.direction[i])), score=float(self.score[i]))


@dataclass(frozen=True, slots=True)
class LearnedRun:
    """What the replayed vote book gave: the tables to run the engine on, and for each symbol and voter the weight
    used at each scan (NaN where the scan left the symbol out). ``scan_ms``: the scan times."""

    tables: dict[str, SymbolSignals]
    scan_ms: np.ndarray
    weights: dict[str, dict[str, np.ndarray]]
    resolve_ms: np.ndarray          # the resolve runs (the weights change only there)
    decided_votes: int


class _Window:
    """The newest ``size`` decided votes of one voter and regime, ordered by (scan step, symbol order), with the
    exact sum of their squared errors and their wins."""

    __slots__ = ("items", "size", "sq", "wins")

    def __init__(self, size: int) -> None:
        self.items: list[tuple[int, int, bool]] = []   # (order, exact squared error, won)
        self.sq = 0
        self.wins = 0
        self.size = size

    def add(self, order: int, sq: int, won: bool) -> bool:
        """Insert one vote; False when it is older than a full window (it would never count)."""
        items = self.items
        if len(items) >= self.size and order < items[0][0]:
            return False
        bisect.insort(items, (order, sq, won))
        self.sq += sq
        self.wins += won
        if len(items) > self.size:
            _, old_sq, old_won = items.pop(0)
            self.sq -= old_sq
            self.wins -= old_won
        return True

    def prune(self, before_order: int) -> bool:
        """Drop the votes scanned before ``before_order``; whether any was dropped."""
        items = self.items
        k = bisect.bisect_left(items, (before_order, -1, False))
        for _, sq, won in items[:k]:
            self.sq -= sq
            self.wins -= won
        del items[:k]
        return k > 0


def _resolve_and_prune_steps(scan_ms: np.ndarray, resolve_every: timedelta) -> tuple[np.ndarray, np.ndarray]:
    """The scans after which the live book resolves (the first, then each ``resolve_every`` after the last one)
    and prunes (the first scan of each UTC day)."""
    every = int(resolve_every.total_seconds() * 1000)
    resolve: list[int] = []
    last: int | None = None
    for k, t in enumerate(scan_ms.tolist()):
        if last is None or t - last >= every:
            resolve.append(k)
            last = t
    day = scan_ms // DAY_MS
    prune = np.flatnonzero(np.concatenate(([True], day[1:] != day[:-1]))) if len(scan_ms) else np.zeros(0, np.int64)
    return np.asarray(resolve, dtype=np.int64), prune.astype(np.int64)


def learn_over_scans(tables: Mapping[str, SymbolSignals], histories: Mapping[str, KlineBatch],
                     universe: Sequence[str], scan_ms: np.ndarray, consensus: Consensus,
                     config: VoteLogConfig) -> LearnedRun:
    """Replay the live vote book over the scans at ``scan_ms`` (ascending, ms) of ``universe`` (scan order) and
    return the tables with the learned-weight consensus (see the module docstring). ``tables`` must have kept
    their votes (``keep_votes=True``); ``histories`` are the 5m candles the outcomes are read from."""
    scan_ms = np.asarray(scan_ms, dtype=np.int64)
    voters = [v.name for v in consensus.voters]
    params: WeightParams = config.weights
    n_regimes = len(REGIMES)
    symbols = [s for s in universe if s in tables]
    rows_by = scan_indices({s: tables[s].open_ms for s in symbols}, symbols, scan_ms, tables)
    resolve_steps, prune_steps = _resolve_and_prune_steps(scan_ms, config.resolve_every)
    resolve_ms = scan_ms[resolve_steps]
    n_sym = len(symbols)

    # ---- every decided vote: (resolve run, order, voter-regime key, squared error, won)
    per_symbol: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    batches: list[tuple[np.ndarray, ...]] = []
    for j, symbol in enumerate(symbols):
        table = tables[symbol]
        if table.votes is None:
            raise ValueError(f"{symbol}: the signal table did not keep its votes (build it with keep_votes=True)")
        steps = np.flatnonzero(rows_by[symbol] >= 0)
        rows = rows_by[symbol][steps]
        regimes = table.regime_codes(rows) if len(rows) else np.zeros(0, dtype=np.int8)
        per_symbol[symbol] = (steps, rows, regimes)
        cand = [(vi, np.flatnonzero((table.votes[name][0][rows] != 0) & (regimes >= 0)))
                for vi, name in enumerate(voters)]
        entry_rows = np.concatenate([rows[k] for _, k in cand])
        entry_dirs = np.concatenate([table.votes[name][0][rows[k]] for (_, k), name in zip(cand, voters, strict=True)])
        if len(entry_rows) == 0:
            continue
        keys, inverse = np.unique(entry_rows * 2 + (entry_dirs > 0), return_inverse=True)
        h = histories[symbol]
        pos = np.searchsorted(h.open_time, table.open_ms[keys // 2])
        res = resolve_entries(pos, np.where(keys % 2 == 1, 1, -1), table.price[keys // 2], table.atr[keys // 2],
                              h.open_time, h.high, h.low, config.barrier)
        offset = 0
        for vi, k in cand:
            ix = inverse[offset:offset + len(k)]
            offset += len(k)
            keep = res.decided[ix]
            k, ix = k[keep], ix[keep]
            run = np.searchsorted(resolve_ms, res.known_ms[ix], side="left")
            inside = run < len(resolve_ms)
            k, ix, run = k[inside], ix[inside], run[inside]
            batches.append((run, steps[k] * n_sym + j, vi * n_regimes + regimes[k].astype(np.int64),
                            table.votes[voters[vi]][1][rows[k]], res.won[ix]))
    if batches:
        run, order, key, conf, won = (np.concatenate(parts) for parts in zip(*batches, strict=True))
    else:
        run = order = key = np.zeros(0, dtype=np.int64)
        conf, won = np.zeros(0), np.zeros(0, dtype=bool)
    by_run = np.argsort(run, kind="stable")
    run, order, key, conf, won = run[by_run], order[by_run], key[by_run], conf[by_run], won[by_run]
    bounds = np.searchsorted(run, np.arange(len(resolve_ms) + 1), side="left")

    # ---- the book, resolve run by resolve run
    n_keys = len(voters) * n_regimes
    windows = [_Window(params.window) for _ in range(n_keys)]
    learned = np.full((n_keys, len(resolve_ms) + 1), np.nan)   # column e + 1: after resolve run e (NaN: no vote)
    marks = np.zeros((n_keys, len(resolve_ms) + 1), dtype=bool)  # where a key's weight was relearned
    retention = int(config.retention.total_seconds() * 1000)
    prune_at = scan_ms[prune_steps] - retention           # cutoffs, in effect after each prune scan
    next_prune = 0
    cutoff_order = -1
    order_l, key_l, conf_l, won_l = order.tolist(), key.tolist(), conf.tolist(), won.tolist()
    for e, step in enumerate(resolve_steps.tolist()):
        dirty: set[int] = set()
        while next_prune < len(prune_steps) and prune_steps[next_prune] < step:
            cutoff = int(prune_at[next_prune])
            next_prune += 1
            cutoff_order = int(np.searchsorted(scan_ms, cutoff, side="left")) * n_sym  # first order kept
            dirty.update(i for i, w in enumerate(windows) if w.items and w.prune(cutoff_order))
        for i in range(int(bounds[e]), int(bounds[e + 1])):
            if order_l[i] < cutoff_order:
                continue                                   # pruned before its outcome was known
            if windows[key_l[i]].add(order_l[i], _exact(squared_error(conf_l[i], won_l[i])), won_l[i]):
                dirty.add(key_l[i])
        for i in dirty:
            w = windows[i]
            n = len(w.items)
            weight = (skill_of("", "", n, (w.sq / (1 << EXACT)) / n, w.wins, params).weight if n
                      else float("nan"))
            learned[i, e + 1] = weight
            marks[i, e + 1] = True
    last = np.where(marks, np.arange(len(resolve_ms) + 1)[None, :], 0)   # carry each weight to the next change
    np.maximum.accumulate(last, axis=1, out=last)
    learned = np.take_along_axis(learned, last, axis=1)

    # ---- the decisions: each scan's weights, in the regime of the symbol's previous scan
    out_tables: dict[str, SymbolSignals] = dict(tables)
    out_weights: dict[str, dict[str, np.ndarray]] = {}
    for symbol in symbols:
        table = tables[symbol]
        steps, rows, regimes = per_symbol[symbol]
        prev = np.concatenate(([-1], regimes[:-1])).astype(np.int64)
        column = np.searchsorted(resolve_steps, steps, side="left")    # resolve runs strictly before the scan
        weights = {}
        out_weights[symbol] = {}
        for vi, name in enumerate(voters):
            value = learned[vi * n_regimes + np.maximum(prev, 0), column]
            w = np.where((prev >= 0) & np.isfinite(value), value, params.prior)
            weights[name] = w
            full = np.full(len(scan_ms), np.nan)
            full[steps] = w
            out_weights[symbol][name] = full
        assert table.votes is not None
        votes = [(name, table.votes[name][0][rows], table.votes[name][1][rows]) for name in voters]
        direction, score = consensus.combine_arrays(votes, len(rows), weights)
        new_direction, new_score = table.direction.copy(), table.score.copy()
        new_direction[rows[::-1]] = direction[::-1]                        # a row scanned twice: its first scan
        new_score[rows[::-1]] = score[::-1]
        arrays = _Arrays(new_direction, new_score, table.atr, table.price, table.adx, table.atr_ratio,
                         table.stop_atr, table.votes)
        out_tables[symbol] = LearnedSignals(table.symbol, table.open_ms, table.config, table.consensus,
                                            table._tables, table._index, table.valid, arrays)
    log.debug("learned weights: %d decided votes over %d resolve runs", len(order), len(resolve_ms))
    return LearnedRun(out_tables, scan_ms, out_weights, resolve_ms, len(order))


def fast_scan_times(start_ms: int, end_ms: int, scan_every: int, delay_ms: int) -> np.ndarray:
    """The fast engine's scan times over ``[start, end)``: every ``scan_every``-th 5m step, ``delay`` after it."""
    steps = max((end_ms - delay_ms - start_ms) // BASE_MS + 1, 0)
    t = start_ms + delay_ms + np.arange(steps, dtype=np.int64) * BASE_MS
    return t[::scan_every]
