"""The ``Exchange`` protocol: everything the trader asks of Binance USD-M futures (or its simulation).

Implementations: ``engine.exchange.binance.BinanceFutures`` (live, over ``binance.AsyncClient``) and
``engine.exchange.paper.PaperExchange`` (simulated account over real market data). The trader only ever
sees this protocol; there is no ``if paper:`` anywhere in the engine.

Conventions:
- Prices and quantities are ``Decimal`` already rounded to the symbol's filters by the caller.
- ``client_id`` is deterministic and written to the database before the call (invariant 2).
- Errors are the ``engine.exchange.errors`` hierarchy, never a library exception.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from engine.exchange.types import (
    AccountConfig,
    Balance,
    Fill,
    FundingPayment,
    FundingRate,
    KlineBatch,
    MarginType,
    MarkPrice,
    OrderResult,
    Position,
    ProtectiveKind,
    ProtectiveOrder,
    Side,
    SymbolRules,
    Ticker24h,
)


@runtime_checkable
class MarketData(Protocol):
    """Public market data: no keys needed."""

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        """Filters (and leverage brackets where known) of every USD-M symbol; a live source reloads them when
        a day old or after an order broke a filter."""
        ...

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        """Candles oldest first, from ``start_ms`` (inclusive) or the latest ``limit``.

        The last candle may still be forming; callers drop it.
        """
        ...

    async def tickers_24h(self) -> list[Ticker24h]:
        ...

    async def mark_price(self, symbol: str) -> MarkPrice:
        """Mark price now, with the current funding rate and next funding time."""
        ...

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        """Settled funding rates with ``start <= funding_time <= end``, oldest first."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class Exchange(MarketData, Protocol):
    """Market data plus a one-way-mode USDT-margined futures account."""

    async def account_config(self) -> AccountConfig:
        ...

    async def balance(self) -> Balance:
        ...

    async def positions(self) -> list[Position]:
        """Open positions only (non-zero quantity)."""
        ...

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        ...

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Idempotent: "no need to change" is success."""
        ...

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str, *,
                                 reduce_only: bool = False) -> OrderResult:
        """Send a MARKET order and return its final state (``newOrderRespType=RESULT``).

        Raises ``OrderStatusUnknown`` when the outcome cannot be known from the answer.
        """
        ...

    async def get_order(self, symbol: str, client_id: str) -> OrderResult | None:
        """The order with that client id, or ``None`` if the exchange never received it."""
        ...

    async def place_protective_order(self, symbol: str, side: Side, kind: ProtectiveKind,
                                     trigger_price: Decimal, client_id: str) -> ProtectiveOrder:
        """Conditional close-position order on the mark price (stop-loss or take-profit)."""
        ...

    async def get_protective_order(self, symbol: str, client_id: str) -> ProtectiveOrder | None:
        ...

    async def open_protective_orders(self, symbol: str | None = None) -> list[ProtectiveOrder]:
        ...

    async def cancel_protective_order(self, symbol: str, client_id: str) -> None:
        """Cancel by client id. Raises ``OrderNotFound`` if it is no longer open."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        """Plain (non-conditional) open orders, Vigil's and anyone else's."""
        ...

    async def cancel_all_orders(self, symbol: str) -> None:
        """Cancel every open order on ``symbol``, plain and conditional, whoever placed it (kill-switch)."""
        ...

    async def fills(self, symbol: str, start: datetime) -> list[Fill]:
        """Own executions on ``symbol`` since ``start``, oldest first."""
        ...

    async def funding_payments(self, symbol: str, start: datetime) -> list[FundingPayment]:
        """Funding fees on ``symbol`` since ``start`` (negative = paid), oldest first."""
        ...
