"""What the trader remembers about trades beyond the trades table, persisted in the ``state`` table:
exit-management state per open trade (best/worst price, partials done), the entry context (ATR, regime)
and the closed-trade outcomes that adaptive sizing and stops learn from. Keys carry the mode, so paper
and live never mix (invariant 5)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.policy.adaptive import TradeOutcome
from engine.policy.exits import PositionState
from storage.repositories import StateRepository

MAX_OUTCOMES = 500


class TradeMemory:
    def __init__(self, state: StateRepository, mode: str) -> None:
        self.state = state
        self.mode = mode
        self._outcomes: list[TradeOutcome] | None = None
        self._exit_states: dict[int, PositionState | None] = {}  # write-through cache

    def _key(self, kind: str, trade_id: int | None = None) -> str:
        return f"{kind}:{self.mode}" + ("" if trade_id is None else f":{trade_id}")

    async def exit_state(self, trade_id: int) -> PositionState | None:
        if trade_id not in self._exit_states:
            raw = await self.state.get(self._key("exit", trade_id))
            self._exit_states[trade_id] = None if raw is None else PositionState.from_dict(raw)
        return self._exit_states[trade_id]

    async def save_exit_state(self, state: PositionState, now: datetime) -> None:
        await self.state.set(self._key("exit", state.trade_id), state.to_dict(), now)
        self._exit_states[state.trade_id] = state

    async def entry_context(self, trade_id: int) -> dict[str, Any]:
        return dict(await self.state.get(self._key("entry", trade_id), {}) or {})

    async def save_entry_context(self, trade_id: int, *, atr: Decimal, regime: str, now: datetime) -> None:
        await self.state.set(self._key("entry", trade_id), {"atr": str(atr), "regime": regime}, now)

    async def forget(self, trade_id: int) -> None:
        self._exit_states.pop(trade_id, None)
        await self.state.delete(self._key("exit", trade_id))
        await self.state.delete(self._key("entry", trade_id))

    async def outcomes(self) -> list[TradeOutcome]:
        if self._outcomes is None:
            raw = await self.state.get(self._key("outcomes"), []) or []
            self._outcomes = [TradeOutcome.from_dict(r) for r in raw]
        return list(self._outcomes)

    async def add_outcome(self, outcome: TradeOutcome, now: datetime) -> None:
        outcomes = (await self.outcomes() + [outcome])[-MAX_OUTCOMES:]
        self._outcomes = outcomes
        await self.state.set(self._key("outcomes"), [o.to_dict() for o in outcomes], now)
