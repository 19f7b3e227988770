"""Every recorded vote and, once known, its outcome (table ``votes``, one row per scan, symbol and voter).

A scan records the symbols where at least one voter was not FLAT, and every symbol a trade was opened on: each
voter's direction, confidence and reason, the consensus of the panel, the regime, the entry price and stop ATR the
outcome is measured from, why it did or did not trade, and the trade id. The outcome job fills ``outcome``,
``outcome_r`` and ``resolved_at`` for the non-FLAT rows; the weights and ``/model`` read them back; ``/why``
reads the latest scan of a symbol. Rows older than the retention are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.enums import VoterKind
from storage.db import Database

COLUMNS = ("scan_time", "symbol", "candle_ms", "voter", "direction", "confidence", "reason", "consensus", "score",
           "regime", "price", "stop_atr", "decision", "trade_id", "voter_kind")


@dataclass(frozen=True, slots=True)
class VoteRow:
    """One voter's vote on one symbol at one scan, with the context of the whole panel."""

    scan_time: datetime
    symbol: str
    candle_ms: int            # open time of the entry-timeframe candle whose close is ``price``
    voter: str
    direction: int            # -1 short, 0 flat, 1 long
    confidence: float
    reason: str
    consensus: int            # the panel's direction
    score: float
    regime: str | None
    price: float
    stop_atr: float
    decision: str             # why it traded or did not
    trade_id: int | None = None
    voter_kind: VoterKind = VoterKind.RULE

    def values(self) -> tuple[object, ...]:
        return (self.scan_time.isoformat(), self.symbol, self.candle_ms, self.voter, self.direction,
                self.confidence, self.reason, self.consensus, self.score, self.regime, self.price, self.stop_atr,
                self.decision, self.trade_id, str(self.voter_kind))


@dataclass(frozen=True, slots=True)
class StoredVote:
    row: VoteRow
    id: int
    outcome: str | None
    outcome_r: float | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A (symbol, candle, side) whose outcome is not known yet: every vote on that side shares it."""

    symbol: str
    candle_ms: int
    direction: int
    price: float
    stop_atr: float
    first_scan: datetime


@dataclass(frozen=True, slots=True)
class ResolvedRow:
    voter: str
    regime: str | None
    confidence: float
    outcome: str
    outcome_r: float
    scan_time: datetime

    @property
    def won(self) -> bool:
        """As the labels count it: the take-profit came first and paid the round-trip cost."""
        return self.outcome == "tp" and self.outcome_r > 0


def _stored(r: object) -> StoredVote:
    row = VoteRow(datetime.fromisoformat(r["scan_time"]), r["symbol"], int(r["candle_ms"]), r["voter"],
                  int(r["direction"]), float(r["confidence"]), r["reason"], int(r["consensus"]), float(r["score"]),
                  r["regime"], float(r["price"]), float(r["stop_atr"]), r["decision"], r["trade_id"],
                  VoterKind(r["voter_kind"]))
    return StoredVote(row, int(r["id"]), r["outcome"], r["outcome_r"],
                      datetime.fromisoformat(r["resolved_at"]) if r["resolved_at"] else None)


class VoteRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, rows: Sequence[VoteRow]) -> None:
        if rows:
            await self.db.executemany(
                f"INSERT INTO votes({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [r.values() for r in rows])

    async def latest(self, symbol: str) -> list[StoredVote]:
        """The votes of the latest recorded scan of ``symbol`` (empty when it was never recorded)."""
        rows = await self.db.fetchall(
            "SELECT * FROM votes WHERE symbol = ? AND scan_time = (SELECT MAX(scan_time) FROM votes WHERE symbol = ?)"
            " ORDER BY id", (symbol, symbol))
        return [_stored(r) for r in rows]

    async def pending(self, limit: int = 1_000) -> list[PendingEntry]:
        """Unresolved non-FLAT entries, oldest first."""
        rows = await self.db.fetchall(
            "SELECT symbol, candle_ms, direction, MIN(price), MIN(stop_atr), MIN(scan_time) FROM votes"
            " WHERE outcome IS NULL AND direction != 0 GROUP BY symbol, candle_ms, direction"
            " ORDER BY MIN(scan_time) LIMIT ?", (limit,))
        return [PendingEntry(r[0], int(r[1]), int(r[2]), float(r[3]), float(r[4]), datetime.fromisoformat(r[5]))
                for r in rows]

    async def resolve(self, entry: PendingEntry, outcome: str, r: float | None, now: datetime) -> int:
        """Store the outcome of every vote on that side of that candle; the number of votes it resolved."""
        return await self._write(
            "UPDATE votes SET outcome = ?, outcome_r = ?, resolved_at = ? WHERE symbol = ? AND candle_ms = ?"
            " AND direction = ? AND outcome IS NULL",
            (outcome, r, now.isoformat(), entry.symbol, entry.candle_ms, entry.direction))

    async def resolved(self, *, kind: VoterKind | None = None, limit: int | None = None) -> list[ResolvedRow]:
        """Decided votes (take-profit, stop or time-out; not void) of voters of ``kind`` (any when None), oldest
        first; with ``limit`` the newest ones."""
        sql = ("SELECT voter, regime, confidence, outcome, outcome_r, scan_time FROM votes"
               " WHERE outcome IN ('tp', 'sl', 'timeout')")
        params: list[object] = []
        if kind is not None:
            sql += " AND voter_kind = ?"
            params.append(str(kind))
        sql += " ORDER BY scan_time DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self.db.fetchall(sql, params)
        return [ResolvedRow(r[0], r[1], float(r[2]), r[3], float(r[4]), datetime.fromisoformat(r[5]))
                for r in reversed(rows)]

    async def recent_per_voter_regime(self, window: int) -> list[ResolvedRow]:
        """The newest ``window`` decided votes of each (voter, regime) with a known regime, oldest first: what the
        learned weights are computed from (``strategies.weights.learn_weights``)."""
        rows = await self.db.fetchall(
            "SELECT voter, regime, confidence, outcome, outcome_r, scan_time FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY voter, regime ORDER BY scan_time DESC, id DESC) AS n"
            " FROM votes WHERE outcome IN ('tp', 'sl', 'timeout') AND regime IS NOT NULL)"
            " WHERE n <= ? ORDER BY scan_time, id", (window,))
        return [ResolvedRow(r[0], r[1], float(r[2]), r[3], float(r[4]), datetime.fromisoformat(r[5])) for r in rows]

    async def resolved_counts(self) -> list[tuple[str, str, int, int]]:
        """``(voter, regime, decided votes, wins)`` over every kept vote with a known regime."""
        rows = await self.db.fetchall(
            "SELECT voter, regime, COUNT(*), SUM(outcome = 'tp' AND outcome_r > 0) FROM votes"
            " WHERE outcome IN ('tp', 'sl', 'timeout') AND regime IS NOT NULL GROUP BY voter, regime")
        return [(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Delete votes scanned before ``before``; the number deleted."""
        return await self._write("DELETE FROM votes WHERE scan_time < ?", (before.isoformat(),))

    async def _write(self, sql: str, params: Sequence[object]) -> int:
        async with self.db.transaction() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM votes")
        return int(row[0]) if row else 0
