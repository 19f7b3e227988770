"""strategies.windowed, TrendMomentumVoter.vote_arrays and Consensus.combine_arrays against the live scalar code.

Every row of a run is compared with ``compute_features`` on exactly that row's window (the last ``history``
candles of the run), on real candles, with other parameters, and on hand-made series that hit the exact-zero
cases (no down move → RSI 100, no directional move → DX 0/0, constant volume → z-score 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.exchange.types import KlineBatch
from strategies.consensus import Consensus
from strategies.features import FeatureParams, Features, compute_features
from strategies.technical import TrendMomentumParams, TrendMomentumVoter
from strategies.types import Direction, Vote
from strategies.windowed import FLOAT_FEATURES, Run, _geo, run_features
from tests.helpers_market import FEATURE_TFS, feats, make_batch, sample_klines

PRICE_DIFFS = {"macd", "macd_signal", "macd_hist", "macd_hist_prev"}
ATR_UNITS = {"ema_fast_slope", "trend", "extension"}


def assert_run_equals_live(batch: KlineBatch, history: int, p: FeatureParams = FeatureParams(),
                           rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    run = Run.of(batch, history, p.required_candles)
    values = run_features(run, p)
    picks = range(len(run.rows)) if rows is None else rows
    for k in picks:
        j, s = int(run.rows[k]), int(run.starts[k])
        assert j - s + 1 == min(j + 1, history)
        live = compute_features({batch.interval: batch.slice(s, j + 1)}, p)[batch.interval]
        for name in FLOAT_FEATURES:
            x, y = getattr(live, name), float(values[name][k])
            scale = live.close * 1e-3 if name in PRICE_DIFFS else 1e-3 if name in ATR_UNITS else 0.0
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-9 * max(abs(x), abs(y), scale), \
                f"candle {j} (window from {s}) {name}: live {x!r} vectorised {y!r}"
    return values


def test_geometric_response_closed_form():
    for g, b in ((11 / 13, 0.8), (25 / 27, 0.8), (0.8, 0.8)):
        for n in (0, 1, 7, 299):
            ref = math.fsum(b ** (n - m) * g ** m for m in range(1, n + 1))
            assert float(_geo(g, b, np.array([n]))[0]) == pytest.approx(ref, rel=1e-13, abs=1e-300)


def test_every_row_of_real_1h_candles():
    batch = sample_klines("BTCUSDT", "1h").slice(0, 700)  # short windows first, then full 300-candle windows
    assert_run_equals_live(batch, 300)


def test_other_parameters_and_a_short_history():
    p = FeatureParams(ema_fast=5, ema_slow=30, rsi=7, macd_fast=5, macd_slow=13, macd_signal=4, slope_lookback=2,
                      window=20, min_candles=30)
    batch = sample_klines("ETHUSDT", "15m").slice(2000, 2600)
    assert_run_equals_live(batch, 70, p)


def test_macd_signal_equal_to_a_macd_ema():
    """``_geo`` degenerates when the signal EMA has the same factor as a MACD EMA."""
    p = FeatureParams(macd_fast=9, macd_slow=26, macd_signal=9)
    assert_run_equals_live(sample_klines("SOLUSDT", "4h").slice(0, 420), 120, p)


def test_a_window_with_no_down_move_has_rsi_exactly_100():
    batch = make_batch(close=100.0 + np.arange(150) * 0.5)
    values = assert_run_equals_live(batch, 100)
    assert (values["rsi"] == 100.0).all()


def test_flat_and_inside_candles_are_computed_as_live():
    """A flat stretch (no directional move: DX 0/0 in the live code) and a constant volume (z-score 0)."""
    base = sample_klines("BTCUSDT", "5m").slice(0, 400)
    o, h, lo, c = (np.array(x, dtype=np.float64) for x in (base.open, base.high, base.low, base.close))
    v = np.full(len(base), 10.0)
    flat = slice(200, 240)
    o[flat] = h[flat] = lo[flat] = c[flat] = c[199]
    batch = KlineBatch("TESTUSDT", "5m", base.open_time, o, h, lo, c, v)
    values = assert_run_equals_live(batch, 120)
    assert (values["volume_z"] == 0.0).all()


def test_runs_shorter_than_the_features_need_have_no_rows():
    p = FeatureParams()
    run = Run.of(make_batch(n=p.required_candles - 1), 300, p.required_candles)
    assert len(run.rows) == 0 and all(len(v) == 0 for v in run_features(run, p).values())
    assert len(Run.of(make_batch(n=200), 50, p.required_candles).rows) == 0  # history below what features need


# ---- the vectorised voter and consensus --------------------------------------------------------------------

class RowColumns:
    """``FeatureColumns`` over a list of ``Features`` (one per row)."""

    def __init__(self, rows: list[Features]) -> None:
        self.rows = rows
        self.timeframes = rows[0].timeframes

    def column(self, timeframe: str, name: str) -> np.ndarray:
        return np.array([float(getattr(f[timeframe], name)) for f in self.rows])


def edge_rows() -> list[Features]:
    """Hand-set features through every branch of the rule, including values exactly on its thresholds."""
    rows = [feats(1), feats(-1)]
    for d in (1, -1):
        for tf in ("1h", "4h"):
            rows += [feats(d, **{f"tf_{tf}": {"adx": 20.0}}), feats(d, **{f"tf_{tf}": {"adx": 19.99}}),
                     feats(d, **{f"tf_{tf}": {"ema_fast_slope": 0.0}}),
                     feats(d, **{f"tf_{tf}": {"close": 100.0 - 0.5 * d}}),
                     feats(d, **{f"tf_{tf}": {"trend": 9.0 * d}})]
        rows += [feats(d, tf_15m={"rsi": 50.0}), feats(d, tf_15m={"rsi": 70.0}), feats(d, tf_15m={"rsi": 30.0}),
                 feats(d, tf_15m={"rsi": 50.0 + 19.9 * d}), feats(d, tf_15m={"macd_hist": 0.0}),
                 feats(d, tf_15m={"macd_hist": -0.2 * d}), feats(d, tf_5m={"extension": 1.5 * d}),
                 feats(d, tf_5m={"extension": 1.5001 * d}), feats(d, tf_5m={"atr": 0.0}),
                 feats(d, tf_5m={"adx": float("nan")}), feats(d, tf_4h={"rsi": float("nan")}),
                 feats(d, tf_1h={"adx": 45.0}, tf_4h={"adx": 41.0})]
    return rows


@pytest.mark.parametrize("tfs", [FEATURE_TFS, ("5m", "1h", "4h"), ("15m", "4h"), ("1h",)])
def test_vote_arrays_equal_vote_on_every_row(tfs):
    voter = TrendMomentumVoter(TrendMomentumParams(base_confidence=0.4))
    rows = [Features(f.symbol, {tf: f.frames[tf] for tf in tfs}, tfs) for f in edge_rows()]
    direction, confidence = voter.vote_arrays(RowColumns(rows))
    assert direction.dtype == np.int8
    seen = set()
    for k, f in enumerate(rows):
        vote = voter.vote("TESTUSDT", f)
        assert (int(vote.direction), vote.confidence) == (direction[k], confidence[k]), (k, vote.reason)
        seen.add(vote.direction)
    if len(tfs) == 4:
        assert seen == {Direction.LONG, Direction.SHORT, Direction.FLAT}


def test_combine_arrays_equals_combine():
    rng = np.random.default_rng(4)
    names = ("a", "b", "c")
    consensus = Consensus([TrendMomentumVoter(name=n) for n in names], weights={"a": 1.0, "b": 0.5, "c": 1.5},
                          threshold=0.45)
    n = 400
    dirs = [rng.integers(-1, 2, n).astype(np.int8) for _ in names]
    confs = [np.where(d != 0, rng.choice([0.3, 0.5, 0.8, 1.0], n), 0.0) for d in dirs]
    direction, score = consensus.combine_arrays(list(zip(names, dirs, confs, strict=True)), n)
    for k in range(n):
        votes = [Vote(name, Direction(int(d[k])), float(c[k])) for name, d, c in zip(names, dirs, confs, strict=True)]
        want_dir, want_score = consensus.combine(votes)
        assert (int(want_dir), want_score) == (direction[k], score[k])
    assert {int(x) for x in direction} == {-1, 0, 1}
    zero = Consensus([TrendMomentumVoter()], weights={"trend_momentum": 0.0})
    d0, s0 = zero.combine_arrays([("trend_momentum", dirs[0], confs[0])], n)
    assert not d0.any() and not s0.any() and len(d0) == n
    empty_d, empty_s = Consensus([]).combine_arrays([], 3)
    assert empty_d.tolist() == [0, 0, 0] and empty_s.tolist() == [0.0, 0.0, 0.0]
