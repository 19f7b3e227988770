"""The repositories' read caches (``storage.db.ReadCache``): a read is answered without SQL until a write through any
repository over the same database changes what it would return."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from storage.db import Database, ReadCache
from storage.records import OrderPurpose, OrderState
from storage.repositories import Repositories
from storage.scratch_db import ScratchDatabase

NOW = datetime(2025, 1, 2, tzinfo=UTC)


def trace(db: Database) -> list[str]:
    """Every SQL statement the (inline) connection runs from now on."""
    statements: list[str] = []
    db.conn._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    return statements


async def test_state_reads_are_cached_until_a_write_through_any_repository(tmp_path: Path) -> None:
    db = await ScratchDatabase(tmp_path / "s.sqlite3").open()
    try:
        bot, trader = Repositories(db), Repositories(db)
        assert await trader.state.get("halts") is None
        sql = trace(db)
        assert await trader.state.get("halts", {}) == {}  # a known-absent key: no query either
        await bot.state.set("halts", {"paused": True}, NOW)
        value = await trader.state.get("halts")
        assert value == {"paused": True}
        value["paused"] = False  # the caller's copy: the cache keeps the stored text
        assert await trader.state.get("halts") == {"paused": True}
        await bot.state.set("monitor_heartbeat", NOW.isoformat(), NOW)  # another key leaves this one cached
        reads = [s for s in sql if s.startswith("SELECT")]
        assert reads == ["SELECT value FROM state WHERE key = 'halts'"]
        await bot.state.delete("halts")
        assert await trader.state.get("halts", "none") == "none"
    finally:
        await db.close()


async def test_a_new_connection_reads_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    async with Database(path) as db:
        await Repositories(db).state.set("k", [1, 2], NOW)
        assert await Repositories(db).state.get("k") == [1, 2]
    async with Database(path) as db:
        assert await Repositories(db).state.get("k") == [1, 2]


def test_a_read_that_straddles_a_write_is_not_kept() -> None:
    cache = ReadCache()
    version = cache.version   # a read starts ...
    cache.clear("k")          # ... a write begins meanwhile ...
    cache.store("k", "old", version)
    assert "k" not in cache.values
    cache.store("k", "new", cache.version)
    assert cache.values == {"k": "new"}
    cache.clear()
    assert cache.values == {}


async def test_active_trades_and_open_orders_are_cached_until_written(tmp_path: Path) -> None:
    db = await ScratchDatabase(tmp_path / "t.sqlite3").open()
    try:
        repos, other = Repositories(db), Repositories(db)
        assert await repos.trades.active("paper") == []
        trade = await other.trades.create(mode="paper", symbol="BTCUSDT", side="LONG", quantity=Decimal("0.01"),
                                          stop_price=Decimal("90"), take_profit_price=None, leverage=3, score=0.7,
                                          votes=[], now=NOW)
        active = await repos.trades.active("paper")
        assert [t.id for t in active] == [trade.id]
        active.clear()  # the caller's list
        await other.orders.record_intent(client_id="c-1", trade_id=trade.id, mode="paper", symbol="BTCUSDT",
                                         purpose=OrderPurpose.ENTRY, side="BUY", order_type="MARKET",
                                         quantity=Decimal("0.01"), trigger_price=None, reduce_only=False, now=NOW)
        assert [o.client_id for o in await repos.orders.unresolved("paper")] == ["c-1"]
        assert [o.client_id for o in await repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)] == ["c-1"]
        sql = trace(db)
        for _ in range(3):
            assert [t.id for t in await repos.trades.active("paper")] == [trade.id]
            assert len(await repos.orders.unresolved("paper")) == 1
            assert len(await repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)) == 1
        assert not [s for s in sql if s.startswith("SELECT")]
        await other.orders.update("c-1", status=OrderState.FILLED, now=NOW)
        assert await repos.orders.unresolved("paper") == []
        assert (await repos.orders.for_trade(trade.id, OrderPurpose.ENTRY))[0].status is OrderState.FILLED
        await other.trades.mark_failed(trade.id, "test", NOW)
        assert await repos.trades.active("paper") == []
    finally:
        await db.close()
