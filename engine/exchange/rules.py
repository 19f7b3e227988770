"""Symbol filters: parse ``exchangeInfo`` entries and round prices and quantities to them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from engine.exchange.errors import FilterViolation, MinNotionalError
from engine.exchange.types import LeverageBracket, SymbolRules


def round_to_step(value: Decimal, step: Decimal, *, rounding: str = ROUND_FLOOR, base: Decimal = Decimal(0)) -> Decimal:
    """Round ``value`` to ``base + k * step`` (k integer) and quantise to the step's exponent."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    steps = ((value - base) / step).to_integral_value(rounding=rounding)
    return (base + steps * step).quantize(step)


def round_price(rules: SymbolRules, price: Decimal, *, rounding: str = ROUND_FLOOR) -> Decimal:
    """Price on the tick grid (``(price - minPrice) % tickSize == 0``)."""
    return round_to_step(price, rules.tick_size, rounding=rounding, base=Decimal(0))


def round_quantity(rules: SymbolRules, quantity: Decimal, *, market: bool = True) -> Decimal:
    """Quantity floored to the (market) step size. Never rounds up: that would add risk."""
    step = rules.market_step_size if market else rules.step_size
    return round_to_step(quantity, step, rounding=ROUND_FLOOR)


def check_order(rules: SymbolRules, quantity: Decimal, price: Decimal, *, market: bool = True,
                reduce_only: bool = False) -> None:
    """Raise if the order breaks a filter. ``price`` is the reference (mark) price for market orders."""
    step = rules.market_step_size if market else rules.step_size
    min_qty = rules.market_min_qty if market else rules.min_qty
    max_qty = rules.market_max_qty if market else rules.max_qty
    if quantity <= 0:
        raise FilterViolation(f"{rules.symbol}: quantity must be positive, got {quantity}", code=-4003)
    if quantity % step != 0:
        raise FilterViolation(f"{rules.symbol}: quantity {quantity} is not a multiple of step {step}", code=-4023)
    if quantity < min_qty:
        raise FilterViolation(f"{rules.symbol}: quantity {quantity} is below the minimum {min_qty}")
    if quantity > max_qty:
        raise FilterViolation(f"{rules.symbol}: quantity {quantity} is above the maximum {max_qty}", code=-4005)
    if not reduce_only and quantity * price < rules.min_notional:
        raise MinNotionalError(
            f"{rules.symbol}: order value {(quantity * price):.4f} USDT is below the minimum "
            f"{rules.min_notional} USDT", code=-4164)


def check_price(rules: SymbolRules, price: Decimal) -> None:
    if price < rules.min_price or (rules.max_price > 0 and price > rules.max_price):
        raise FilterViolation(f"{rules.symbol}: price {price} outside [{rules.min_price}, {rules.max_price}]")
    if price % rules.tick_size != 0:
        raise FilterViolation(f"{rules.symbol}: price {price} is not a multiple of tick {rules.tick_size}",
                              code=-4014)


def min_quantity_for_notional(rules: SymbolRules, price: Decimal) -> Decimal:
    """Smallest valid market quantity whose value at ``price`` reaches minNotional."""
    raw = rules.min_notional / price
    qty = round_to_step(raw, rules.market_step_size, rounding=ROUND_CEILING)
    return max(qty, rules.market_min_qty)


def parse_brackets(entries: Iterable[Mapping[str, Any]]) -> tuple[LeverageBracket, ...]:
    """Parse the ``brackets`` list of one ``/fapi/v1/leverageBracket`` entry."""
    out = [
        LeverageBracket(
            bracket=int(b["bracket"]),
            initial_leverage=int(b["initialLeverage"]),
            notional_floor=Decimal(str(b["notionalFloor"])),
            notional_cap=Decimal(str(b["notionalCap"])),
            maint_margin_ratio=Decimal(str(b["maintMarginRatio"])),
            cum=Decimal(str(b["cum"])),
        )
        for b in entries
    ]
    return tuple(sorted(out, key=lambda b: b.notional_floor))


def parse_symbol_rules(entry: Mapping[str, Any], brackets: tuple[LeverageBracket, ...] = ()) -> SymbolRules:
    """Build ``SymbolRules`` from one raw ``exchangeInfo.symbols`` entry."""
    filters = {f["filterType"]: f for f in entry.get("filters", [])}
    price_f = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    market_lot = filters.get("MARKET_LOT_SIZE", lot)
    notional = filters.get("MIN_NOTIONAL", {})

    def dec(src: Mapping[str, Any], key: str, default: str = "0") -> Decimal:
        return Decimal(str(src.get(key, default))).normalize() if src.get(key) is not None else Decimal(default)

    step = dec(lot, "stepSize", "1")
    market_step = dec(market_lot, "stepSize", str(step))
    if market_step == 0:
        market_step = step
    return SymbolRules(
        symbol=entry["symbol"],
        status=entry.get("status", "TRADING"),
        base_asset=entry.get("baseAsset", entry["symbol"].removesuffix("USDT")),
        quote_asset=entry.get("quoteAsset", "USDT"),
        tick_size=_exp_normal(dec(price_f, "tickSize", "0.01")),
        min_price=dec(price_f, "minPrice"),
        max_price=dec(price_f, "maxPrice"),
        step_size=_exp_normal(step),
        min_qty=dec(lot, "minQty"),
        max_qty=dec(lot, "maxQty", "1e12"),
        market_step_size=_exp_normal(market_step),
        market_min_qty=dec(market_lot, "minQty"),
        market_max_qty=dec(market_lot, "maxQty", "1e12"),
        min_notional=dec(notional, "notional", "5"),
        brackets=brackets,
        contract_type=entry.get("contractType", "PERPETUAL"),
    )


def _exp_normal(step: Decimal) -> Decimal:
    """``Decimal('1E+1')`` → ``Decimal('10')`` so quantize() keeps integer steps readable."""
    return step.quantize(Decimal(1)) if step == step.to_integral_value() else step
