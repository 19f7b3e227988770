"""Sizing caps (each binding in turn), volatility scaling, Kelly, the liquidation guard against
engine/liquidation.py, and the open-position limits — hand-computed numbers, plus hypothesis properties
on the real symbol filters of data/sample/exchange_info.json."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.exchange.liquidation import DEFAULT_BRACKETS, cross_wallet_balance, liquidation_price
from engine.exchange.rules import check_order, check_price, parse_brackets, parse_symbol_rules
from engine.exchange.types import MarginType, PositionSide, SymbolRules
from engine.policy.risk import (
    LimitsConfig,
    OpenPosition,
    RiskConfig,
    bracket_notional_cap,
    correlation,
    correlation_block,
    entry_limits_block,
    free_slots,
    funding_block,
    kelly_fraction,
    kelly_risk_pct,
    liquidation_check,
    log_returns,
    plan_entry,
    volatility_ratio,
    volatility_scale,
)

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def _rules() -> dict[str, SymbolRules]:
    entries = {e["symbol"]: e for e in json.loads((SAMPLE / "exchange_info.json").read_text())["symbols"]}
    raw = json.loads((SAMPLE / "leverage_brackets.json").read_text())
    per_symbol = {s["symbol"]: parse_brackets(s["brackets"]) for s in raw["symbols"]}
    default = parse_brackets(raw["default"])
    return {s: parse_symbol_rules(e, per_symbol.get(s, default)) for s, e in entries.items()}


RULES = _rules()
ETH, BTC, SOL = RULES["ETHUSDT"], RULES["BTCUSDT"], RULES["SOLUSDT"]

CFG = RiskConfig(risk_per_trade_pct=D("1"), leverage=3, max_position_notional_pct=D("100"),
                 stop_atr_mult=D("2"), take_profit_atr_mult=D("3"), min_stop_pct=D("0.5"), max_stop_pct=D("5"),
                 min_reward_risk=D("1.5"), taker_fee=D("0"))


def eth_plan(cfg: RiskConfig = CFG, **kw: object):
    args: dict[str, object] = dict(rules=ETH, side=LONG, price=D("2000"), atr=D("20"), equity=D("1000"),
                                   available=D("1000"), cfg=cfg)
    args.update(kw)
    return plan_entry(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- each cap binding
def test_risk_binds():
    # risk 1 % of 1000 = 10; stop 2 x 20 = 40 → 0.25 ETH (500 USDT, under every cap)
    plan = eth_plan()
    assert (plan.quantity, plan.binding, plan.leverage) == (D("0.250"), "risk", 3)
    assert plan.stop_price == D("1960.00") and plan.take_profit_price == D("2060.00")
    assert plan.stop_distance == D("40") and plan.take_profit_distance == D("60")
    assert plan.risk_amount == D("10")


def test_taker_fee_is_part_of_the_risk_per_unit():
    # per unit = 40 + (2000 + 1960) x 0.0005 = 41.98 → 10 / 41.98 = 0.2382... → 0.238
    plan = eth_plan(replace(CFG, taker_fee=D("0.0005")))
    assert plan.quantity == D("0.238")


def test_position_notional_cap_binds_pct_then_usdt():
    # stop 2 x 5 = 10 → risk wants 1 ETH = 2000 USDT; 100 % of equity = 1000 USDT → 0.5 ETH
    plan = eth_plan(atr=D("5"))
    assert (plan.quantity, plan.binding) == (D("0.500"), "position notional cap")
    # an absolute cap of 300 USDT is tighter → 0.15 ETH
    plan = eth_plan(replace(CFG, max_position_notional_usdt=D("300")), atr=D("5"))
    assert (plan.quantity, plan.binding) == (D("0.150"), "position notional cap")


def test_total_exposure_cap_binds_and_refuses_when_full():
    opened = [OpenPosition("BTCUSDT", LONG, D("1500")), OpenPosition("SOLUSDT", SHORT, D("1200"))]
    # 300 % of 1000 = 3000; 2700 already open → room 300 USDT → 0.15 ETH (risk wanted 0.25)
    plan = eth_plan(open_positions=opened)
    assert (plan.quantity, plan.binding) == (D("0.150"), "total exposure cap")
    full = [*opened, OpenPosition("XRPUSDT", LONG, D("300"))]
    plan = eth_plan(open_positions=full)
    assert not plan.ok and "exposure" in plan.reason


def test_available_margin_binds():
    # only 100 USDT free at 3x: 100 x 3 x 0.95 = 285 USDT → 0.1425 → 0.142 ETH
    plan = eth_plan(available=D("100"))
    assert (plan.quantity, plan.binding) == (D("0.142"), "available margin")


def test_bracket_max_notional_binds():
    # BTC's real brackets: at 100x only brackets 1-2 (cap 250 000) apply. Risk wants 10 000 / 600 = 16.67 BTC
    # (1 000 000 USDT); margin would allow 95 M; the bracket caps it at 250 000 / 60 000 = 4.1666 → 4.166 BTC
    cfg = replace(CFG, leverage=100, liq_min_stop_multiple=D("0"))
    assert bracket_notional_cap(BTC.brackets, 100) == D("250000")
    plan = plan_entry(rules=BTC, side=LONG, price=D("60000"), atr=D("300"), equity=D("1000000"),
                      available=D("1000000"), cfg=cfg)
    assert (plan.quantity, plan.binding) == (D("4.166"), "bracket max notional")


def test_leverage_above_every_bracket_is_lowered_to_the_top_one():
    # the default ladder tops out at 50x; 60x is not allowed by any bracket → 50x is used
    cfg = replace(CFG, leverage=60, liq_min_stop_multiple=D("0"))
    plan = eth_plan(cfg)
    assert plan.ok and plan.leverage == 50
    assert bracket_notional_cap(DEFAULT_BRACKETS, 60) is None


def test_below_min_notional_refused_with_reason():
    plan = plan_entry(rules=BTC, side=LONG, price=D("60000"), atr=D("3000"), equity=D("20"), available=D("20"),
                      cfg=CFG)
    assert not plan.ok and "minimum" in plan.reason


def test_entry_prices_reanchored_on_fill():
    plan = eth_plan()
    assert plan.prices_at(ETH, D("2001.37")) == (D("1961.37"), D("2061.37"))
    short = eth_plan(side=SHORT)
    assert short.prices_at(ETH, D("1999.995")) == (D("2040.00"), D("1940.00"))


def test_adaptive_multipliers_are_used():
    # k = 3 → stop 60 → 10 / 60 = 0.1666 → 0.166; m = 2 → TP max(40, 1.5 x 60 = 90) = 90; size x 0.5 → 0.083
    plan = eth_plan(stop_mult=D("3"), tp_mult=D("2"))
    assert plan.quantity == D("0.166") and plan.take_profit_price == D("2090.00")
    plan = eth_plan(stop_mult=D("3"), tp_mult=D("2"), size_mult=D("0.5"))
    assert plan.quantity == D("0.083") and plan.risk_amount == D("5.0")


# ------------------------------------------------------------------------------------- volatility, Kelly
def test_volatility_scaling_against_own_history():
    history = [1.0] * 20
    assert volatility_ratio(3.0, history) == 3.0
    assert volatility_scale(1.0, history, CFG) == 1
    assert volatility_scale(3.0, history, CFG) == D("0.5")       # 1.5 / 3
    assert volatility_scale(10.0, history, CFG) == D("0.25")     # floored at the minimum scale
    assert volatility_scale(3.0, history[:19], CFG) == 1         # not enough history
    # ATR 60 at 2000 is 3 % (ratio 3) → risk 0.5 % = 5 USDT; stop 120 clamped to 5 % = 100 → 0.05 ETH
    plan = eth_plan(atr=D("60"), atr_pct_history=history)
    assert (plan.vol_scale, plan.risk_pct, plan.quantity) == (D("0.5"), D("0.5"), D("0.050"))


def test_kelly_off_until_enough_trades_then_capped():
    cfg = replace(CFG, kelly_enabled=True, kelly_min_trades=4, kelly_fraction=D("0.05"))
    rs = [2.0, -1.0, 2.0, -1.0]  # W = 0.5, b = 2 → f* = 0.5 − 0.5 / 2 = 0.25
    assert kelly_fraction(rs) == 0.25
    assert kelly_risk_pct(rs[:3], cfg) is None                       # 3 < 4 trades
    assert kelly_risk_pct(rs, cfg) == D("1.25")                      # 0.05 x 0.25 = 1.25 %
    assert kelly_risk_pct(rs, replace(cfg, kelly_fraction=D("0.5"))) == D("2")     # capped at 2 %
    assert kelly_risk_pct([-1.0, -1.0, 1.0, -1.0], cfg) == D("0.25")  # f* = 0.25 − 0.75 = −0.5 → floor
    assert kelly_risk_pct(rs, replace(cfg, kelly_enabled=False)) is None
    # 1.25 % of 1000 = 12.5 USDT / 40 = 0.3125 → 0.312 ETH
    assert eth_plan(cfg, trade_r_multiples=rs).quantity == D("0.312")


# ------------------------------------------------------------------------------------- liquidation guard
def test_isolated_long_guard_lowers_leverage_until_far_enough():
    # stop 40, needs LP >= 2 x 40 = 80 below 2000. Default ladder bracket 1: MMR 1 %, cum 0. 0.25 ETH = 500 USDT.
    # 21x: WB 500/21 → LP = (500 − 23.8095)/(0.25 x 0.99) = 1924.0 → 75.99 away (too close)
    # 20x: WB 25     → LP = 475 / 0.2475 = 1919.19 → 80.8 away (enough)
    cfg = replace(CFG, leverage=25)
    plan = eth_plan(cfg)
    assert plan.ok and plan.leverage == 20 and plan.quantity == D("0.250")
    assert plan.liquidation_price == D(475) / D("0.2475")
    assert plan.liquidation_price == liquidation_price(LONG, D("0.250"), D("2000"), D("25"), DEFAULT_BRACKETS)
    close = liquidation_check(side=LONG, quantity=D("0.25"), price=D("2000"), stop_dist=D("40"), leverage=21,
                              brackets=DEFAULT_BRACKETS, cfg=cfg)
    assert not close.ok and close.liquidation_price == (D(500) - D(500) / 21) / D("0.2475")


def test_isolated_short_guard_is_asymmetric():
    # short at 20x: LP = (500 + 25)/(0.25 x 1.01) = 2079.21 → 79.2 away < 80; 19x: (500 + 26.32)/0.2525 = 2084.4
    plan = eth_plan(replace(CFG, leverage=20), side=SHORT)
    assert plan.ok and plan.leverage == 19
    assert plan.liquidation_price == liquidation_price(SHORT, D("0.250"), D("2000"), D(500) / 19, DEFAULT_BRACKETS)
    assert plan.liquidation_price == (D(500) + D(500) / 19) / D("0.2525")


def test_guard_skips_when_no_allowed_leverage_is_far_enough():
    plan = eth_plan(replace(CFG, leverage=25, min_leverage=22))
    assert not plan.ok and plan.reason.startswith("liquidation guard")


def test_btc_real_brackets_isolated():
    # BTC 0.1 at 60000 (6000 USDT, bracket 1: MMR 0.4 %), 50x → WB 120; LP = (6000 − 120)/(0.1 x 0.996)
    cfg = replace(CFG, leverage=50, liq_min_stop_multiple=D("1"), max_position_notional_pct=D("300"))
    plan = plan_entry(rules=BTC, side=LONG, price=D("60000"), atr=D("150"), equity=D("3000"), available=D("3000"),
                      cfg=cfg)
    # stop 2 x 150 = 300 (0.5 %), risk 30 → 0.1 BTC; LP 59036.1 is 963.9 away ≥ 300
    assert plan.quantity == D("0.100") and plan.leverage == 50
    assert plan.liquidation_price == D(5880) / D("0.0996")


def test_cross_guard_uses_the_cross_wallet():
    # another cross position: notional 10 000 (default bracket 2: 2 % − 100 → MM 100), uPnL −890
    other = OpenPosition("BTCUSDT", LONG, D("10000"), D("-890"), MarginType.CROSSED)
    wb = cross_wallet_balance(D("1000"), [(D("10000"), D("-890"))], [DEFAULT_BRACKETS])
    assert wb == D("10")
    cfg = replace(CFG, max_total_exposure_pct=D("100000"))
    # equity 110 → risk 1.1 / 40 = 0.0275 → 0.027 ETH (54 USDT); LP = (54 − 10)/(0.027 x 0.99) = 1646.1
    plan = eth_plan(cfg, equity=D("110"), available=D("100"), wallet_balance=D("1000"), open_positions=[other],
                    margin_type=MarginType.CROSSED)
    assert plan.ok and plan.leverage == 3 and plan.quantity == D("0.027")
    assert plan.liquidation_price == liquidation_price(LONG, D("0.027"), D("2000"), wb, DEFAULT_BRACKETS)
    assert plan.liquidation_price == D(44) / (D("0.027") * D("0.99"))
    # 5 % risk on a 0.5 % stop: 0.55 ETH (1100 USDT) on a wallet of 10 → LP above the entry → skipped
    risky = replace(cfg, risk_per_trade_pct=D("5"), max_position_notional_pct=D("100000"))
    plan = eth_plan(risky, atr=D("5"), equity=D("110"), available=D("1000"), wallet_balance=D("1000"),
                    open_positions=[other], margin_type=MarginType.CROSSED)
    assert not plan.ok and "liquidation guard" in plan.reason


# ------------------------------------------------------------------------------------- open-position limits
LIM = LimitsConfig(max_open_positions=3, equity_per_slot=D("400"), correlation_threshold=0.8, max_correlated=1,
                   correlation_min_points=3)
NOW = datetime(2025, 4, 7, 12, 0, tzinfo=UTC)


def test_capital_based_slots():
    assert free_slots(D("1000"), 0, LIM) == 2          # floor(1000 / 400) = 2 < 3
    assert free_slots(D("1000"), 2, LIM) == 0
    assert free_slots(D("5000"), 2, LIM) == 1          # max_open_positions binds
    assert free_slots(D("5000"), 2, replace(LIM, equity_per_slot=D("0"))) == 1


def test_correlation_hand_computed():
    # a = 1,2,3; b = 1,2,4: sxy = 3, sxx = 2, syy = 42/9 → 3 / sqrt(2 x 42 / 9) = 0.98198
    assert correlation([1, 2, 3], [1, 2, 4]) == pytest.approx(0.981981, abs=1e-6)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3]) is None
    assert log_returns([100, 110, 99])[0] == pytest.approx(0.0953102, abs=1e-7)


def test_correlation_guard_counts_same_side_only():
    up = [0.01, -0.02, 0.03, -0.01, 0.02]
    returns = {"ETHUSDT": up, "BTCUSDT": [2 * r for r in up], "SOLUSDT": [r + 0.001 for r in up],
               "XRPUSDT": [-r for r in up]}
    btc, sol = OpenPosition("BTCUSDT", LONG, D(100)), OpenPosition("SOLUSDT", LONG, D(100))
    assert correlation_block("ETHUSDT", LONG, returns, [btc], LIM) is None            # 1 correlated: allowed
    reason = correlation_block("ETHUSDT", LONG, returns, [btc, sol], LIM)
    assert reason is not None and "BTCUSDT" in reason and "SOLUSDT" in reason
    assert correlation_block("ETHUSDT", SHORT, returns, [btc, sol], LIM) is None      # other side
    xrp = OpenPosition("XRPUSDT", LONG, D(100))
    assert correlation_block("ETHUSDT", LONG, returns, [btc, xrp], LIM) is None       # anti-correlated


def test_funding_guard():
    soon = NOW + timedelta(hours=2)
    assert funding_block(LONG, D("0.001"), soon, NOW, LIM) is not None      # long pays 0.1 % > 0.05 %
    assert funding_block(SHORT, D("0.001"), soon, NOW, LIM) is None         # short receives
    assert funding_block(SHORT, D("-0.0006"), soon, NOW, LIM) is not None   # short pays 0.06 %
    assert funding_block(LONG, D("0.0005"), soon, NOW, LIM) is None         # at the limit: allowed
    assert funding_block(LONG, D("0.001"), NOW + timedelta(hours=9), NOW, LIM) is None  # outside the window


def test_entry_limits_in_order():
    opened = [OpenPosition("BTCUSDT", LONG, D(100))]
    assert entry_limits_block(symbol="BTCUSDT", side=LONG, equity=D(1000), open_positions=opened, cfg=LIM,
                              now=NOW) == "already in a position"
    two = [*opened, OpenPosition("SOLUSDT", SHORT, D(100))]
    assert "slot" in (entry_limits_block(symbol="ETHUSDT", side=LONG, equity=D(1000), open_positions=two, cfg=LIM,
                                         now=NOW) or "")
    assert entry_limits_block(symbol="ETHUSDT", side=LONG, equity=D(1000), open_positions=opened, cfg=LIM, now=NOW,
                              funding_rate=D("0.002"), next_funding_time=NOW + timedelta(hours=1)) is not None
    assert entry_limits_block(symbol="ETHUSDT", side=LONG, equity=D(1000), open_positions=opened, cfg=LIM, now=NOW,
                              funding_rate=D("0.0001"), next_funding_time=NOW + timedelta(hours=1)) is None


# ------------------------------------------------------------------------------------- properties
PRICE_RANGE = {"BTCUSDT": (10_000, 150_000), "ETHUSDT": (500, 6_000), "SOLUSDT": (5, 500)}


@st.composite
def sizing_cases(draw: st.DrawFn) -> dict[str, object]:
    symbol = draw(st.sampled_from(sorted(PRICE_RANGE)))
    lo, hi = PRICE_RANGE[symbol]
    rules = RULES[symbol]
    price = D(draw(st.integers(lo * 100, hi * 100))) / 100
    equity = D(draw(st.integers(10, 2_000_000)))
    return dict(
        rules=rules, side=draw(st.sampled_from([LONG, SHORT])), price=price,
        atr=price * D(draw(st.integers(5, 1000))) / D(10_000),
        equity=equity, available=equity * D(draw(st.integers(0, 100))) / 100,
        exposure=equity * D(draw(st.integers(0, 200))) / 100,
        cfg=replace(CFG, leverage=draw(st.integers(1, 75)), risk_per_trade_pct=D(draw(st.integers(1, 50))) / 10,
                    max_position_notional_pct=D(draw(st.integers(10, 500))),
                    max_total_exposure_pct=D(draw(st.integers(50, 500))), taker_fee=D("0.0005")),
        margin=draw(st.sampled_from([MarginType.ISOLATED, MarginType.CROSSED])))


@settings(max_examples=400, deadline=None)
@given(sizing_cases())
def test_no_sized_order_breaks_a_filter_or_the_exposure_cap(case: dict[str, object]):
    rules, price, equity, cfg = case["rules"], case["price"], case["equity"], case["cfg"]
    assert isinstance(rules, SymbolRules) and isinstance(price, D) and isinstance(equity, D)
    assert isinstance(cfg, RiskConfig)
    existing = [OpenPosition("OTHER", LONG, case["exposure"], margin_type=case["margin"])]  # type: ignore[arg-type]
    plan = plan_entry(rules=rules, side=case["side"], price=price, atr=case["atr"], equity=equity,  # type: ignore[arg-type]
                      available=case["available"], cfg=cfg, open_positions=existing,  # type: ignore[arg-type]
                      margin_type=case["margin"], wallet_balance=equity)  # type: ignore[arg-type]
    if not plan.ok:
        assert plan.quantity == 0 and plan.reason
        return
    check_order(rules, plan.quantity, price)                        # step, min/max qty, min notional
    check_price(rules, plan.stop_price)
    check_price(rules, plan.take_profit_price)
    notional = plan.quantity * price
    assert case["exposure"] + notional <= equity * cfg.max_total_exposure_pct / 100  # type: ignore[operator]
    assert notional <= equity * cfg.max_position_notional_pct / 100
    assert notional <= case["available"] * plan.leverage * cfg.margin_headroom  # type: ignore[operator]
    assert 1 <= plan.leverage <= cfg.leverage
    cap = bracket_notional_cap(rules.brackets, plan.leverage)
    assert cap is not None and notional <= cap
    if plan.liquidation_price > 0:
        assert (price - plan.liquidation_price) * plan.side.sign >= plan.stop_distance * cfg.liq_min_stop_multiple
    # the stop is on the right side and never further than the configured maximum (plus one tick)
    assert (price - plan.stop_price) * plan.side.sign > 0
    assert abs(price - plan.stop_price) <= price * cfg.max_stop_pct / 100 + rules.tick_size
