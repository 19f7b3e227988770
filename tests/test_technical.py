"""strategies.technical: the multi-timeframe trend/momentum voter, on hand-set features and real candles."""

from __future__ import annotations

import collections

import pytest

from strategies.features import compute_features
from strategies.technical import TrendMomentumParams, TrendMomentumVoter, assign_roles
from strategies.types import Direction
from strategies.voters import Voter
from tests.helpers_market import T0, feats, sample_klines, window

TFS = ("5m", "15m", "1h", "4h")

voter = TrendMomentumVoter()


def test_is_a_voter():
    assert isinstance(voter, Voter)
    assert voter.name == "trend_momentum"


@pytest.mark.parametrize("direction,expected", [(1, Direction.LONG), (-1, Direction.SHORT)])
def test_aligned_trend_with_momentum_votes_that_way(direction: int, expected: Direction):
    v = voter.vote("TESTUSDT", feats(direction))
    assert v.direction is expected
    assert v.voter == "trend_momentum"
    assert 0.5 <= v.confidence <= 1.0
    assert v.reason


def test_trend_timeframes_disagreeing_is_flat():
    f = feats(1, tf_4h={"ema_fast": 99.0, "ema_slow": 100.0})
    assert voter.vote("X", f).direction is Direction.FLAT


def test_falling_fast_ema_is_not_an_uptrend():
    assert voter.vote("X", feats(1, tf_1h={"ema_fast_slope": -0.1})).direction is Direction.FLAT


def test_weak_trend_is_flat():
    f = feats(1, tf_1h={"adx": 15.0}, tf_4h={"adx": 18.0})
    v = voter.vote("X", f)
    assert v.direction is Direction.FLAT and "ADX" in v.reason


@pytest.mark.parametrize("value", [49.0, 71.0])
def test_momentum_rsi_outside_band_is_flat(value: float):
    assert voter.vote("X", feats(1, tf_15m={"rsi": value})).direction is Direction.FLAT


def test_momentum_macd_against_trend_is_flat():
    assert voter.vote("X", feats(-1, tf_15m={"macd_hist": 0.05})).direction is Direction.FLAT


def test_overextended_entry_is_flat():
    assert voter.vote("X", feats(1, tf_5m={"extension": 2.0})).direction is Direction.FLAT
    assert voter.vote("X", feats(1, tf_5m={"extension": -2.0})).direction is Direction.FLAT
    assert voter.vote("X", feats(1, tf_5m={"extension": 1.4})).direction is Direction.LONG


def test_undefined_indicators_are_flat():
    assert voter.vote("X", feats(1, tf_4h={"adx": float("nan")})).direction is Direction.FLAT


def test_confidence_grows_with_trend_strength():
    weak = voter.vote("X", feats(1, tf_1h={"adx": 22.0, "trend": 0.3}, tf_4h={"adx": 22.0, "trend": 0.3}))
    strong = voter.vote("X", feats(1, tf_1h={"adx": 45.0, "trend": 3.5}, tf_4h={"adx": 45.0, "trend": 3.5}))
    assert weak.direction is strong.direction is Direction.LONG
    assert weak.confidence < strong.confidence
    best = voter.vote("X", feats(1, tf_1h={"adx": 45.0, "trend": 3.5}, tf_4h={"adx": 45.0, "trend": 3.5},
                                 tf_15m={"rsi": 60.0}))
    assert best.confidence == pytest.approx(1.0)


def test_roles_follow_the_timeframes_present():
    r4 = assign_roles(("5m", "15m", "1h", "4h"))
    assert (r4.entry, r4.momentum, r4.trend) == ("5m", "15m", ("1h", "4h"))
    r3 = assign_roles(("15m", "1h", "4h"))
    assert (r3.entry, r3.momentum, r3.trend) == ("15m", "1h", ("4h",))
    r2 = assign_roles(("5m", "1h"))
    assert (r2.entry, r2.momentum, r2.trend) == ("5m", "5m", ("1h",))
    r1 = assign_roles(("1h",))
    assert (r1.entry, r1.momentum, r1.trend) == ("1h", "1h", ("1h",))


@pytest.mark.parametrize("tfs", [("5m", "1h"), ("15m", "1h", "4h"), ("1h",)])
def test_votes_with_fewer_timeframes(tfs: tuple[str, ...]):
    assert voter.vote("X", feats(1, tfs)).direction is Direction.LONG
    assert voter.vote("X", feats(-1, tfs)).direction is Direction.SHORT


def test_params_are_used_and_checked():
    strict = TrendMomentumVoter(TrendMomentumParams(min_adx=35.0, adx_full=50.0), name="strict")
    assert strict.name == "strict"
    assert strict.vote("X", feats(1)).direction is Direction.FLAT
    with pytest.raises(ValueError):
        TrendMomentumParams(rsi_long=(70.0, 50.0))
    with pytest.raises(ValueError):
        TrendMomentumParams(min_adx=30.0, adx_full=20.0)


@pytest.mark.slow
def test_on_real_candles_it_votes_both_ways_and_mostly_flat():
    """Hourly over ~2 months of the bundled real data: some LONG, some SHORT, FLAT most of the time."""
    counts: collections.Counter[Direction] = collections.Counter()
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        series = {tf: sample_klines(symbol, tf) for tf in TFS}
        end = T0 + 51 * 86_400_000
        while end < T0 + 110 * 86_400_000:
            f = compute_features({tf: window(b, end, 300) for tf, b in series.items()})
            vote = voter.vote(symbol, f)
            counts[vote.direction] += 1
            if vote.direction is not Direction.FLAT:
                assert 0.5 <= vote.confidence <= 1.0
            end += 3 * 3_600_000
    total = sum(counts.values())
    assert counts[Direction.LONG] >= 10 and counts[Direction.SHORT] >= 10
    assert counts[Direction.FLAT] / total > 0.7
