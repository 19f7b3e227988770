"""Persistence of the simulated (paper) futures account: the ``paper_*`` tables of schema V1.

Reads go through ``Database.fetch*``; writes take the ``aiosqlite.Connection`` of a transaction opened by
the caller (``async with db.transaction() as conn``) so one simulation step lands atomically.
Money, prices and quantities are exact ``Decimal`` strings; times are ISO-8601 UTC with milliseconds
(fixed width, so text order is time order).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import aiosqlite

from engine.exchange.types import MarginType, PositionSide, Side
from storage.db import Database


def iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class PaperPosition:
    symbol: str
    side: PositionSide
    quantity: Decimal
    entry_price: Decimal
    leverage: int
    margin_type: MarginType
    isolated_margin: Decimal
    opened_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SymbolConfig:
    symbol: str
    leverage: int
    margin_type: MarginType


@dataclass(frozen=True, slots=True)
class PaperOrder:
    """A row of ``paper_orders``: a MARKET order or a close-position algo order (STOP/TAKE_PROFIT)."""

    client_id: str
    exchange_id: str
    symbol: str
    side: Side
    order_type: str
    quantity: Decimal | None
    trigger_price: Decimal | None
    reduce_only: bool
    close_position: bool
    status: str
    filled_quantity: Decimal
    avg_price: Decimal
    fee: Decimal
    triggered_order_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PaperFill:
    id: int
    order_id: str
    client_id: str | None
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    realized_pnl: Decimal
    time: datetime


@dataclass(frozen=True, slots=True)
class PaperFunding:
    symbol: str
    funding_time: datetime
    rate: Decimal
    amount: Decimal


def _dec_or_none(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _order(row: aiosqlite.Row) -> PaperOrder:
    return PaperOrder(
        client_id=row["client_id"], exchange_id=row["exchange_id"], symbol=row["symbol"],
        side=Side(row["side"]), order_type=row["order_type"], quantity=_dec_or_none(row["quantity"]),
        trigger_price=_dec_or_none(row["trigger_price"]), reduce_only=bool(row["reduce_only"]),
        close_position=bool(row["close_position"]), status=row["status"],
        filled_quantity=Decimal(row["filled_quantity"]), avg_price=Decimal(row["avg_price"]),
        fee=Decimal(row["fee"]), triggered_order_id=row["triggered_order_id"],
        created_at=parse_iso(row["created_at"]), updated_at=parse_iso(row["updated_at"]))


def _position(row: aiosqlite.Row) -> PaperPosition:
    return PaperPosition(
        symbol=row["symbol"], side=PositionSide(row["side"]), quantity=Decimal(row["quantity"]),
        entry_price=Decimal(row["entry_price"]), leverage=int(row["leverage"]),
        margin_type=MarginType(row["margin_type"]), isolated_margin=Decimal(row["isolated_margin"]),
        opened_at=parse_iso(row["opened_at"]), updated_at=parse_iso(row["updated_at"]))


class PaperStore:
    """Typed access to the ``paper_*`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- loading at start --------------------------------------------------------------------
    async def wallet(self) -> Decimal | None:
        row = await self.db.fetchone("SELECT wallet_balance FROM paper_account WHERE id = 1")
        return None if row is None else Decimal(row["wallet_balance"])

    async def positions(self) -> dict[str, PaperPosition]:
        rows = await self.db.fetchall("SELECT * FROM paper_positions")
        return {r["symbol"]: _position(r) for r in rows}

    async def symbol_configs(self) -> dict[str, SymbolConfig]:
        rows = await self.db.fetchall("SELECT * FROM paper_symbol_config")
        return {r["symbol"]: SymbolConfig(r["symbol"], int(r["leverage"]), MarginType(r["margin_type"]))
                for r in rows}

    async def orders_with_status(self, statuses: tuple[str, ...]) -> list[PaperOrder]:
        marks = ",".join("?" * len(statuses))
        rows = await self.db.fetchall(
            f"SELECT * FROM paper_orders WHERE status IN ({marks}) AND close_position = 1 "
            "ORDER BY created_at, CAST(exchange_id AS INTEGER)", statuses)
        return [_order(r) for r in rows]

    async def cursors(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT symbol, last_ms FROM paper_cursor")
        return {r["symbol"]: int(r["last_ms"]) for r in rows}

    async def max_exchange_id(self) -> int:
        """Highest id handed out so far: orders, their triggered orders and liquidation orders."""
        row = await self.db.fetchone(
            "SELECT MAX(m) AS m FROM ("
            "SELECT MAX(CAST(exchange_id AS INTEGER)) AS m FROM paper_orders UNION ALL "
            "SELECT MAX(CAST(triggered_order_id AS INTEGER)) FROM paper_orders UNION ALL "
            "SELECT MAX(CAST(order_id AS INTEGER)) FROM paper_fills)")
        return int(row["m"]) if row is not None and row["m"] is not None else 0

    # --- queries -------------------------------------------------------------------------------
    async def order(self, client_id: str) -> PaperOrder | None:
        row = await self.db.fetchone("SELECT * FROM paper_orders WHERE client_id = ?", (client_id,))
        return None if row is None else _order(row)

    async def fills(self, symbol: str, start: datetime) -> list[PaperFill]:
        rows = await self.db.fetchall(
            "SELECT * FROM paper_fills WHERE symbol = ? AND time >= ? ORDER BY time, id", (symbol, iso(start)))
        return [PaperFill(r["id"], r["order_id"], r["client_id"], r["symbol"], Side(r["side"]),
                          Decimal(r["price"]), Decimal(r["quantity"]), Decimal(r["fee"]),
                          Decimal(r["realized_pnl"]), parse_iso(r["time"])) for r in rows]

    async def funding(self, symbol: str, start: datetime) -> list[PaperFunding]:
        rows = await self.db.fetchall(
            "SELECT * FROM paper_funding WHERE symbol = ? AND funding_time >= ? ORDER BY funding_time",
            (symbol, iso(start)))
        return [PaperFunding(r["symbol"], parse_iso(r["funding_time"]), Decimal(r["rate"]),
                             Decimal(r["amount"])) for r in rows]

    # --- writes (inside the caller's transaction) ------------------------------------------------
    @staticmethod
    async def create_account(conn: aiosqlite.Connection, balance: Decimal, now: datetime) -> None:
        await conn.execute(
            "INSERT OR IGNORE INTO paper_account(id, wallet_balance, created_at, updated_at) VALUES (1, ?, ?, ?)",
            (str(balance), iso(now), iso(now)))

    @staticmethod
    async def set_wallet(conn: aiosqlite.Connection, balance: Decimal, now: datetime) -> None:
        await conn.execute("UPDATE paper_account SET wallet_balance = ?, updated_at = ? WHERE id = 1",
                           (str(balance), iso(now)))

    @staticmethod
    async def save_position(conn: aiosqlite.Connection, p: PaperPosition) -> None:
        await conn.execute(
            "INSERT INTO paper_positions(symbol, side, quantity, entry_price, leverage, margin_type, "
            "isolated_margin, opened_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET side = excluded.side, quantity = excluded.quantity, "
            "entry_price = excluded.entry_price, leverage = excluded.leverage, "
            "margin_type = excluded.margin_type, isolated_margin = excluded.isolated_margin, "
            "opened_at = excluded.opened_at, updated_at = excluded.updated_at",
            (p.symbol, p.side.value, str(p.quantity), str(p.entry_price), p.leverage, p.margin_type.value,
             str(p.isolated_margin), iso(p.opened_at), iso(p.updated_at)))

    @staticmethod
    async def delete_position(conn: aiosqlite.Connection, symbol: str) -> None:
        await conn.execute("DELETE FROM paper_positions WHERE symbol = ?", (symbol,))

    @staticmethod
    async def save_symbol_config(conn: aiosqlite.Connection, c: SymbolConfig) -> None:
        await conn.execute(
            "INSERT INTO paper_symbol_config(symbol, leverage, margin_type) VALUES (?, ?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET leverage = excluded.leverage, margin_type = excluded.margin_type",
            (c.symbol, c.leverage, c.margin_type.value))

    @staticmethod
    async def insert_order(conn: aiosqlite.Connection, o: PaperOrder) -> None:
        await conn.execute(
            "INSERT INTO paper_orders(client_id, exchange_id, symbol, side, order_type, quantity, trigger_price, "
            "reduce_only, close_position, status, filled_quantity, avg_price, fee, triggered_order_id, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (o.client_id, o.exchange_id, o.symbol, o.side.value, o.order_type,
             None if o.quantity is None else str(o.quantity),
             None if o.trigger_price is None else str(o.trigger_price), int(o.reduce_only),
             int(o.close_position), o.status, str(o.filled_quantity), str(o.avg_price), str(o.fee),
             o.triggered_order_id, iso(o.created_at), iso(o.updated_at)))

    @staticmethod
    async def update_order_status(conn: aiosqlite.Connection, client_id: str, status: str, now: datetime,
                                  triggered_order_id: str | None = None) -> None:
        await conn.execute(
            "UPDATE paper_orders SET status = ?, updated_at = ?, "
            "triggered_order_id = COALESCE(?, triggered_order_id) WHERE client_id = ?",
            (status, iso(now), triggered_order_id, client_id))

    @staticmethod
    async def insert_fill(conn: aiosqlite.Connection, *, order_id: str, client_id: str | None, symbol: str,
                          side: Side, price: Decimal, quantity: Decimal, fee: Decimal, realized_pnl: Decimal,
                          time: datetime) -> int:
        cur = await conn.execute(
            "INSERT INTO paper_fills(order_id, client_id, symbol, side, price, quantity, fee, realized_pnl, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (order_id, client_id, symbol, side.value, str(price), str(quantity), str(fee), str(realized_pnl),
             iso(time)))
        return int(cur.lastrowid or 0)

    @staticmethod
    async def insert_funding(conn: aiosqlite.Connection, symbol: str, funding_time: datetime, rate: Decimal,
                             amount: Decimal) -> bool:
        """Record a funding payment; ``False`` (nothing written) if that one was already recorded."""
        cur = await conn.execute(
            "INSERT OR IGNORE INTO paper_funding(symbol, funding_time, rate, amount) VALUES (?, ?, ?, ?)",
            (symbol, iso(funding_time), str(rate), str(amount)))
        return cur.rowcount == 1

    @staticmethod
    async def set_cursor(conn: aiosqlite.Connection, symbol: str, last_ms: int) -> None:
        await conn.execute(
            "INSERT INTO paper_cursor(symbol, last_ms) VALUES (?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET last_ms = excluded.last_ms", (symbol, last_ms))
