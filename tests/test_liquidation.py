"""Liquidation price and maintenance margin against hand-computed numbers."""

from __future__ import annotations

from decimal import Decimal as D

from engine.exchange.liquidation import (
    DEFAULT_BRACKETS,
    bracket_for,
    cross_wallet_balance,
    liquidation_price,
    maintenance_margin,
    max_leverage,
)
from engine.exchange.types import LeverageBracket, PositionSide

FLAT = (LeverageBracket(1, 100, D(0), D("1000000"), D("0.005"), D(0)),)
# BTCUSDT's real first three brackets (data/sample/leverage_brackets.json)
BTC = (
    LeverageBracket(1, 125, D(0), D("50000"), D("0.004"), D(0)),
    LeverageBracket(2, 100, D("50000"), D("250000"), D("0.005"), D("50")),
    LeverageBracket(3, 50, D("250000"), D("3000000"), D("0.01"), D("1300")),
)


def test_long_isolated_reference_example():
    # (1·100 − 10 − 0) / (1·(1 − 0.005)) = 90 / 0.995
    lp = liquidation_price(PositionSide.LONG, D(1), D(100), D(10), FLAT)
    assert lp == D(90) / D("0.995")
    assert str(lp).startswith("90.45226130653266")
    # at LP the position's equity equals its maintenance margin
    equity = D(10) + (lp - D(100))
    assert abs(equity - maintenance_margin(lp, FLAT)) < D("1e-20")


def test_short_isolated():
    # (2·100 + 20 + 0) / (2·(1 + 0.01)) = 220 / 2.02
    lp = liquidation_price(PositionSide.SHORT, D(2), D(100), D(20), DEFAULT_BRACKETS)
    assert lp == D(220) / D("2.02")
    assert str(lp).startswith("108.9108910891")


def test_btc_bracket_two_uses_its_cum():
    # notional 60000 → bracket 2 (MMR 0.5 %, cum 50); LP = (60000 − 6000 − 50) / 0.995 = 54221.1055...
    lp = liquidation_price(PositionSide.LONG, D(1), D(60000), D(6000), BTC)
    assert lp == D(53950) / D("0.995")
    assert bracket_for(lp, BTC).bracket == 2


def test_bracket_at_liquidation_price_is_used():
    # entry notional 55000 is bracket 2: (55000 − 10000 − 50)/0.995 = 45175.9 → that notional is bracket 1,
    # so recompute with bracket 1: (55000 − 10000 − 0)/0.996 = 45180.72...
    lp = liquidation_price(PositionSide.LONG, D(1), D(55000), D(10000), BTC)
    assert lp == D(45000) / D("0.996")
    assert bracket_for(lp, BTC).bracket == 1


def test_long_that_cannot_be_liquidated_returns_zero():
    # 1x long with margin equal to the notional: LP would be ≤ 0
    assert liquidation_price(PositionSide.LONG, D(1), D(100), D(100), FLAT) == 0
    assert liquidation_price(PositionSide.LONG, D(0), D(100), D(10), FLAT) == 0


def test_cross_wallet_balance_and_price():
    # other cross position: BTC notional 10000 → MM = 10000·0.004 − 0 = 40, uPnL −100
    wb = cross_wallet_balance(D(1000), [(D(10000), D(-100))], [BTC])
    assert wb == D(860)
    # ETH long Q=1 EP=3000 on the default ladder (bracket 1, MMR 1 %): (3000 − 860) / 0.99
    lp = liquidation_price(PositionSide.LONG, D(1), D(3000), wb, DEFAULT_BRACKETS)
    assert lp == D(2140) / D("0.99")


def test_maintenance_margin_and_max_leverage():
    assert maintenance_margin(D(60000), BTC) == D(60000) * D("0.005") - 50  # 250
    assert maintenance_margin(D(-60000), BTC) == D(250)
    assert maintenance_margin(D(1000), BTC) == D(4)
    assert max_leverage(D(1000), BTC) == 125
    assert max_leverage(D(300000), BTC) == 50
    assert bracket_for(D(10**12), BTC).bracket == 3  # above every cap: the last bracket
