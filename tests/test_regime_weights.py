"""Regimes from ADX, ATR and Bollinger percentiles (vectorised and scalar agree, causal on real data), and voter
weights learned from calibrated accuracy per regime."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.feature_frame import symbol_features
from strategies.regime import REGIMES, Regime, RegimeParams, classify, percentile_rank, regime_of, regime_series
from strategies.weights import ResolvedVote, WeightParams, brier, learn_weights, weights_for
from tests.helpers_market import sample_frame


def test_classification_rules():
    adx = np.array([30, 30, 15, 30, 15, np.nan])
    di = np.array([5, -5, 3, 5, 3, 1])
    atr = np.array([50, 50, 50, 95, 95, 50])
    bb = np.array([50, 50, 50, 85, 50, 50])
    codes = classify(adx, di, atr, bb)
    assert [REGIMES[c] if c >= 0 else None for c in codes] == [
        Regime.TRENDING_UP, Regime.TRENDING_DOWN, Regime.RANGING, Regime.VOLATILE, Regime.RANGING, None]
    assert regime_of(30, -5, 50, 50) is Regime.TRENDING_DOWN and regime_of(np.nan, 1, 1, 1) is None


def test_percentiles_are_causal():
    rng = np.random.default_rng(3)
    x = rng.normal(size=2_000)
    full = percentile_rank(x, 300)
    part = percentile_rank(x[:1_200], 300)
    np.testing.assert_array_equal(full[:1_200], part)
    assert np.isnan(full[:59]).all() and np.nanmax(full) <= 100


def test_real_data_sees_every_regime():
    f = symbol_features(sample_frame("BTCUSDT").iloc[:20_000].reset_index(drop=True))
    codes = regime_series(f["1h_adx"].to_numpy(), f["1h_di_diff"].to_numpy(), f["1h_atr_pct"].to_numpy(),
                          f["1h_bb_width"].to_numpy(), RegimeParams(lookback=2_000))
    seen = {REGIMES[c] for c in codes if c >= 0}
    assert seen == set(REGIMES)


def votes(voter: str, regime: str, probability: float, outcomes: list[bool]) -> list[ResolvedVote]:
    return [ResolvedVote(voter, regime, probability, o) for o in outcomes]


def test_weights_follow_calibrated_skill_per_regime():
    outcomes = [True] * 40 + [False] * 60                   # base rate 0.4
    sharp = [ResolvedVote("sharp", "ranging", 0.8 if o else 0.1, o) for o in outcomes]
    flat = votes("flat", "ranging", 0.4, outcomes)          # forecasts the base rate: no skill
    wrong = [ResolvedVote("wrong", "ranging", 0.1 if o else 0.8, o) for o in outcomes]
    skills = learn_weights([*sharp, *flat, *wrong])
    w = weights_for("ranging", skills, ["sharp", "flat", "wrong", "new"])
    assert w["sharp"] == pytest.approx(1 - brier([v.probability for v in sharp], outcomes) / 0.24)
    assert 0.8 < w["sharp"] < 1 and w["flat"] == pytest.approx(0.0, abs=1e-12) and w["wrong"] == 0.0
    assert w["new"] == 1.0                                  # nothing learned: the prior
    assert weights_for("volatile", skills, ["sharp"])["sharp"] == 1.0   # other regime: the prior
    assert weights_for(None, skills, ["sharp"])["sharp"] == 1.0


def test_few_votes_keep_the_prior_and_the_window_forgets():
    few = votes("v", "ranging", 0.9, [False] * 10)
    assert learn_weights(few)[("v", "ranging")].weight == 1.0
    old_bad = [ResolvedVote("v", "ranging", 0.9, i % 2 == 0) for i in range(200)]
    new_good = [ResolvedVote("v", "ranging", 0.9 if i % 2 == 0 else 0.1, i % 2 == 0) for i in range(100)]
    p = WeightParams(window=100)
    assert learn_weights([*old_bad, *new_good], p)[("v", "ranging")].weight == pytest.approx(1 - 0.01 / 0.25)
