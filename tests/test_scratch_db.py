"""The replay's throw-away database: same schema and repositories as ``Database``, no durability, inline SQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.migrations import MIGRATIONS
from storage.repositories import Repositories
from storage.scratch_db import ScratchDatabase

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def test_scratch_database_is_migrated_and_not_durable(tmp_path: Path):
    path = tmp_path / "replay.sqlite3"
    async with ScratchDatabase(path) as db:
        assert await db.schema_version() == len(MIGRATIONS)
        assert (await db.fetchone("PRAGMA synchronous"))[0] == 0  # OFF
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "memory"
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1
        repos = Repositories(db)
        await repos.state.set("heartbeat", {"n": 1}, NOW)
        await repos.state.set("heartbeat", {"n": 2}, NOW)
        assert await repos.state.get("heartbeat") == {"n": 2}
    rows = sqlite3.connect(path).execute("SELECT value FROM state WHERE key='heartbeat'").fetchall()
    assert len(rows) == 1


async def test_scratch_transaction_rolls_back_on_error(tmp_path: Path):
    async with ScratchDatabase(tmp_path / "replay.sqlite3") as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                cur = await conn.execute("INSERT INTO state(key, value, updated_at) VALUES ('x', '1', ?)",
                                         (NOW.isoformat(),))
                assert cur.rowcount == 1
                raise RuntimeError("boom")
        assert await db.fetchone("SELECT value FROM state WHERE key='x'") is None
        row_id = await db.execute("INSERT INTO state(key, value, updated_at) VALUES ('y', '2', ?)",
                                  (NOW.isoformat(),))
        assert row_id > 0
        rows = await db.fetchall("SELECT key FROM state WHERE key IN ('x', 'y')")
        assert [r["key"] for r in rows] == ["y"]


async def test_scratch_failed_statement_undoes_only_itself_and_the_run_is_committed_on_close(tmp_path: Path):
    path = tmp_path / "replay.sqlite3"
    async with ScratchDatabase(path) as db:
        await db.execute("INSERT INTO state(key, value, updated_at) VALUES ('a', '1', ?)", (NOW.isoformat(),))
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute("INSERT INTO state(key, value, updated_at) VALUES ('a', '2', ?)", (NOW.isoformat(),))
        await db.execute("INSERT INTO state(key, value, updated_at) VALUES ('b', '3', ?)", (NOW.isoformat(),))
        async with db.transaction() as conn:  # a savepoint of the run's transaction: kept when it succeeds
            await conn.execute("INSERT INTO state(key, value, updated_at) VALUES ('c', '4', ?)", (NOW.isoformat(),))
    rows = sqlite3.connect(path).execute("SELECT key, value FROM state WHERE key IN ('a', 'b', 'c') ORDER BY key")
    assert rows.fetchall() == [("a", "1"), ("b", "3"), ("c", "4")]
