"""A throw-away SQLite database for replays: the same schema and SQL as ``Database``, run in the event-loop thread.

``Database`` talks to SQLite through aiosqlite, which hands every statement to a worker thread and wakes the loop
with the answer: right for the live bot (a slow disk never blocks the loop), but in a replay of thousands of steps
the hand-offs cost more CPU than the SQL. A replay database is thrown away at the end, so this one also drops
durability (``synchronous=OFF``, journal in memory): a crash loses nothing anyone keeps. For the same reason it
commits once, when it is closed: the whole run is one SQLite transaction, and each ``transaction()`` is a savepoint
inside it (atomic as before: an error rolls back to the savepoint), so a step's writes stay in SQLite's page cache
instead of being written to the file statement by statement. Never use it for the live database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from storage.db import Database


class InlineCursor:
    """The awaited part of ``aiosqlite.Cursor`` over a plain ``sqlite3.Cursor``."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    async def fetchall(self) -> list[sqlite3.Row]:
        return self._cur.fetchall()

    async def fetchone(self) -> sqlite3.Row | None:
        return self._cur.fetchone()  # type: ignore[no-any-return]

    async def close(self) -> None:
        self._cur.close()


class _Statement:
    """What ``InlineConnection.execute`` returns: awaitable, or usable as ``async with`` (as aiosqlite's is)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: InlineCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._result().__await__()

    async def _result(self) -> InlineCursor:
        return self._cursor

    async def __aenter__(self) -> InlineCursor:
        return self._cursor

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._cursor.close()


class InlineConnection:
    """The subset of ``aiosqlite.Connection`` the repositories use, executed synchronously in the caller's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def row_factory(self) -> Any:
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._conn.row_factory = factory

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Statement:
        return _Statement(InlineCursor(self._conn.execute(sql, params)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> InlineCursor:
        return InlineCursor(self._conn.executemany(sql, rows))

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()


class ScratchDatabase(Database):
    """``Database`` for a throw-away replay file: statements run inline, no fsync, rollback journal in memory."""

    async def _connect(self, path: Path) -> Any:
        conn = InlineConnection(sqlite3.connect(path))
        await conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        await conn.execute("PRAGMA journal_mode=MEMORY")
        await conn.execute("PRAGMA synchronous=OFF")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("BEGIN")  # the run's one transaction, committed by ``close``
        return conn

    # ``Database.transaction`` as a savepoint of the run's transaction: the same atomicity, no commit
    async def _begin(self, conn: Any) -> None:
        await conn.execute("SAVEPOINT tx")

    async def _commit(self, conn: Any) -> None:
        await conn.execute("RELEASE tx")

    async def _rollback(self, conn: Any) -> None:
        await conn.execute("ROLLBACK TO tx")
        await conn.execute("RELEASE tx")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement (no savepoint needed: SQLite undoes a failed statement by itself); lastrowid."""
        async with self._write_lock:
            cur = await self.conn.execute(sql, params)
            return cur.lastrowid or 0

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.commit()  # everything the run wrote, in one go
        await super().close()
