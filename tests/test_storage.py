"""Storage: migrations on empty and existing databases, refusal of corrupt/newer files, repositories."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from storage.db import Database, DatabaseError
from storage.migrations import MIGRATIONS
from storage.records import OrderPurpose, OrderState, TradeStatus
from storage.repositories import Repositories

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def test_migrates_an_empty_database_to_latest(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    async with Database(path) as db:
        assert await db.schema_version() == len(MIGRATIONS)
        row = await db.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"trades", "orders", "fills", "funding", "equity_snapshots", "state", "events"} <= tables


async def test_existing_database_keeps_data_and_is_not_remigrated(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    async with Database(path) as db:
        await Repositories(db).state.set("k", {"a": 1}, NOW)
    async with Database(path) as db:
        assert await Repositories(db).state.get("k") == {"a": 1}
        rows = await db.fetchall("SELECT version FROM schema_version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


async def test_partial_old_version_is_migrated_forward(tmp_path: Path, monkeypatch):
    import storage.db as dbmod

    path = tmp_path / "v.sqlite3"
    monkeypatch.setattr(dbmod, "MIGRATIONS", MIGRATIONS[:1])
    async with Database(path) as db:
        await Repositories(db).state.set("kept", 1, NOW)
    extra = "CREATE TABLE extra_probe (id INTEGER PRIMARY KEY)"
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*MIGRATIONS[:1], extra])
    async with Database(path) as db:
        assert await db.schema_version() == 2
        assert await Repositories(db).state.get("kept") == 1
        await db.execute("INSERT INTO extra_probe(id) VALUES (1)")


async def test_newer_schema_is_refused_and_file_untouched(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    async with Database(path):
        pass
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version(version, applied_at) VALUES (99, 'x')")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="newer than this Vigil"):
        await Database(path).open()
    assert path.read_bytes() == before


async def test_corrupt_file_is_refused_and_untouched(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="not an SQLite database"):
        await Database(path).open()
    assert path.read_bytes() == before


async def test_damaged_sqlite_pages_are_refused(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    async with Database(path) as db:
        for i in range(200):
            await Repositories(db).state.set(f"k{i}", "x" * 200, NOW)
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    for i in range(4096 * 2, min(len(data), 4096 * 4)):
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError):
        await Database(path).open()


async def test_order_intent_is_idempotent_and_updates(tmp_path: Path):
    async with Database(tmp_path / "v.sqlite3") as db:
        repos = Repositories(db)
        trade = await repos.trades.create(mode="paper", symbol="BTCUSDT", side="LONG", quantity=Decimal("0.01"),
                                          stop_price=Decimal("90"), take_profit_price=Decimal("120"), leverage=3,
                                          score=0.7, votes=["t:LONG:0.70"], now=NOW)
        assert trade.status is TradeStatus.PENDING
        kwargs = dict(client_id="vgab-1-E1", trade_id=trade.id, mode="paper", symbol="BTCUSDT",
                      purpose=OrderPurpose.ENTRY, side="BUY", order_type="MARKET", quantity=Decimal("0.01"),
                      trigger_price=None, reduce_only=False, now=NOW)
        first = await repos.orders.record_intent(**kwargs)
        second = await repos.orders.record_intent(**kwargs)
        assert first.id == second.id and first.status is OrderState.INTENT
        assert [o.client_id for o in await repos.orders.unresolved("paper")] == ["vgab-1-E1"]
        await repos.orders.update("vgab-1-E1", status=OrderState.FILLED, now=NOW, exchange_id="77",
                                  filled_quantity=Decimal("0.01"), avg_price=Decimal("100.5"), fee=Decimal("0.0005"))
        order = await repos.orders.get("vgab-1-E1")
        assert order.status is OrderState.FILLED and order.avg_price == Decimal("100.5")
        assert await repos.orders.unresolved("paper") == []


async def test_trade_lifecycle_and_modes_do_not_mix(tmp_path: Path):
    async with Database(tmp_path / "v.sqlite3") as db:
        repos = Repositories(db)
        t = await repos.trades.create(mode="paper", symbol="ETHUSDT", side="SHORT", quantity=Decimal("1"),
                                      stop_price=Decimal("110"), take_profit_price=None, leverage=2, score=None,
                                      votes=[], now=NOW)
        await repos.trades.mark_open(t.id, entry_price=Decimal("100"), quantity=Decimal("1"),
                                     stop_price=Decimal("110"), take_profit_price=Decimal("85"),
                                     liquidation_price=Decimal("149"), fee=Decimal("0.05"), now=NOW)
        assert [x.id for x in await repos.trades.active("paper")] == [t.id]
        assert await repos.trades.active("live") == []
        closed = await repos.trades.close(t.id, exit_price=Decimal("85"), reason="take_profit",
                                          realized_pnl=Decimal("15"), fees=Decimal("0.0925"), funding=Decimal("-0.01"),
                                          closed_at=NOW)
        assert closed.status is TradeStatus.CLOSED
        assert closed.net_pnl == Decimal("14.8975")
        assert await repos.trades.active("paper") == []


async def test_instance_id_is_stable(tmp_path: Path):
    path = tmp_path / "v.sqlite3"
    async with Database(path) as db:
        first = await Repositories(db).state.instance_id(NOW)
    async with Database(path) as db:
        assert await Repositories(db).state.instance_id(NOW) == first
    assert len(first) == 4
