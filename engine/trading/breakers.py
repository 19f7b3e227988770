"""The stateful side of the circuit breakers: ``engine.policy.breakers.BreakerRules`` over state persisted in
the ``state`` table as JSON under ``<key_prefix><name>`` (through any store with the ``StateRepository``
interface), loaded once and cached in memory: one ``Breakers`` per database. The rules themselves (what trips,
what resets, what blocks an entry) are in ``engine.policy.breakers``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from engine.events import Event
from engine.policy.breakers import (
    ALL_BREAKERS,
    API_ERRORS,
    CONSECUTIVE_LOSSES,
    DAILY_LOSS,
    DRAWDOWN,
    GLOBAL_BREAKERS,
    SYMBOL_BREAKERS,
    SYMBOL_COOLDOWN,
    SYMBOL_DAILY_LOSS,
    VOLATILITY,
    AccountSnapshot,
    BreakerConfig,
    BreakerResetRefused,
    BreakerRules,
    BreakerStatus,
    ClosedTrade,
    TradeResult,
)

__all__ = ["ALL_BREAKERS", "API_ERRORS", "CONSECUTIVE_LOSSES", "DAILY_LOSS", "DRAWDOWN", "GLOBAL_BREAKERS",
           "SYMBOL_BREAKERS", "SYMBOL_COOLDOWN", "SYMBOL_DAILY_LOSS", "VOLATILITY", "AccountSnapshot",
           "BreakerConfig", "BreakerResetRefused", "BreakerStatus", "Breakers", "ClosedTrade", "StateStore",
           "TradeResult"]

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """What ``storage.repositories.StateRepository`` offers."""

    async def get(self, key: str, default: Any = None) -> Any:
        ...

    async def set(self, key: str, value: Any, now: datetime) -> None:
        ...


class Breakers:
    def __init__(self, store: StateStore, config: BreakerConfig | None = None, *,
                 key_prefix: str = "breaker:") -> None:
        self.store = store
        self.config = config or BreakerConfig()
        self.key_prefix = key_prefix
        self._rules: BreakerRules | None = None

    async def rules(self) -> BreakerRules:
        if self._rules is None:
            states: dict[str, dict[str, Any]] = {}
            for name in ALL_BREAKERS:
                raw = await self.store.get(self.key_prefix + name)
                states[name] = dict(raw) if isinstance(raw, dict) else {}
            self._rules = BreakerRules(self.config, states)
        return self._rules

    async def _persist(self, now: datetime) -> None:
        rules = await self.rules()
        for name, state in rules.take_changes().items():
            await self.store.set(self.key_prefix + name, state, now)

    async def evaluate(self, snapshot: AccountSnapshot, now: datetime) -> list[Event]:
        """Update the equity- and market-driven breakers and apply every time-based reset."""
        events = (await self.rules()).evaluate(snapshot, now)
        await self._persist(now)
        return events

    async def record_trade_closed(self, result: TradeResult, now: datetime) -> list[Event]:
        """Feed a closed trade: consecutive losses, the symbol's cooldown and its daily loss."""
        events = (await self.rules()).record_trade_closed(result, now)
        await self._persist(now)
        return events

    async def record_api_error(self, now: datetime) -> list[Event]:
        """Count one failed exchange call; trips when too many fall within the window."""
        events = (await self.rules()).record_api_error(now)
        await self._persist(now)
        return events

    async def record_monitor_failure(self, streak: int, limit: int, now: datetime) -> list[Event]:
        """A monitor tick failed (``streak`` in a row); see ``BreakerRules.record_monitor_failure``."""
        events = (await self.rules()).record_monitor_failure(streak, limit, now)
        await self._persist(now)
        return events

    async def entries_blocked(self, symbol: str | None, now: datetime) -> str | None:
        """Why a new entry (on ``symbol``, or any symbol when ``None``) is refused now, or ``None``."""
        return (await self.rules()).entries_blocked(symbol, now)

    async def close_all_request(self) -> str | None:
        """The reason, when the drawdown breaker asks for every position to be closed (until done)."""
        return (await self.rules()).close_all_request()

    async def close_all_done(self, now: datetime) -> None:
        (await self.rules()).close_all_done(now)
        await self._persist(now)

    async def states(self, now: datetime) -> list[BreakerStatus]:
        """Every breaker with its threshold and reset rule (per-symbol ones: one line per tripped symbol)."""
        return (await self.rules()).states(now)

    async def reset(self, name: str, *, by_operator: bool, now: datetime) -> list[Event]:
        """Reset ``name`` (see ``BreakerRules.reset``); the drawdown breaker refuses unless ``by_operator``."""
        events = (await self.rules()).reset(name, by_operator=by_operator, now=now)
        await self._persist(now)
        return events
