"""Repositories: the only code that writes SQL for trades, orders, fills, funding, equity, state, events."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from storage.db import Database, ReadCache
from storage.records import (
    EquityPoint,
    OrderPurpose,
    OrderRecord,
    OrderState,
    TradeRecord,
    TradeStatus,
    text,
)
from storage.votes import VoteRepository

OPEN_STATUSES = (TradeStatus.PENDING.value, TradeStatus.OPEN.value)


class TradeRepository:
    """Trades. ``active`` is served from ``db.read_cache["trades"]`` (the monitor and the scan read it several times a
    tick, and it changes only when a trade is written): every write to ``trades`` goes through this class (over the
    same ``Database`` object, one process per database) and clears that cache (see ``StateRepository``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache = db.read_cache["trades"]

    async def create(self, *, mode: str, symbol: str, side: str, quantity: Decimal, stop_price: Decimal,
                     take_profit_price: Decimal | None, leverage: int, score: float | None,
                     votes: Sequence[str], now: datetime, status: TradeStatus = TradeStatus.PENDING,
                     entry_price: Decimal | None = None) -> TradeRecord:
        trade_id = await _write(self.db, self._cache,
            "INSERT INTO trades(mode, symbol, side, status, quantity, initial_quantity, entry_price, stop_price,"
            " initial_stop_price, take_profit_price, leverage, score, votes, opened_at, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (mode, symbol, side, status.value, str(quantity), str(quantity), text(entry_price), str(stop_price),
             str(stop_price), text(take_profit_price), leverage, score, json.dumps(list(votes)),
             now.isoformat() if status is TradeStatus.OPEN else None, now.isoformat(), now.isoformat()))
        return await self.get(trade_id)

    async def get(self, trade_id: int) -> TradeRecord:
        row = await self.db.fetchone("SELECT * FROM trades WHERE id = ?", (trade_id,))
        if row is None:
            raise KeyError(f"no trade {trade_id}")
        return TradeRecord.from_row(row)

    async def active(self, mode: str) -> list[TradeRecord]:
        """Trades that are open or whose entry is still being resolved."""
        key = ("active", mode)
        if (known := self._cache.values.get(key)) is None:
            version = self._cache.version
            rows = await self.db.fetchall(
                "SELECT * FROM trades WHERE mode = ? AND status IN (?, ?) ORDER BY id", (mode, *OPEN_STATUSES))
            known = tuple(TradeRecord.from_row(r) for r in rows)
            self._cache.store(key, known, version)
        return list(known)

    async def closed(self, mode: str, *, since: datetime | None = None, limit: int | None = None
                     ) -> list[TradeRecord]:
        sql = "SELECT * FROM trades WHERE mode = ? AND status = 'CLOSED'"
        params: list[Any] = [mode]
        if since is not None:
            sql += " AND closed_at >= ?"
            params.append(since.isoformat())
        sql += " ORDER BY closed_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self.db.fetchall(sql, params)
        return [TradeRecord.from_row(r) for r in rows]

    async def mark_open(self, trade_id: int, *, entry_price: Decimal, quantity: Decimal, stop_price: Decimal,
                        take_profit_price: Decimal | None, liquidation_price: Decimal | None, fee: Decimal,
                        now: datetime) -> TradeRecord:
        await _write(self.db, self._cache,
            "UPDATE trades SET status='OPEN', entry_price=?, quantity=?, initial_quantity=?, stop_price=?,"
            " initial_stop_price=?, take_profit_price=?, liquidation_price=?, fees=?, opened_at=?, updated_at=?"
            " WHERE id=?",
            (str(entry_price), str(quantity), str(quantity), str(stop_price), str(stop_price),
             text(take_profit_price), text(liquidation_price), str(fee), now.isoformat(), now.isoformat(),
             trade_id))
        return await self.get(trade_id)

    async def update_protection(self, trade_id: int, *, stop_price: Decimal | None = None,
                                take_profit_price: Decimal | None = None, now: datetime) -> None:
        sets: list[str] = []
        params: list[Any] = []
        if stop_price is not None:
            sets.append("stop_price=?")
            params.append(str(stop_price))
        if take_profit_price is not None:
            sets.append("take_profit_price=?")
            params.append(str(take_profit_price))
        if not sets:
            return
        params.extend([now.isoformat(), trade_id])
        await _write(self.db, self._cache, f"UPDATE trades SET {', '.join(sets)}, updated_at=? WHERE id=?", params)

    async def set_liquidation_price(self, trade_id: int, price: Decimal, now: datetime) -> None:
        await _write(self.db, self._cache, "UPDATE trades SET liquidation_price=?, updated_at=? WHERE id=?",
                              (str(price), now.isoformat(), trade_id))

    async def update_quantity(self, trade_id: int, quantity: Decimal, now: datetime) -> None:
        """Open quantity after a partial exit."""
        await _write(self.db, self._cache, "UPDATE trades SET quantity=?, updated_at=? WHERE id=?",
                              (str(quantity), now.isoformat(), trade_id))

    async def close(self, trade_id: int, *, exit_price: Decimal, reason: str, realized_pnl: Decimal,
                    fees: Decimal, funding: Decimal, closed_at: datetime) -> TradeRecord:
        await _write(self.db, self._cache,
            "UPDATE trades SET status='CLOSED', quantity='0', exit_price=?, exit_reason=?, realized_pnl=?, fees=?,"
            " funding=?, closed_at=?, updated_at=? WHERE id=?",
            (str(exit_price), reason, str(realized_pnl), str(fees), str(funding), closed_at.isoformat(),
             closed_at.isoformat(), trade_id))
        return await self.get(trade_id)

    async def mark_failed(self, trade_id: int, reason: str, now: datetime) -> None:
        await _write(self.db, self._cache,
            "UPDATE trades SET status='FAILED', quantity='0', exit_reason=?, closed_at=?, updated_at=? WHERE id=?",
            (reason, now.isoformat(), now.isoformat(), trade_id))


