"""Telegram-side tables: the persistent notification queue, confirmations and per-category notify levels.

The queue is what makes notifications survive a Telegram outage, a flood limit or a restart: a row is
written when the event happens and marked SENT only after Telegram accepted it (delivery is therefore
at-least-once; a crash between the send and the mark can repeat one message).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.db import Database

PENDING, SENT, FAILED = "PENDING", "SENT", "FAILED"


@dataclass(frozen=True, slots=True)
class QueuedNotification:
    id: int
    chat_id: int
    kind: str
    text: str
    silent: bool
    attempts: int
    created_at: datetime


class NotificationQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, rows: list[tuple[int, str, str, bool]], now: datetime) -> None:
        """Append ``(chat_id, kind, text, silent)`` rows in one transaction, keeping their order."""
        if rows:
            await self.db.executemany(
                "INSERT INTO notification_queue(chat_id, kind, text, silent, created_at) VALUES (?,?,?,?,?)",
                [(chat, kind, text, int(silent), now.isoformat()) for chat, kind, text, silent in rows])

    async def next_pending(self, skip_chats: Collection[int] = ()) -> QueuedNotification | None:
        """The oldest pending message, leaving out the chats in ``skip_chats`` (not reachable yet)."""
        skip = sorted({int(c) for c in skip_chats})
        where = f" AND chat_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        row = await self.db.fetchone(
            "SELECT id, chat_id, kind, text, silent, attempts, created_at FROM notification_queue"
            f" WHERE status = 'PENDING'{where} ORDER BY id LIMIT 1", skip)
        if row is None:
            return None
        return QueuedNotification(row[0], row[1], row[2], row[3], bool(row[4]), row[5],
                                  datetime.fromisoformat(row[6]))

    async def mark_sent(self, item_id: int, now: datetime) -> None:
        await self.db.execute("UPDATE notification_queue SET status='SENT', sent_at=?, attempts=attempts+1"
                              " WHERE id=?", (now.isoformat(), item_id))

    async def mark_failed(self, item_id: int, error: str) -> None:
        """Give up on one message (Telegram refused it for good) so it cannot block the ones after it."""
        await self.db.execute("UPDATE notification_queue SET status='FAILED', last_error=?, attempts=attempts+1"
                              " WHERE id=?", (error[:500], item_id))

    async def record_attempt(self, item_id: int, error: str) -> None:
        await self.db.execute("UPDATE notification_queue SET attempts=attempts+1, last_error=? WHERE id=?",
                              (error[:500], item_id))

    async def pending_count(self, chat_id: int | None = None) -> int:
        where, params = (" AND chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        row = await self.db.fetchone(f"SELECT COUNT(*) FROM notification_queue WHERE status='PENDING'{where}", params)
        return int(row[0]) if row else 0

    async def prune(self, older_than: datetime) -> None:
        """Forget delivered messages after a while (failed ones are kept for inspection)."""
        await self.db.execute("DELETE FROM notification_queue WHERE status='SENT' AND sent_at < ?",
                              (older_than.isoformat(),))


@dataclass(frozen=True, slots=True)
class Confirmation:
    token: str
    user_id: int
    chat_id: int
    message_id: int | None
    action: str
    args: dict[str, str]
    summary: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    outcome: str | None


class ConfirmationRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, *, token: str, user_id: int, chat_id: int, action: str, args: dict[str, str],
                     summary: str, now: datetime, ttl: timedelta) -> Confirmation:
        await self.db.execute(
            "INSERT INTO confirmations(token, user_id, chat_id, action, args, summary, created_at, expires_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (token, user_id, chat_id, action, json.dumps(args, sort_keys=True), summary, now.isoformat(),
             (now + ttl).isoformat()))
        found = await self.get(token)
        assert found is not None
        return found

    async def attach_message(self, token: str, message_id: int) -> None:
        await self.db.execute("UPDATE confirmations SET message_id=? WHERE token=?", (message_id, token))

    async def get(self, token: str) -> Confirmation | None:
        row = await self.db.fetchone("SELECT * FROM confirmations WHERE token = ?", (token,))
        return None if row is None else _confirmation(row)

    async def claim(self, token: str, outcome: str, now: datetime) -> bool:
        """Mark the confirmation used, atomically; ``False`` if it was already used (single use)."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE confirmations SET used_at=?, outcome=? WHERE token=? AND used_at IS NULL",
                (now.isoformat(), outcome, token))
            return cur.rowcount == 1

    async def set_outcome(self, token: str, outcome: str) -> None:
        await self.db.execute("UPDATE confirmations SET outcome=? WHERE token=?", (outcome[:500], token))

    async def prune(self, older_than: datetime) -> None:
        await self.db.execute("DELETE FROM confirmations WHERE expires_at < ?", (older_than.isoformat(),))


class NotifierSettingsRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> dict[str, str]:
        rows = await self.db.fetchall("SELECT category, level FROM notifier_settings")
        return {r[0]: r[1] for r in rows}

    async def set(self, category: str, level: str, now: datetime) -> None:
        await self.db.execute(
            "INSERT INTO notifier_settings(category, level, updated_at) VALUES (?,?,?)"
            " ON CONFLICT(category) DO UPDATE SET level=excluded.level, updated_at=excluded.updated_at",
            (category, level, now.isoformat()))


def _confirmation(row: Any) -> Confirmation:
    return Confirmation(
        token=row["token"], user_id=row["user_id"], chat_id=row["chat_id"], message_id=row["message_id"],
        action=row["action"], args=json.loads(row["args"]), summary=row["summary"],
        created_at=datetime.fromisoformat(row["created_at"]), expires_at=datetime.fromisoformat(row["expires_at"]),
        used_at=None if row["used_at"] is None else datetime.fromisoformat(row["used_at"]), outcome=row["outcome"])
