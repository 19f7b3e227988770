"""Rows read back from the database, as frozen dataclasses with exact types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import aiosqlite

from core.enums import OrderPurpose


class TradeStatus(StrEnum):
    PENDING = "PENDING"   # intent recorded, entry not (yet) confirmed filled
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    FAILED = "FAILED"     # entry never filled


class OrderState(StrEnum):
    INTENT = "INTENT"       # written, not yet sent (or sent and crashed before the answer)
    OPEN = "OPEN"           # accepted, resting (protective orders)
    FILLED = "FILLED"
    TRIGGERED = "TRIGGERED"  # protective order fired
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"     # outcome unknown; must be resolved by querying the client id

    @property
    def is_final(self) -> bool:
        return self in (OrderState.FILLED, OrderState.TRIGGERED, OrderState.CANCELED, OrderState.REJECTED,
                        OrderState.EXPIRED)


@dataclass(frozen=True, slots=True)
class TradeRecord:
    id: int
    mode: str
    symbol: str
    side: str
    status: TradeStatus
    quantity: Decimal
    initial_quantity: Decimal
    entry_price: Decimal | None
    stop_price: Decimal
    initial_stop_price: Decimal
    take_profit_price: Decimal | None
    leverage: int
    liquidation_price: Decimal | None
    score: float | None
    votes: tuple[str, ...]
    opened_at: datetime | None
    closed_at: datetime | None
    exit_price: Decimal | None
    exit_reason: str | None
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    created_at: datetime

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> TradeRecord:
        return cls(
            id=row["id"], mode=row["mode"], symbol=row["symbol"], side=row["side"],
            status=TradeStatus(row["status"]), quantity=Decimal(row["quantity"]),
            initial_quantity=Decimal(row["initial_quantity"]), entry_price=dec_or_none(row["entry_price"]),
            stop_price=Decimal(row["stop_price"]), initial_stop_price=Decimal(row["initial_stop_price"]),
            take_profit_price=dec_or_none(row["take_profit_price"]), leverage=row["leverage"],
            liquidation_price=dec_or_none(row["liquidation_price"]), score=row["score"],
            votes=tuple(json.loads(row["votes"])), opened_at=dt_or_none(row["opened_at"]),
            closed_at=dt_or_none(row["closed_at"]), exit_price=dec_or_none(row["exit_price"]),
            exit_reason=row["exit_reason"], realized_pnl=Decimal(row["realized_pnl"]),
            fees=Decimal(row["fees"]), funding=Decimal(row["funding"]),
            created_at=datetime.fromisoformat(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    client_id: str
    trade_id: int | None
    mode: str
    symbol: str
    purpose: OrderPurpose
    side: str
    order_type: str
    quantity: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    status: OrderState
    exchange_id: str | None
    filled_quantity: Decimal
    avg_price: Decimal | None
    fee: Decimal
    error: str | None
    created_at: datetime
    updated_at: datetime
    reason: str | None = None  # why an exit order was sent (manual_close, time_stop, ...)

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> OrderRecord:
        return cls(
            id=row["id"], client_id=row["client_id"], trade_id=row["trade_id"], mode=row["mode"],
            symbol=row["symbol"], purpose=OrderPurpose(row["purpose"]), side=row["side"],
            order_type=row["order_type"], quantity=dec_or_none(row["quantity"]),
            trigger_price=dec_or_none(row["trigger_price"]), reduce_only=bool(row["reduce_only"]),
            status=OrderState(row["status"]), exchange_id=row["exchange_id"],
            filled_quantity=Decimal(row["filled_quantity"]), avg_price=dec_or_none(row["avg_price"]),
            fee=Decimal(row["fee"]), error=row["error"], created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]), reason=row["reason"],
        )


@dataclass(frozen=True, slots=True)
class EquityPoint:
    time: datetime
    wallet: Decimal
    equity: Decimal
    unrealized: Decimal


def dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def dt_or_none(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
