"""Position sizing and stop-loss / take-profit placement.

quantity = (equity × risk%) / stop distance, capped by the notional allowed per position and by the
margin available at the configured leverage, then floored to the symbol's step size. Every refusal
comes back as an ``EntryPlan`` with ``quantity == 0`` and a ``reason`` the operator can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.exchange.rules import round_price, round_quantity
from engine.exchange.types import PositionSide, SymbolRules

HUNDRED = Decimal(100)
# keep a little margin free for fees and mark-price moves between sizing and fill
MARGIN_HEADROOM = Decimal("0.95")


@dataclass(frozen=True, slots=True)
class RiskConfig:
    risk_per_trade_pct: Decimal
    leverage: int
    max_position_notional_pct: Decimal
    stop_atr_mult: Decimal
    take_profit_atr_mult: Decimal
    min_stop_pct: Decimal
    max_stop_pct: Decimal
    min_reward_risk: Decimal
    taker_fee: Decimal = Decimal("0.0005")


@dataclass(frozen=True, slots=True)
class EntryPlan:
    symbol: str
    side: PositionSide
    quantity: Decimal
    reference_price: Decimal
    stop_price: Decimal
    take_profit_price: Decimal
    risk_amount: Decimal
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.quantity > 0


def stop_distance(price: Decimal, atr: Decimal, cfg: RiskConfig) -> Decimal:
    """k × ATR clamped to [min %, max %] of the price."""
    raw = atr * cfg.stop_atr_mult
    low = price * cfg.min_stop_pct / HUNDRED
    high = price * cfg.max_stop_pct / HUNDRED
    return min(max(raw, low), high)


def protective_prices(rules: SymbolRules, side: PositionSide, entry: Decimal, stop_dist: Decimal,
                      atr: Decimal, cfg: RiskConfig) -> tuple[Decimal, Decimal]:
    """Stop and take-profit on the tick grid. The stop is rounded away from the entry (never tighter
    than planned would be a surprise; never looser than one tick either), the take-profit toward it."""
    tp_dist = max(atr * cfg.take_profit_atr_mult, stop_dist * cfg.min_reward_risk)
    if side is PositionSide.LONG:
        stop = round_price(rules, entry - stop_dist, rounding=ROUND_FLOOR)
        take = round_price(rules, entry + tp_dist, rounding=ROUND_FLOOR)
    else:
        stop = round_price(rules, entry + stop_dist, rounding=ROUND_CEILING)
        take = round_price(rules, entry - tp_dist, rounding=ROUND_CEILING)
    return stop, take


def plan_entry(*, rules: SymbolRules, side: PositionSide, price: Decimal, atr: Decimal, equity: Decimal,
               available: Decimal, cfg: RiskConfig) -> EntryPlan:
    """Size an entry at ``price`` (the reference/mark price) for the given ATR and account."""
    dist = stop_distance(price, atr, cfg)
    stop, take = protective_prices(rules, side, price, dist, atr, cfg)
    risk_amount = equity * cfg.risk_per_trade_pct / HUNDRED

    def refuse(reason: str) -> EntryPlan:
        return EntryPlan(rules.symbol, side, Decimal(0), price, stop, take, risk_amount, reason)

    if equity <= 0:
        return refuse("no equity")
    if stop <= 0 or take <= 0:
        return refuse("stop or take-profit would be at a non-positive price")
    # risk per unit includes the exit's taker fee at the stop, so a stopped trade loses ~risk_amount
    per_unit = abs(price - stop) + (price + stop) * cfg.taker_fee
    qty = risk_amount / per_unit
    max_notional = equity * cfg.max_position_notional_pct / HUNDRED
    margin_notional = max(available, Decimal(0)) * cfg.leverage * MARGIN_HEADROOM
    cap = min(max_notional, margin_notional)
    binding = "risk"
    if qty * price > cap:
        qty = cap / price
        binding = "notional cap" if cap == max_notional else "available margin"
    qty = round_quantity(rules, qty)
    if qty <= 0 or qty < rules.market_min_qty:
        return refuse(f"size {qty} below the minimum quantity {rules.market_min_qty} ({binding} binds)")
    if qty > rules.market_max_qty:
        qty = round_quantity(rules, rules.market_max_qty)
    if qty * price < rules.min_notional:
        return refuse(f"order value {(qty * price):.2f} USDT below the minimum notional {rules.min_notional} USDT "
                      f"({binding} binds)")
    return EntryPlan(rules.symbol, side, qty, price, stop, take, risk_amount)
