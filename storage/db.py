"""SQLite connection (aiosqlite, WAL) and forward-only schema migrations.

Start-up refuses — with a clear message, and without touching the file — a database that is not SQLite
(corrupt), or whose schema version is newer than this code knows.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from storage.migrations import MIGRATIONS

log = logging.getLogger(__name__)


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


class ReadCache:
    """Results of reads of one table, dropped by every write to it. A read stores its result only if no write
    began while it was reading (``version`` unchanged), so a read that straddles a write never leaves stale data."""

    __slots__ = ("values", "version")

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}
        self.version = 0

    def store(self, key: Any, value: Any, version: int) -> None:
        if version == self.version:
            self.values[key] = value

    def clear(self, key: Any = None) -> None:
        """Before and after every write: forget the result of ``key`` (every result when None), and any read in
        flight."""
        self.version += 1
        if key is None:
            self.values.clear()
        else:
            self.values.pop(key, None)


class Database:
    """One aiosqlite connection shared by the repositories. Writes are serialised by a lock.

    Use ``async with db.transaction() as conn:`` for several statements that must land together.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        #: the repositories' read caches, per table (``storage.repositories`` says what each holds and the rule that
        #: keeps it true); cleared on close
        self.read_cache: dict[str, ReadCache] = {"state": ReadCache(), "trades": ReadCache(), "orders": ReadCache()}

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise DatabaseError("database is not open; call await Database.open() first")
        return self._conn

    async def open(self) -> Database:
        self._check_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await self._connect(self.path)
            conn.row_factory = aiosqlite.Row
            self._conn = conn
            await self._check_integrity()
            await self._migrate()
        except DatabaseError:
            await self.close()
            raise
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise DatabaseError(
                f"{self.path} is not a usable SQLite database ({exc}). It was left untouched: "
                "restore a backup or move it aside and start again.") from None
        return self

    async def _connect(self, path: Path) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def close(self) -> None:
        for cache in self.read_cache.values():
            cache.clear()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- queries --------------------------------------------------------------------------
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; return lastrowid."""
        async with self.transaction() as conn:
            cur = await conn.execute(sql, params)
            return cur.lastrowid or 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            conn = self.conn
            await self._begin(conn)
            try:
                yield conn
            except BaseException:
                await self._rollback(conn)
                raise
            else:
                await self._commit(conn)

    async def _begin(self, conn: Any) -> None:
        await conn.execute("BEGIN IMMEDIATE")

    async def _commit(self, conn: Any) -> None:
        await conn.commit()

    async def _rollback(self, conn: Any) -> None:
        await conn.rollback()

    # --- start-up checks -----------------------------------------------------------------
    def _check_file(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as f:
            header = f.read(16)
        if header != b"SQLite format 3\x00":
            raise DatabaseError(
                f"{self.path} is not an SQLite database (bad header). It was left untouched: restore a "
                "backup, or point DB_PATH at a new file.")

    async def _check_integrity(self) -> None:
        async with self.conn.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            raise DatabaseError(
                f"{self.path} failed SQLite's integrity check ({row[0] if row else 'no answer'}). It was left "
                "untouched: restore a backup, or point DB_PATH at a new file.")

    async def schema_version(self) -> int:
        async with self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'") as cur:
            if await cur.fetchone() is None:
                return 0
        async with self.conn.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        latest = len(MIGRATIONS)
        if current > latest:
            raise DatabaseError(
                f"{self.path} has schema version {current}, newer than this Vigil understands ({latest}). "
                "It was left untouched: upgrade Vigil, or point DB_PATH at another file.")
        for version in range(current + 1, latest + 1):
            log.info("migrating %s to schema version %d", self.path, version)
            async with self.transaction() as conn:
                for statement in _statements(MIGRATIONS[version - 1]):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)",
                    (version, datetime.now(UTC).isoformat()))


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our DDL literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
