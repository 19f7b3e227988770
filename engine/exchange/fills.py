"""The pure fill model: how one candle (or one mark price) triggers, fills and charges orders.

Plain values in, plain values out; no I/O, no asyncio. ``PaperExchange`` and the fast backtest engine both
call it, so a stop, a take-profit, a liquidation, a fee or a funding payment comes out the same in both.

- **Trigger path.** Inside one candle the price goes open → low → high → close for a long position (open →
  high → low → close for a short, or with no position): adverse moves first, the conservative order. The
  first trigger met along that path fires; at the same point a liquidation comes before a stop, and a stop
  before a take-profit.
- **Gaps.** A candle opening beyond a trigger fills at the open; otherwise at the trigger level.
- **Prices.** Every taker fill moves against the taker by the slippage (a buy pays more) and is rounded to
  the tick away from the taker.
- **Fee.** ``price × quantity × taker fee``.
- **Funding.** ``−side × quantity × candle open × rate`` (longs pay a positive rate, shorts receive it).
- **Liquidation** at the liquidation level rounded to the tick against the position. ISOLATED: the rest of
  the isolated margin is charged as the clearance fee (the wallet loses exactly the isolated margin).
  CROSSED: the maintenance margin at that price is the fee.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.enums import PositionSide, Side
from engine.exchange.liquidation import maintenance_margin
from engine.exchange.rules import round_price
from engine.exchange.types import LeverageBracket, MarginType, ProtectiveKind, SymbolRules

ZERO = Decimal(0)
HUNDRED = Decimal(100)

#: tie-break at the same point of the path
LIQUIDATION_PRIORITY = 0
STOP_PRIORITY = 1
TAKE_PROFIT_PRIORITY = 2


@dataclass(frozen=True, slots=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True, slots=True)
class Trigger:
    """A price condition: ``falls`` = met when price <= level, else when price >= level. ``ref`` is the caller's
    handle on what fires (an order; ``None`` for the liquidation)."""

    ref: object | None
    level: Decimal
    falls: bool
    priority: int


@dataclass(frozen=True, slots=True)
class Hit:
    trigger: Trigger
    distance: Decimal  # path length from the candle open to the moment the condition is met
    price: Decimal  # price at that moment: the open when gapped, else the level


def falls(side: Side, kind: ProtectiveKind | str) -> bool:
    """SELL stop and BUY take-profit fire when the price falls to the trigger; the others when it rises."""
    return (side is Side.SELL) == (str(kind) == ProtectiveKind.STOP_LOSS.value)


def protective_trigger(ref: object, side: Side, kind: ProtectiveKind | str, level: Decimal) -> Trigger:
    stop = str(kind) == ProtectiveKind.STOP_LOSS.value
    return Trigger(ref, level, falls(side, kind), STOP_PRIORITY if stop else TAKE_PROFIT_PRIORITY)


def liquidation_trigger(side: PositionSide, level: Decimal) -> Trigger:
    return Trigger(None, level, side is PositionSide.LONG, LIQUIDATION_PRIORITY)


def met(trigger: Trigger, price: Decimal) -> bool:
    return price <= trigger.level if trigger.falls else price >= trigger.level


def reach(trigger: Trigger, candle: Candle) -> bool:
    return candle.low <= trigger.level if trigger.falls else candle.high >= trigger.level


def hit_at(trigger: Trigger, price: Decimal | None) -> Hit | None:
    if price is None or not met(trigger, price):
        return None
    return Hit(trigger, ZERO, price)


def up_first(side: PositionSide | None) -> bool:
    """The adverse move first: a short's path goes up first, a long's (or no position's) down first."""
    return side is PositionSide.SHORT


def hit_on_candle(trigger: Trigger, c: Candle, up: bool) -> Hit | None:
    """Where along the path open → low → high → close (open → high → low → close when ``up``) the
    trigger's condition is first met, if at all."""
    if met(trigger, c.open):
        return Hit(trigger, ZERO, c.open)
    if not reach(trigger, c):
        return None
    x = trigger.level
    if trigger.falls:
        distance = (c.high - c.open) + (c.high - x) if up else c.open - x
    else:
        distance = x - c.open if up else (c.open - c.low) + (x - c.low)
    return Hit(trigger, distance, x)


CAUSAL_GRACE_MS = 10_000  # an order placed this soon after a candle's open counts as existing from its open


def existed_from_open(born_ms: int, candle: Candle) -> bool:
    """Causality: a candle's range may fire an order (or liquidate a position) only if it existed from the candle's
    open (within ``CAUSAL_GRACE_MS``). Of the candle it was born in, the part before its birth is unknown from OHLC
    alone; that candle counts through the mark checks only, never backwards."""
    return born_ms <= candle.open_ms + CAUSAL_GRACE_MS


def first_hit(triggers: Iterable[Trigger], candle: Candle | None, mark: Decimal | None, up: bool) -> Hit | None:
    """The first trigger met in ``candle`` along the path (or at ``mark`` when no candle); ties by priority."""
    hits = []
    for trigger in triggers:
        hit = hit_on_candle(trigger, candle, up) if candle is not None else hit_at(trigger, mark)
        if hit is not None:
            hits.append(hit)
    return min(hits, key=lambda h: (h.distance, h.trigger.priority), default=None)


def event_ms(c: Candle, hit: Hit, iv_ms: int, up: bool) -> int:
    """Time of a hit inside its candle, interpolated along the price path (deterministic)."""
    if up:
        path = (c.high - c.open) + (c.high - c.low) + (c.close - c.low)
    else:
        path = (c.open - c.low) + (c.high - c.low) + (c.high - c.close)
    if hit.distance <= 0 or path <= 0:
        return c.open_ms
    return c.open_ms + int(hit.distance / path * (iv_ms - 1))


# ------------------------------------------------------------------------------------------- money
def slipped(rules: SymbolRules, price: Decimal, side: Side, slippage_pct: Decimal) -> Decimal:
    """``price`` moved against a taker on ``side`` by ``slippage_pct`` %, rounded to the tick away from it."""
    factor = slippage_pct / 100
    if side is Side.BUY:
        return round_price(rules, price * (1 + factor), rounding=ROUND_CEILING)
    return round_price(rules, price * (1 - factor), rounding=ROUND_FLOOR)


def taker_fee(price: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    return price * quantity * rate


def funding_amount(side: PositionSide, quantity: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """What the position receives (negative: pays) at a funding time, ``price`` being the candle's open."""
    return -side.sign * quantity * price * rate


def realized_pnl(side: PositionSide, entry: Decimal, price: Decimal, quantity: Decimal) -> Decimal:
    return (price - entry) * quantity * side.sign


@dataclass(frozen=True, slots=True)
class LiquidationFill:
    price: Decimal
    realized: Decimal
    fee: Decimal


def liquidation_fill(rules: SymbolRules, side: PositionSide, quantity: Decimal, entry: Decimal, level: Decimal,
                     margin_type: MarginType, isolated_margin: Decimal,
                     brackets: tuple[LeverageBracket, ...]) -> LiquidationFill:
    """The liquidation of a whole position at ``level``: fill price, realised PnL and the liquidation fee."""
    long = side is PositionSide.LONG
    price = round_price(rules, level, rounding=ROUND_CEILING if long else ROUND_FLOOR)
    realized = realized_pnl(side, entry, price, quantity)
    if margin_type is MarginType.ISOLATED:
        fee = isolated_margin + realized  # the rest of the isolated margin: clearance fee
    else:
        fee = maintenance_margin(quantity * price, brackets)
    return LiquidationFill(price, realized, max(fee, ZERO))


# ------------------------------------------------------------------------------------------- positions
@dataclass(frozen=True, slots=True)
class Holding:
    """A one-way-mode position as the fill arithmetic needs it."""

    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    margin_type: MarginType
    isolated_margin: Decimal


def execute(holding: Holding | None, side: Side, quantity: Decimal, price: Decimal, *, leverage: int,
            margin_type: MarginType) -> tuple[Decimal, Holding | None, bool]:
    """One execution on a one-way position: (realised PnL, position after, whether a new position opened).
    Increases average the entry; reductions release isolated margin pro rata; a flip opens the remainder."""
    if holding is None or holding.side.entry_side is side:
        return ZERO, _increase(holding, side, quantity, price, leverage, margin_type), holding is None
    closed = min(quantity, holding.quantity)
    realized = realized_pnl(holding.side, holding.entry_price, price, closed)
    remaining = holding.quantity - closed
    if remaining > 0:
        margin = holding.isolated_margin * remaining / holding.quantity
        return realized, replace(holding, quantity=remaining, isolated_margin=margin), False
    rest = quantity - closed
    if rest > 0:  # flip: the remainder opens a position on the other side
        return realized, _increase(None, side, rest, price, leverage, margin_type), True
    return realized, None, False


def _increase(holding: Holding | None, side: Side, quantity: Decimal, price: Decimal, leverage: int,
              margin_type: MarginType) -> Holding:
    if holding is None:
        isolated = quantity * price / leverage if margin_type is MarginType.ISOLATED else ZERO
        side_of = PositionSide.LONG if side is Side.BUY else PositionSide.SHORT
        return Holding(side_of, quantity, price, leverage, margin_type, isolated)
    total = holding.quantity + quantity
    entry = (holding.entry_price * holding.quantity + price * quantity) / total
    added = quantity * price / holding.leverage if holding.margin_type is MarginType.ISOLATED else ZERO
    return replace(holding, quantity=total, entry_price=entry, isolated_margin=holding.isolated_margin + added)


def unrealized_pnl(holding: Holding, mark: Decimal) -> Decimal:
    return (mark - holding.entry_price) * holding.quantity * holding.side.sign


def position_margin(holding: Holding, mark: Decimal) -> Decimal:
    """Margin a position holds: its isolated margin, or ``notional at mark / leverage`` when CROSSED."""
    if holding.margin_type is MarginType.ISOLATED:
        return holding.isolated_margin
    return holding.quantity * mark / holding.leverage
