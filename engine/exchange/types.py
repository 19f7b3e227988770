"""Domain types that cross the exchange boundary.

Everything that reaches the exchange (prices, quantities, money) is a ``Decimal``. Times are
timezone-aware UTC ``datetime`` objects. All types are frozen: an update is a new value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np

from core.enums import PositionSide, Side


class MarginType(StrEnum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


class ProtectiveKind(StrEnum):
    """Conditional close-position orders (Binance Algo Order API, ``algoType=CONDITIONAL``)."""

    STOP_LOSS = "STOP_MARKET"
    TAKE_PROFIT = "TAKE_PROFIT_MARKET"


class ProtectiveStatus(StrEnum):
    """Algo order status as Binance reports it."""

    NEW = "NEW"
    TRIGGERING = "TRIGGERING"
    TRIGGERED = "TRIGGERED"
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (ProtectiveStatus.NEW, ProtectiveStatus.TRIGGERING)


@dataclass(frozen=True, slots=True)
class LeverageBracket:
    """One row of ``/fapi/v1/leverageBracket``: maintenance margin for notional in [floor, cap)."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Trading filters of one USD-M perpetual, from ``exchangeInfo``."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    brackets: tuple[LeverageBracket, ...] = ()
    contract_type: str = "PERPETUAL"

    @property
    def is_tradable(self) -> bool:
        return self.status == "TRADING" and self.contract_type == "PERPETUAL" and self.quote_asset == "USDT"


@dataclass(frozen=True, slots=True)
class Ticker24h:
    symbol: str
    last_price: Decimal
    quote_volume: Decimal
    price_change_pct: Decimal


@dataclass(frozen=True, slots=True)
class MarkPrice:
    symbol: str
    mark_price: Decimal
    funding_rate: Decimal
    next_funding_time: datetime
    time: datetime


@dataclass(frozen=True, slots=True)
class FundingRate:
    symbol: str
    funding_time: datetime
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Balance:
    """USDT wallet of the futures account."""

    asset: str
    wallet_balance: Decimal
    available_balance: Decimal
    unrealized_pnl: Decimal

    @property
    def equity(self) -> Decimal:
        return self.wallet_balance + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class Position:
    """An open one-way position. ``quantity`` is always positive; the side says the direction."""

    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal
    leverage: int
    margin_type: MarginType
    isolated_margin: Decimal = Decimal(0)
    updated_at: datetime | None = None

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.mark_price


@dataclass(frozen=True, slots=True)
class OrderResult:
    """A plain (MARKET) order as the exchange reports it."""

    symbol: str
    client_id: str
    exchange_id: str
    side: Side
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    avg_price: Decimal
    reduce_only: bool
    time: datetime
    fee: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class ProtectiveOrder:
    """A conditional close-position order (stop-loss or take-profit) on the Algo Order API."""

    symbol: str
    client_id: str
    exchange_id: str
    side: Side
    kind: ProtectiveKind
    trigger_price: Decimal
    status: ProtectiveStatus
    time: datetime
    triggered_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution (``userTrades`` row)."""

    symbol: str
    trade_id: str
    order_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    realized_pnl: Decimal
    time: datetime
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """A funding fee paid (negative) or received (positive), as in ``income?incomeType=FUNDING_FEE``."""

    symbol: str
    amount: Decimal
    time: datetime
    rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AccountConfig:
    can_trade: bool
    hedge_mode: bool
    multi_assets_margin: bool


@dataclass(frozen=True, slots=True, eq=False)
class KlineBatch:
    """Candles of one symbol and interval as parallel numpy arrays, oldest first.

    ``open_time`` is epoch milliseconds UTC (int64); prices and volume are float64. Floats are fine
    here: candles feed indicators and simulations, never order parameters.
    """

    symbol: str
    interval: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    @classmethod
    def empty(cls, symbol: str, interval: str) -> KlineBatch:
        f = np.empty(0, dtype=np.float64)
        return cls(symbol, interval, np.empty(0, dtype=np.int64), f, f, f, f, f)

    @classmethod
    def from_rows(cls, symbol: str, interval: str, rows: list[list] | list[tuple]) -> KlineBatch:
        """Build from Binance kline rows ``[openTime, open, high, low, close, volume, ...]``."""
        if not rows:
            return cls.empty(symbol, interval)
        times = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
        values = np.array([[float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])] for r in rows],
                          dtype=np.float64)
        return cls(symbol, interval, times, values[:, 0].copy(), values[:, 1].copy(), values[:, 2].copy(),
                   values[:, 3].copy(), values[:, 4].copy())

    def slice(self, start: int, stop: int | None = None) -> KlineBatch:
        sl = slice(start, stop)
        return KlineBatch(self.symbol, self.interval, self.open_time[sl], self.open[sl], self.high[sl],
                          self.low[sl], self.close[sl], self.volume[sl])
