"""Rounding to tickSize/stepSize, minNotional, and risk-based sizing with hand-computed numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.exchange.errors import FilterViolation, MinNotionalError
from engine.exchange.rules import (
    check_order,
    check_price,
    min_quantity_for_notional,
    parse_symbol_rules,
    round_price,
    round_quantity,
)
from engine.exchange.types import PositionSide
from engine.policy.risk import RiskConfig, plan_entry, stop_distance

SAMPLE = Path(__file__).parent.parent / "data" / "sample" / "exchange_info.json"


def rules_for(symbol: str):
    entries = {e["symbol"]: e for e in json.loads(SAMPLE.read_text())["symbols"]}
    return parse_symbol_rules(entries[symbol])


def test_parses_real_btc_filters():
    r = rules_for("BTCUSDT")
    assert r.tick_size == Decimal("0.10")
    assert r.step_size == Decimal("0.001")
    assert r.market_max_qty == Decimal("120")
    assert r.min_notional == Decimal("5")
    assert r.is_tradable


def test_price_rounding_to_tick():
    r = rules_for("BTCUSDT")
    assert round_price(r, Decimal("65432.17")) == Decimal("65432.10")
    from decimal import ROUND_CEILING

    assert round_price(r, Decimal("65432.11"), rounding=ROUND_CEILING) == Decimal("65432.20")
    check_price(r, Decimal("65432.10"))
    with pytest.raises(FilterViolation):
        check_price(r, Decimal("65432.15"))


def test_quantity_is_floored_never_rounded_up():
    r = rules_for("BTCUSDT")
    assert round_quantity(r, Decimal("0.0129999")) == Decimal("0.012")
    assert round_quantity(r, Decimal("0.0009")) == Decimal("0.000")
    sol = rules_for("SOLUSDT")
    assert round_quantity(sol, Decimal("3.99")) == Decimal("3")


def test_min_notional_and_quantity_filters():
    r = rules_for("BTCUSDT")
    # 0.001 BTC at 4000 = 4 USDT < 5 USDT
    with pytest.raises(MinNotionalError):
        check_order(r, Decimal("0.001"), Decimal("4000"))
    check_order(r, Decimal("0.001"), Decimal("4000"), reduce_only=True)  # reduce-only is exempt
    check_order(r, Decimal("0.002"), Decimal("4000"))
    with pytest.raises(FilterViolation):
        check_order(r, Decimal("0.0015"), Decimal("60000"))
    with pytest.raises(FilterViolation):
        check_order(r, Decimal("121"), Decimal("60000"))  # MARKET_LOT_SIZE maxQty 120
    assert min_quantity_for_notional(r, Decimal("4000")) == Decimal("0.002")  # 5/4000 = 0.00125 → 0.002


CFG = RiskConfig(risk_per_trade_pct=Decimal("1"), leverage=3, max_position_notional_pct=Decimal("100"),
                 stop_atr_mult=Decimal("2"), take_profit_atr_mult=Decimal("3"), min_stop_pct=Decimal("0.5"),
                 max_stop_pct=Decimal("5"), min_reward_risk=Decimal("1.5"), taker_fee=Decimal("0"))


def test_stop_distance_is_clamped():
    price = Decimal("100")
    assert stop_distance(price, Decimal("1"), CFG) == Decimal("2")        # 2 x ATR
    assert stop_distance(price, Decimal("0.1"), CFG) == Decimal("0.5")    # min 0.5 %
    assert stop_distance(price, Decimal("10"), CFG) == Decimal("5")       # max 5 %


def test_sizing_by_risk_hand_computed():
    r = rules_for("ETHUSDT")
    # equity 1000, risk 1 % = 10 USDT; ATR 20 → stop distance 40; qty = 10/40 = 0.25 ETH; notional 500
    plan = plan_entry(rules=r, side=PositionSide.LONG, price=Decimal("2000"), atr=Decimal("20"),
                      equity=Decimal("1000"), available=Decimal("1000"), cfg=CFG)
    assert plan.ok
    assert plan.quantity == Decimal("0.250")
    assert plan.stop_price == Decimal("1960.00")
    assert plan.take_profit_price == Decimal("2060.00")   # max(3 x 20, 1.5 x 40) = 60


def test_sizing_capped_by_notional_then_margin():
    r = rules_for("ETHUSDT")
    # risk sizing wants 10/10 = 1 ETH (2000 USDT) but the notional cap is 100 % of equity → 0.5 ETH
    plan = plan_entry(rules=r, side=PositionSide.SHORT, price=Decimal("2000"), atr=Decimal("5"),
                      equity=Decimal("1000"), available=Decimal("1000"), cfg=CFG)
    assert plan.quantity == Decimal("0.500")
    assert plan.stop_price == Decimal("2010.00") and plan.take_profit_price == Decimal("1985.00")
    # only 100 USDT free at 3x → 300 x 0.95 = 285 USDT notional → 0.142 ETH
    plan = plan_entry(rules=r, side=PositionSide.SHORT, price=Decimal("2000"), atr=Decimal("5"),
                      equity=Decimal("1000"), available=Decimal("100"), cfg=CFG)
    assert plan.quantity == Decimal("0.142")


def test_below_min_notional_is_refused_with_reason():
    r = rules_for("BTCUSDT")
    plan = plan_entry(rules=r, side=PositionSide.LONG, price=Decimal("60000"), atr=Decimal("3000"),
                      equity=Decimal("20"), available=Decimal("20"), cfg=CFG)
    assert not plan.ok
    assert "minimum" in plan.reason
