"""Every LLM call with its latency, tokens, cost and answer (table ``llm_calls``): the budget reads today's cost
back from here, ``/why`` and the evaluation read the answers, and backtests replay them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from storage.db import Database
from strategies.llm import CallStatus, LlmAnswer, LlmCall


class LlmCallRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, call: LlmCall) -> None:
        answer = call.answer
        await self.db.execute(
            "INSERT INTO llm_calls(time, provider, model, symbol, candle_ms, status, latency_ms, prompt_tokens,"
            " completion_tokens, cost_usd, side, confidence, reason, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.time.isoformat(), call.provider, call.model, call.symbol, call.candle_ms, call.status.value,
             round(call.latency_ms, 1), call.prompt_tokens, call.completion_tokens, str(call.cost_usd),
             answer.side if answer else None, answer.confidence if answer else None,
             answer.reason if answer else None, call.error))

    async def cost_since(self, since: datetime) -> Decimal:
        rows = await self.db.fetchall("SELECT cost_usd FROM llm_calls WHERE time >= ?", (since.isoformat(),))
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    async def answer_for(self, provider: str, symbol: str, candle_ms: int) -> LlmAnswer | None:
        row = await self.db.fetchone(
            "SELECT side, confidence, reason FROM llm_calls WHERE provider = ? AND symbol = ? AND candle_ms = ?"
            " AND status = ? ORDER BY id DESC LIMIT 1", (provider, symbol, candle_ms, CallStatus.OK.value))
        return None if row is None else LlmAnswer(side=row[0], confidence=row[1], reason=row[2] or "")

    async def recent(self, limit: int = 50) -> list[LlmCall]:
        rows = await self.db.fetchall(
            "SELECT time, provider, model, symbol, candle_ms, status, latency_ms, prompt_tokens, completion_tokens,"
            " cost_usd, side, confidence, reason, error FROM llm_calls ORDER BY id DESC LIMIT ?", (limit,))
        return [LlmCall(datetime.fromisoformat(r[0]), r[1], r[2], r[3], int(r[4]), CallStatus(r[5]), float(r[6]),
                        int(r[7]), int(r[8]), Decimal(r[9]),
                        LlmAnswer(side=r[10], confidence=r[11], reason=r[12] or "") if r[10] else None, r[13])
                for r in rows]
