"""Adaptive k / m from excursions (hand-computed on a small grid), sample rules, regimes, bounds and the
hour-of-day multiplier."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from engine.exchange.types import PositionSide
from engine.policy.adaptive import (
    AdaptiveConfig,
    TradeOutcome,
    adaptive_levels,
    best_multiples,
    expectancy_r,
    hour_multiplier,
    regime_of,
    simulate,
)

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
# grid k ∈ {1, 2}, m ∈ {2, 3, 4}; no reward/risk filter; 4 trades suffice; no shrinking
SMALL = AdaptiveConfig(min_samples=4, k_min=D(1), k_max=D(2), m_min=D(2), m_max=D(4), grid_step=D(1),
                       min_reward_risk=D(1), shrink_trades=0)


def outcome(mae: float, mfe: float, exit_atr: float, *, regime: str = "trend", symbol: str = "ETHUSDT",
            hour: int = 10, r: float | None = None) -> TradeOutcome:
    return TradeOutcome(symbol, exit_atr / 2 if r is None else r, mae, mfe, exit_atr,
                        T0.replace(hour=hour), regime)


# (MAE, MFE, final move) in ATR
A, B, C, DD = outcome(0.5, 3.5, 3.0), outcome(1.5, 0.5, -1.5), outcome(1.2, 4.5, 4.0), outcome(2.5, 0.3, -2.0)
TREND = [A, B, C, DD]


def test_simulation_rules():
    assert simulate(A, 2, 4) == 3.0     # neither level: the real final move
    assert simulate(B, 1, 2) == -1      # MAE 1.5 ≥ 1: stopped
    assert simulate(C, 2, 4) == 4       # MFE 4.5 ≥ 4: target
    assert simulate(outcome(2.0, 5.0, 5.0), 2, 4) == -2  # both reached: stop assumed first


def test_best_multiples_hand_computed():
    # k=1: A +m (m ≤ 3) or 3.0; B, C, D stopped at −1 → m=2: (2−3)/4 = −0.25 R; m=3: 0; m=4: 0
    # k=2: B → −1.5, D → −2, A → min(m, 3), C → m
    #   m=2: (2 − 1.5 + 2 − 2)/4/2 = 0.0625; m=3: (3 − 1.5 + 3 − 2)/8 = 0.3125; m=4: (3 − 1.5 + 4 − 2)/8 = 0.4375
    assert expectancy_r(TREND, 1, 2) == pytest.approx(-0.25)
    assert expectancy_r(TREND, 2, 3) == pytest.approx(0.3125)
    k, m, e = best_multiples(TREND, SMALL, D(2), D(3))
    assert (k, m) == (D(2), D(4)) and e == pytest.approx(0.4375)


def test_levels_adapt_with_shrinkage_toward_base():
    lv = adaptive_levels(TREND, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    assert (lv.stop_mult, lv.tp_mult, lv.source, lv.samples) == (D("2.00"), D("4.00"), "regime", 4)
    assert lv.win_rate == 0.5
    # shrink over 4 trades: weight 4 / (4 + 4) = 0.5 → m = 3 + (4 − 3) x 0.5 = 3.5; base k 1 → 1 + (2 − 1) x 0.5
    lv = adaptive_levels(TREND, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(1), base_m=D(3),
                         cfg=replace(SMALL, shrink_trades=4))
    assert (lv.stop_mult, lv.tp_mult) == (D("1.50"), D("3.50"))


def test_no_adaptation_below_the_minimum_sample():
    lv = adaptive_levels(TREND[:3], symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    assert (lv.stop_mult, lv.tp_mult, lv.source, lv.samples) == (D(2), D(3), "base", 0)
    other = [replace(o, symbol="BTCUSDT") for o in TREND]
    lv = adaptive_levels(other, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    assert lv.source == "base"
    off = adaptive_levels(TREND, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3),
                          cfg=replace(SMALL, enabled=False))
    assert (off.stop_mult, off.tp_mult, off.source) == (D(2), D(3), "base")


def test_per_regime_then_symbol_wide():
    # range trades go 2.2 ATR in favour, then back to −0.5: k=1, m=2 gives +2 every time (2 R) — the best
    ranging = [outcome(0.5, 2.2, -0.5, regime="range") for _ in range(4)]
    history = TREND + ranging
    trend = adaptive_levels(history, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    rng = adaptive_levels(history, symbol="ETHUSDT", regime="range", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    assert (trend.stop_mult, trend.tp_mult, trend.source) == (D(2), D(4), "regime")
    assert (rng.stop_mult, rng.tp_mult, rng.source) == (D(1), D(2), "regime")
    # an unseen regime falls back to all 8 of the symbol's trades
    vol = adaptive_levels(history, symbol="ETHUSDT", regime="high_vol", hour=10, base_k=D(2), base_m=D(3), cfg=SMALL)
    assert vol.source == "symbol" and vol.samples == 8


def test_bounds_and_reward_risk_are_kept():
    # the best on the grid is (1, 2); with minimum reward/risk 2.5 m must be ≥ 2.5 x k
    ranging = [outcome(0.5, 2.2, -0.5, regime="range") for _ in range(4)]
    cfg = replace(SMALL, min_reward_risk=D("2.5"), m_max=D(6))
    lv = adaptive_levels(ranging, symbol="ETHUSDT", regime="range", hour=10, base_k=D(2), base_m=D(5), cfg=cfg)
    assert lv.tp_mult >= lv.stop_mult * D("2.5")
    assert D(1) <= lv.stop_mult <= D(2) and D(2) <= lv.tp_mult <= D(6)
    # a base outside the bounds is pulled inside
    lv = adaptive_levels(TREND, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(9), base_m=D(3),
                         cfg=replace(SMALL, shrink_trades=1000))
    assert lv.stop_mult == D(2)


def test_hour_multiplier_hand_computed():
    cfg = AdaptiveConfig(hour_min_samples=3)
    good = [outcome(0, 0, 0, hour=9, r=1.0) for _ in range(3)]
    bad = [outcome(0, 0, 0, hour=14, r=-1.0) for _ in range(3)]
    history = good + bad
    # overall mean 0; hour 9 mean +1 → 1 + 0.5 x 1 = 1.5 → capped at 1.25; hour 14 → 1 − 0.5 = 0.5
    assert hour_multiplier(history, symbol="ETHUSDT", hour=9, cfg=cfg) == D("1.25")
    assert hour_multiplier(history, symbol="ETHUSDT", hour=14, cfg=cfg) == D("0.50")
    assert hour_multiplier(history, symbol="ETHUSDT", hour=3, cfg=cfg) == D(1)       # no trades at 03:00
    mixed = [*history, outcome(0, 0, 0, hour=14, r=1.0)]  # mean(all) = 1/7; hour 14: (−3 + 1)/4 = −0.5
    assert hour_multiplier(mixed, symbol=None, hour=14, cfg=cfg) == (D(1) + D("0.5") * D(repr(-0.5 - 1 / 7))
                                                                      ).quantize(D("0.01"))
    lv = adaptive_levels(history, symbol="ETHUSDT", regime="trend", hour=14, base_k=D(2), base_m=D(3), cfg=cfg)
    assert lv.size_mult == D("0.50")


def test_outcome_from_prices():
    # long 100 → 106, stop 96 (risk 4), ATR 2, best 108, worst 98
    o = TradeOutcome.from_prices(symbol="ETHUSDT", side=PositionSide.LONG, entry=D(100), exit_price=D(106),
                                 initial_stop=D(96), atr=D(2), best=D(108), worst=D(98), opened_at=T0)
    assert (o.r_multiple, o.mae_atr, o.mfe_atr, o.exit_atr) == (1.5, 1.0, 4.0, 3.0)
    # short 100 → 103 (a loss), net −6.5 on 2 units of risk 4 → −0.8125 R
    s = TradeOutcome.from_prices(symbol="ETHUSDT", side=PositionSide.SHORT, entry=D(100), exit_price=D(103),
                                 initial_stop=D(104), atr=D(2), best=D(99), worst=D("103.5"), opened_at=T0,
                                 net_pnl=D("-6.5"), quantity=D(2))
    assert (s.r_multiple, s.mae_atr, s.mfe_atr, s.exit_atr) == (-0.8125, 1.75, 0.5, -1.5)
    assert not s.won
    assert TradeOutcome.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_regime_labels():
    assert regime_of(30.0, 1.0) == "trend"
    assert regime_of(15.0, None) == "range"
    assert regime_of(40.0, 2.0) == "high_vol"


def test_levels_are_deterministic():
    a = adaptive_levels(TREND * 5, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3),
                        cfg=AdaptiveConfig(min_samples=4))
    b = adaptive_levels(TREND * 5, symbol="ETHUSDT", regime="trend", hour=10, base_k=D(2), base_m=D(3),
                        cfg=AdaptiveConfig(min_samples=4))
    assert a == b and a.source == "regime"