class OrderRepository:
    """Orders. ``for_trade`` and ``unresolved`` are served from ``db.read_cache["orders"]``, cleared by every write
    to ``orders`` (all of them go through this class; the same rule as ``TradeRepository.active``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache = db.read_cache["orders"]

    async def record_intent(self, *, client_id: str, trade_id: int | None, mode: str, symbol: str,
                            purpose: OrderPurpose, side: str, order_type: str, quantity: Decimal | None,
                            trigger_price: Decimal | None, reduce_only: bool, now: datetime,
                            reason: str | None = None) -> OrderRecord:
        """Write the order before it is sent (invariant 2). Idempotent on ``client_id``."""
        await _write(self.db, self._cache,
            "INSERT OR IGNORE INTO orders(client_id, trade_id, mode, symbol, purpose, side, order_type, quantity,"
            " trigger_price, reduce_only, status, created_at, updated_at, reason)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (client_id, trade_id, mode, symbol, purpose.value, side, order_type, text(quantity),
             text(trigger_price), int(reduce_only), OrderState.INTENT.value, now.isoformat(), now.isoformat(),
             reason))
        record = await self.get(client_id)
        assert record is not None
        return record

    async def get(self, client_id: str) -> OrderRecord | None:
        row = await self.db.fetchone("SELECT * FROM orders WHERE client_id = ?", (client_id,))
        return None if row is None else OrderRecord.from_row(row)

    async def update(self, client_id: str, *, status: OrderState, now: datetime, exchange_id: str | None = None,
                     filled_quantity: Decimal | None = None, avg_price: Decimal | None = None,
                     fee: Decimal | None = None, error: str | None = None) -> None:
        await _write(self.db, self._cache,
            "UPDATE orders SET status=?, exchange_id=COALESCE(?, exchange_id),"
            " filled_quantity=COALESCE(?, filled_quantity), avg_price=COALESCE(?, avg_price),"
            " fee=COALESCE(?, fee), error=COALESCE(?, error), updated_at=? WHERE client_id=?",
            (status.value, exchange_id, text(filled_quantity), text(avg_price), text(fee), error,
             now.isoformat(), client_id))

    async def for_trade(self, trade_id: int, purpose: OrderPurpose | None = None) -> list[OrderRecord]:
        if purpose is None:
            return await self._cached(("trade", trade_id, None), "SELECT * FROM orders WHERE trade_id = ? ORDER BY id",
                                      (trade_id,))
        return await self._cached(("trade", trade_id, purpose.value),
                                  "SELECT * FROM orders WHERE trade_id = ? AND purpose = ? ORDER BY id",
                                  (trade_id, purpose.value))

    async def unresolved(self, mode: str) -> list[OrderRecord]:
        """Orders whose outcome is not known: written but not confirmed, or explicitly unknown."""
        return await self._cached(("unresolved", mode),
                                  "SELECT * FROM orders WHERE mode = ? AND status IN ('INTENT', 'UNKNOWN') ORDER BY id",
                                  (mode,))

    async def _cached(self, key: tuple[Any, ...], sql: str, params: Sequence[Any]) -> list[OrderRecord]:
        if (known := self._cache.values.get(key)) is None:
            version = self._cache.version
            known = tuple(OrderRecord.from_row(r) for r in await self.db.fetchall(sql, params))
            self._cache.store(key, known, version)
        return list(known)

    async def open_protective(self, trade_id: int) -> list[OrderRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM orders WHERE trade_id = ? AND purpose IN ('STOP_LOSS', 'TAKE_PROFIT')"
            " AND status IN ('OPEN', 'INTENT', 'UNKNOWN') ORDER BY id", (trade_id,))
        return [OrderRecord.from_row(r) for r in rows]


class LedgerRepository:
    """Fills and funding payments attributed to trades. Duplicates (same exchange ids) are ignored."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_fill(self, *, mode: str, trade_id: int | None, order_client_id: str | None,
                       exchange_trade_id: str, symbol: str, side: str, price: Decimal, quantity: Decimal,
                       fee: Decimal, realized_pnl: Decimal, time: datetime) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO fills(mode, trade_id, order_client_id, exchange_trade_id, symbol, side, price,"
            " quantity, fee, realized_pnl, time) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (mode, trade_id, order_client_id, exchange_trade_id, symbol, side, str(price), str(quantity),
             str(fee), str(realized_pnl), time.isoformat()))

    async def fill_ids_of_other_trades(self, mode: str, symbol: str, trade_id: int, since: datetime) -> set[str]:
        """Exchange trade ids on ``symbol`` since ``since`` already booked to a trade other than ``trade_id``."""
        rows = await self.db.fetchall(
            "SELECT exchange_trade_id FROM fills WHERE mode = ? AND symbol = ? AND time >= ? AND trade_id != ?",
            (mode, symbol, since.isoformat(), trade_id))
        return {r[0] for r in rows}

    async def add_funding(self, *, mode: str, trade_id: int | None, symbol: str, amount: Decimal,
                          time: datetime) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO funding(mode, trade_id, symbol, amount, time) VALUES (?,?,?,?,?)",
            (mode, trade_id, symbol, str(amount), time.isoformat()))

    async def total_fees(self, mode: str, *, since: datetime | None = None) -> Decimal:
        return await self._sum("fills", "fee", mode, since)

    async def total_funding(self, mode: str, *, since: datetime | None = None) -> Decimal:
        return await self._sum("funding", "amount", mode, since)

    async def _sum(self, table: str, column: str, mode: str, since: datetime | None) -> Decimal:
        sql = f"SELECT {column} FROM {table} WHERE mode = ?"
        params: list[Any] = [mode]
        if since is not None:
            sql += " AND time >= ?"
            params.append(since.isoformat())
        rows = await self.db.fetchall(sql, params)
        return sum((Decimal(r[0]) for r in rows), Decimal(0))


class EquityRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, *, mode: str, time: datetime, wallet: Decimal, equity: Decimal,
                     unrealized: Decimal) -> None:
        await self.db.execute(
            "INSERT INTO equity_snapshots(mode, time, wallet, equity, unrealized) VALUES (?,?,?,?,?)",
            (mode, time.isoformat(), str(wallet), str(equity), str(unrealized)))

    async def series(self, mode: str, *, since: datetime | None = None) -> list[EquityPoint]:
        sql = "SELECT time, wallet, equity, unrealized FROM equity_snapshots WHERE mode = ?"
        params: list[Any] = [mode]
        if since is not None:
            sql += " AND time >= ?"
            params.append(since.isoformat())
        rows = await self.db.fetchall(sql + " ORDER BY time", params)
        return [EquityPoint(datetime.fromisoformat(r[0]), Decimal(r[1]), Decimal(r[2]), Decimal(r[3])) for r in rows]


class StateRepository:
    """Small JSON values under string keys: halts, mode, heartbeats, instance id.

    Reads are served from ``db.read_cache["state"]`` (the JSON text of each key read, ``None`` for a key known to be
    absent): the trader reads the halts several times a tick, and they change only when someone writes them. The
    rule that keeps it true: every write to the ``state`` table goes through ``set``/``delete`` of a repository
    over the same ``Database`` object (the cache lives on it, so every ``Repositories(db)`` shares it), and one
    process holds a database at a time (``InstanceLock``). A write drops its key before and after it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache = db.read_cache["state"]

    async def get(self, key: str, default: Any = None) -> Any:
        cache = self._cache
        if key in cache.values:
            text = cache.values[key]
        else:
            version = cache.version
            row = await self.db.fetchone("SELECT value FROM state WHERE key = ?", (key,))
            text = None if row is None else str(row[0])
            cache.store(key, text, version)
        return default if text is None else json.loads(text)

    async def set(self, key: str, value: Any, now: datetime) -> None:
        await _write(self.db, self._cache,
                     "INSERT INTO state(key, value, updated_at) VALUES (?,?,?)"
                     " ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                     (key, json.dumps(value), now.isoformat()), key)

    async def delete(self, key: str) -> None:
        await _write(self.db, self._cache, "DELETE FROM state WHERE key = ?", (key,), key)

    async def instance_id(self, now: datetime) -> str:
        """A short random id fixed for the life of this database; prefixes every client order id."""
        value = await self.get("instance_id")
        if value is None:
            alphabet = string.ascii_lowercase + string.digits
            value = "".join(secrets.choice(alphabet) for _ in range(4))
            await self.set("instance_id", value, now)
        return str(value)


class EventLogRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, *, time: datetime, kind: str, payload: dict[str, Any]) -> None:
        await self.db.execute("INSERT INTO events(time, kind, payload) VALUES (?,?,?)",
                              (time.isoformat(), kind, json.dumps(payload)))

    async def recent(self, limit: int = 50, kind: str | None = None) -> list[tuple[datetime, str, dict[str, Any]]]:
        if kind is None:
            rows = await self.db.fetchall("SELECT time, kind, payload FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self.db.fetchall(
                "SELECT time, kind, payload FROM events WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit))
        return [(datetime.fromisoformat(r[0]), r[1], json.loads(r[2])) for r in rows]


class Repositories:
    """All repositories over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.trades = TradeRepository(db)
        self.orders = OrderRepository(db)
        self.ledger = LedgerRepository(db)
        self.equity = EquityRepository(db)
        self.state = StateRepository(db)
        self.events = EventLogRepository(db)
        self.votes = VoteRepository(db)


async def _write(db: Database, cache: ReadCache, sql: str, params: Sequence[Any], key: Any = None) -> int:
    """One write statement to a table whose reads ``cache`` holds: cleared before and after (see ``ReadCache``),
    only ``key`` when the statement writes that one entry, else all of it."""
    cache.clear(key)
    try:
        return await db.execute(sql, params)
    finally:
        cache.clear(key)
