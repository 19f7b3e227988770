"""How a closed trade is booked from its fills, why it closed, and what the adaptive learner remembers of it.
Pure: the order desk (live, paper, replay) and the fast backtest engine both call it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from core.enums import ExitReason, PositionSide, Side
from engine.policy.adaptive import TradeOutcome

ZERO = Decimal(0)
PRICE_QUANTUM = Decimal("0.00000001")  # average exit prices over several fills are kept to 8 decimals


class FillLike(Protocol):
    @property
    def side(self) -> Side: ...

    @property
    def price(self) -> Decimal: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def fee(self) -> Decimal: ...

    @property
    def realized_pnl(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Booking:
    exit_price: Decimal
    realized_pnl: Decimal
    fees: Decimal


def book(side: PositionSide, fills: Sequence[FillLike], entry_price: Decimal) -> Booking:
    """Exit price (quantity-weighted over the exit fills, 8 decimals), realised PnL and fees of all fills."""
    exits = [f for f in fills if f.side is side.exit_side]
    exit_qty = sum((f.quantity for f in exits), ZERO)
    exit_price = trim(sum((f.price * f.quantity for f in exits), ZERO) / exit_qty) if exit_qty else entry_price
    return Booking(exit_price, sum((f.realized_pnl for f in fills), ZERO), sum((f.fee for f in fills), ZERO))


def trim(value: Decimal) -> Decimal:
    """8 decimals at most, without trailing zeros (136.51000000 → 136.51), never in exponent form."""
    value = value.quantize(PRICE_QUANTUM).normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def protective_exit_reason(take_profit: bool, trigger_price: Decimal | None, initial_stop: Decimal) -> ExitReason:
    """A protective order fired: its take-profit, the initial stop, or a stop that had been moved (trailing)."""
    if take_profit:
        return ExitReason.TAKE_PROFIT
    return ExitReason.STOP_LOSS if trigger_price == initial_stop else ExitReason.TRAILING_STOP


def closed_outcome(*, symbol: str, side: PositionSide, entry: Decimal, exit_price: Decimal, initial_stop: Decimal,
                   entry_atr: Decimal, stop_atr_mult: Decimal, best: Decimal, worst: Decimal, opened_at: datetime,
                   regime: str, net_pnl: Decimal, quantity: Decimal) -> TradeOutcome:
    """The learner's record of a closed trade; without a recorded ATR at entry, the stop distance / k stands in."""
    atr = entry_atr or abs(entry - initial_stop) / stop_atr_mult
    return TradeOutcome.from_prices(symbol=symbol, side=side, entry=entry, exit_price=exit_price,
                                    initial_stop=initial_stop, atr=atr, best=best, worst=worst, opened_at=opened_at,
                                    regime=regime, net_pnl=net_pnl, quantity=quantity)
