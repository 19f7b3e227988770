"""LEARNED_WEIGHTS in the backtests (``engine.backtest.learned_weights``), on the bundled real data.

- the regime each replayed vote is filed under is the live ``regime_of_candles`` of the scan's stop window;
- ``resolve_entries`` is ``resolve_vote``, and an outcome is known at the close of the candle that decided it,
  not one candle earlier;
- a voter that is always wrong keeps the prior weight until enough of its outcomes are KNOWN (not merely
  recorded), then loses its say;
- (slow) the replay of the live trader with its live vote book and the fast engine use the same weights at every
  scan (to 1e-9: the vectorised voters' confidences match the live ones to that precision, not bit for bit) and
  produce the same trade list.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.backtest import backtest_consensus, learned_tables, paper_trader, run_fast_backtest
from core.clock import ManualClock
from engine.backtest.learned_weights import fast_scan_times, learn_over_scans
from engine.backtest.replay import DemoOptions, run_backtest, trade_result
from engine.exchange.historical import HistoricalMarket
from engine.trading.vote_log import VoteLogConfig
from settings import Settings
from strategies.consensus import Consensus
from strategies.labels import BarrierParams, triple_barrier
from strategies.outcomes import resolve_entries, resolve_vote
from strategies.regime import REGIMES, regime_of_candles
from strategies.signal_table import SignalConfig, SymbolSignals, build_symbol_signals
from strategies.technical import TrendMomentumVoter
from strategies.types import Direction, Vote
from strategies.weights import WeightParams
from tests.test_engine_parity import key

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
START = datetime(2025, 3, 24, tzinfo=UTC)
STEP = 300_000
PARITY_DAYS = 7  # the replay keeps the live vote book: ~12 s of CPU per day of three symbols
PANEL = {"entry_threshold": 0.25, "voters": "trend_momentum,trend_following,mean_reversion,breakout"}


def sample_table(symbol: str, settings: Settings) -> tuple[SymbolSignals, HistoricalMarket]:
    market = HistoricalMarket(SAMPLE, ManualClock(START), [symbol])
    table = build_symbol_signals(market.base_klines(symbol), backtest_consensus(settings),
                                 SignalConfig.from_settings(settings), keep_votes=True)
    return table, market


def test_per_row_weights_combine_as_the_live_consensus_with_those_weights() -> None:
    """``combine_arrays`` with per-row weights is ``combine`` with that row's weights, gates included: a voter whose
    learned weight is 0 does not count towards ``min_agree``."""
    names = ["a", "b", "c"]
    consensus = Consensus([TrendMomentumVoter(name=n) for n in names], threshold=0.3,  # type: ignore[arg-type]
                          min_agree=2, min_agreement=0.5)
    rng = np.random.default_rng(11)
    n = 3_000
    votes = [(name, rng.integers(-1, 2, n).astype(np.int8), rng.uniform(0.2, 1.0, n)) for name in names]
    weights = {name: np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 1.5, n)) for name in names}
    direction, score = consensus.combine_arrays(votes, n, weights)
    gated = 0
    for i in range(n):
        row = [Vote(name, Direction(int(d[i])), float(c[i]), "") for name, d, c in votes]
        expected = consensus.combine(row, {name: float(w[i]) for name, w in weights.items()})
        assert (Direction(int(direction[i])), float(score[i])) == expected
        agreeing = [v for v in row if v.direction is not Direction.FLAT and v.direction.value == np.sign(
            sum(weights[v.voter][i] * v.direction.value for v in row))]
        gated += len(agreeing) >= 2 and sum(weights[v.voter][i] > 0 for v in agreeing) < 2
    assert gated > 0, "no row where a zero-weight voter would have made up min_agree"


def test_the_replayed_regime_is_the_live_regime_of_the_stop_window() -> None:
    table, _ = sample_table("ETHUSDT", Settings(_env_file=None))  # type: ignore[call-arg]
    rows = np.flatnonzero(table.valid)
    sample = np.concatenate((rows[:150], np.random.default_rng(7).choice(rows, 250, replace=False)))
    codes = table.regime_codes(sample)
    stop = table.config.stop
    expected = []
    for row in sample:
        window = table.windows_at(int(row))[stop]
        regime = regime_of_candles(window.high, window.low, window.close)
        expected.append(REGIMES.index(regime) if regime is not None else -1)
    assert codes.tolist() == expected
    assert len(set(expected)) >= 3, "the sample should cross several regimes"


def test_resolve_entries_is_resolve_vote_and_knows_an_outcome_only_when_its_candle_closes() -> None:
    table, market = sample_table("SOLUSDT", Settings(_env_file=None))  # type: ignore[call-arg]
    h = market.base_klines("SOLUSDT")
    p = BarrierParams(horizon=48)
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(np.flatnonzero(table.valid), 200, replace=False))
    sides = rng.choice([-1, 1], len(rows))
    got = resolve_entries(rows, sides, table.price[rows], table.atr[rows], h.open_time, h.high, h.low, p)
    for i, (row, side) in enumerate(zip(rows.tolist(), sides.tolist(), strict=True)):
        args = (side, float(table.price[row]), float(table.atr[row]), int(h.open_time[row]))
        full = resolve_vote(*args, h.open_time, h.high, h.low, h.close, p)
        assert (got.decided[i], got.won[i]) == (full.decided, full.won)
        if not full.decided:
            continue
        known = int(got.known_ms[i])              # the close of the deciding candle: candles closed by then
        before = h.open_time + STEP <= known - STEP
        upto = h.open_time + STEP <= known
        assert resolve_vote(*args, *(a[upto] for a in (h.open_time, h.high, h.low, h.close)), p) == full
        assert not resolve_vote(*args, *(a[before] for a in (h.open_time, h.high, h.low, h.close)), p).decided


def test_an_always_wrong_voter_loses_its_weight_only_after_its_outcomes_are_known() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    table, market = sample_table("BTCUSDT", settings)
    h = market.base_klines("BTCUSDT")
    p = BarrierParams(horizon=48)
    assert table.votes is not None
    labels = triple_barrier(h.high, h.low, h.close, table.atr, p)
    wrong = np.where(labels.long == 0, 1, np.where(labels.short == 0, -1, 0)).astype(np.int8)  # the losing side
    wrong[~table.valid] = 0
    table.votes["trend_momentum"] = (wrong, np.full(len(wrong), 0.9))
    params = WeightParams()
    times = fast_scan_times(int(START.timestamp() * 1000), int((START + timedelta(days=4)).timestamp() * 1000), 1,
                            5_000)
    run = learn_over_scans({"BTCUSDT": table}, {"BTCUSDT": h}, ["BTCUSDT"], times, backtest_consensus(settings),
                           VoteLogConfig(barrier=p, weights=params))
    used = run.weights["BTCUSDT"]["trend_momentum"]

    # the reference: each wrong vote, its regime at the scan, when its outcome was recorded and known
    rows = table.rows_at(times // STEP * STEP - STEP)
    steps = np.flatnonzero(rows >= 0)
    regimes = table.regime_codes(rows[steps])
    votes = []                                    # (scan time, regime, known at)
    for k, row, regime in zip(steps.tolist(), rows[steps].tolist(), regimes.tolist(), strict=True):
        if wrong[row] == 0 or regime < 0:
            continue
        r = resolve_vote(int(wrong[row]), float(table.price[row]), float(table.atr[row]), int(h.open_time[row]),
                         h.open_time, h.high, h.low, h.close, p)
        assert r.decided and not r.won
        votes.append((int(times[k]), regime, int(h.open_time[row]) + (r.candles + 1) * STEP))
    waited = 0
    for i, k in enumerate(steps.tolist()[1:], start=1):
        regime = int(regimes[i - 1])              # the live book weighs by the regime of the previous scan
        if regime < 0:
            continue
        last_resolve = run.resolve_ms[run.resolve_ms < times[k]]
        horizon = int(last_resolve[-1]) if len(last_resolve) else -1
        known = sum(1 for t, r, at in votes if r == regime and at <= horizon)
        recorded = sum(1 for t, r, _ in votes if r == regime and t < times[k])
        if known < params.min_votes:
            assert used[k] == params.prior, f"cut before {params.min_votes} outcomes were known ({known})"
            waited += recorded >= params.min_votes
        else:
            assert used[k] == 0.0
    assert waited > 0, "no scan where the votes were recorded but their outcomes not yet known"
    assert (used == 0.0).any(), "the always-wrong voter never lost its weight"


@pytest.mark.slow
def test_the_replay_and_the_fast_engine_use_the_same_weights_and_make_the_same_trades() -> None:
    """The live trader with its live vote book (SQLite, resolve job, learn, prune) over the demo window's first
    week, against the fast engine's replayed book: the weights at every scan of every symbol, then the whole trade
    list."""
    settings = Settings(_env_file=None, trading_mode="paper", learned_weights=True, **PANEL)  # type: ignore[call-arg]
    seen: dict[tuple[int, str], dict[str, float]] = {}

    def recording_trader(*args: object) -> object:
        trader = paper_trader(*args)  # type: ignore[arg-type]
        source, clock = trader.consensus.source, args[-1]  # type: ignore[attr-defined]

        def weights(symbol: str) -> dict[str, float]:
            out = dict(source(symbol))
            seen[(int(clock.now().timestamp() * 1000), symbol)] = out  # type: ignore[attr-defined]
            return out

        trader.consensus.source = weights  # type: ignore[attr-defined]
        return trader

    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    options = DemoOptions(data_dir=SAMPLE, symbols=symbols, start=START, days=PARITY_DAYS, quiet=True)
    summary = asyncio.run(run_backtest(settings, options, make_trader=recording_trader))
    end = summary.end + timedelta(seconds=1)
    market = HistoricalMarket(SAMPLE, ManualClock(START), symbols)
    histories = {s: market.base_klines(s) for s in symbols}
    consensus = backtest_consensus(settings)
    tables = {s: build_symbol_signals(histories[s], consensus, SignalConfig.from_settings(settings), keep_votes=True)
              for s in symbols}
    run = learned_tables(settings, tables, histories, symbols, START, end, consensus)
    step_of = {int(t): k for k, t in enumerate(run.scan_ms)}
    voters = [v.name for v in consensus.voters]
    learned = 0
    for (now, symbol), weights in seen.items():
        k = step_of[now]
        fast = {v: float(run.weights[symbol][v][k]) for v in voters}
        # the vectorised votes' confidences equal the live ones to ~1e-12 (the signal parity test), not bit for bit
        assert fast == pytest.approx({v: weights.get(v, 1.0) for v in voters}, rel=1e-9, abs=1e-12), \
            f"{symbol} at {now}"
        learned += any(w != 1.0 for w in weights.values())
    assert len(seen) == len(symbols) * 288 * PARITY_DAYS, "every scan of every symbol is checked"
    assert learned > len(seen) // 2, "the weights should have been learned for most of the window"

    fast_result = run_fast_backtest(settings, SAMPLE, symbols, START, end, close_at_end=False)
    expected = sorted((trade_result(t) for t in summary.trades), key=lambda t: (t.closed_at, t.symbol))
    got = sorted(fast_result.trades, key=lambda t: (t.closed_at, t.symbol))
    assert len(expected) >= 10, "a window without trades proves nothing"
    assert [key(t) for t in got] == [key(t) for t in expected]
    assert fast_result.end_equity == summary.end_equity
