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
