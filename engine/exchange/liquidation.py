"""Binance USDⓈ-M liquidation price and maintenance margin (one-way mode), in exact ``Decimal``.

Formula (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", one-way mode,
``Q`` = absolute position size, ``EP`` = entry price)::

    long:  LP = (Q·EP − WB − cum) / (Q·(1 − MMR))
    short: LP = (Q·EP + WB + cum) / (Q·(1 + MMR))

``WB`` is the isolated wallet (the position's margin) for ISOLATED positions; for CROSSED positions it is
the cross wallet balance minus the maintenance margin of the other positions plus their unrealised PnL
(see :func:`cross_wallet_balance`). ``MMR`` and ``cum`` come from the leverage bracket that holds the
notional AT the liquidation price: we compute with the entry bracket and, if the notional at the result
falls in another bracket, recompute with that one.

Maintenance margin = notional × MMR − cum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from engine.exchange.types import LeverageBracket, PositionSide

ZERO = Decimal(0)


def _bracket(floor: str, cap: str, mmr: str, cum: str, number: int, leverage: int) -> LeverageBracket:
    return LeverageBracket(number, leverage, Decimal(floor), Decimal(cap), Decimal(mmr), Decimal(cum))


#: Used when a symbol's real brackets are unknown (the public API does not serve them without keys).
#: Deliberately conservative — higher maintenance ratios than Binance's major pairs — so simulated
#: liquidations happen earlier, never later. Same ladder as ``data/sample/leverage_brackets.json`` "default".
DEFAULT_BRACKETS: tuple[LeverageBracket, ...] = (
    _bracket("0", "10000", "0.01", "0", 1, 50),
    _bracket("10000", "100000", "0.02", "100", 2, 25),
    _bracket("100000", "1000000", "0.05", "3100", 3, 10),
    _bracket("1000000", "5000000", "0.1", "53100", 4, 5),
    _bracket("5000000", "20000000", "0.25", "803100", 5, 2),
    _bracket("20000000", "50000000", "0.5", "5803100", 6, 1),
)


def bracket_for(notional: Decimal, brackets: Sequence[LeverageBracket]) -> LeverageBracket:
    """The bracket with ``floor <= notional < cap``; the last one above every cap, the first below 0."""
    ladder = brackets or DEFAULT_BRACKETS
    notional = abs(notional)
    for b in ladder:
        if b.notional_floor <= notional < b.notional_cap:
            return b
    return ladder[-1] if notional >= ladder[-1].notional_floor else ladder[0]


def maintenance_margin(notional: Decimal, brackets: Sequence[LeverageBracket]) -> Decimal:
    """Binance maintenance margin of a position of that notional: ``notional × MMR − cum``."""
    notional = abs(notional)
    b = bracket_for(notional, brackets)
    return notional * b.maint_margin_ratio - b.cum


def max_leverage(notional: Decimal, brackets: Sequence[LeverageBracket]) -> int:
    """Highest leverage Binance allows for a position of that notional (-2027 above it)."""
    return bracket_for(notional, brackets).initial_leverage


def cross_wallet_balance(wallet_balance: Decimal, others: Iterable[tuple[Decimal, Decimal]],
                         brackets_of_others: Iterable[Sequence[LeverageBracket]]) -> Decimal:
    """``WB`` of a CROSSED position: cross wallet − MM of the other positions + their uPnL.

    ``others`` holds ``(notional, unrealized_pnl)`` of every other cross position, in the same order as
    ``brackets_of_others``.
    """
    wb = wallet_balance
    for (notional, upnl), brackets in zip(others, brackets_of_others, strict=True):
        wb += upnl - maintenance_margin(notional, brackets)
    return wb


def _raw_price(side: PositionSide, quantity: Decimal, entry_price: Decimal, wallet_balance: Decimal,
               bracket: LeverageBracket) -> Decimal:
    mmr, cum = bracket.maint_margin_ratio, bracket.cum
    if side is PositionSide.LONG:
        return (quantity * entry_price - wallet_balance - cum) / (quantity * (1 - mmr))
    return (quantity * entry_price + wallet_balance + cum) / (quantity * (1 + mmr))


def liquidation_price(side: PositionSide, quantity: Decimal, entry_price: Decimal, wallet_balance: Decimal,
                      brackets: Sequence[LeverageBracket]) -> Decimal:
    """Liquidation price of a one-way position; ``0`` when it cannot be liquidated.

    ``wallet_balance`` is the isolated margin (ISOLATED) or :func:`cross_wallet_balance` (CROSSED).
    """
    quantity = abs(quantity)
    if quantity == 0:
        return ZERO
    bracket = bracket_for(quantity * entry_price, brackets)
    price = _raw_price(side, quantity, entry_price, wallet_balance, bracket)
    seen = {bracket.bracket}
    # The bracket must hold the notional AT the liquidation price; re-bracket until stable.
    while price > 0:
        at_lp = bracket_for(quantity * price, brackets)
        if at_lp.bracket in seen and at_lp.bracket == bracket.bracket:
            break
        if at_lp.bracket in seen:  # oscillation between two brackets: keep the later (FAQ: recompute once)
            price = _raw_price(side, quantity, entry_price, wallet_balance, at_lp)
            break
        bracket = at_lp
        seen.add(bracket.bracket)
        price = _raw_price(side, quantity, entry_price, wallet_balance, bracket)
    return price if price > 0 else ZERO
