"""Bounded retries for the requests that protect a position (stop placement, cancel resolution, kill-switch).

Binance refuses some requests for a moment and then accepts them: -4509 right after an entry (the position is
not registered yet), 429 (wait ``Retry-After``: the window then lasts past the cooldown and makes one more
attempt after it, however long Binance asked to wait), a 5xx that did
not execute, and answers that were lost. Closing a position at market because of one of those costs two taker
fees and the spread, so they are retried with backoff for a bounded time (about ten seconds) first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import Clock
from engine.exchange.errors import ExchangeError, OrderStatusUnknown, PositionNotReady, TransientError

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryBudget:
    total: timedelta = timedelta(seconds=10)
    base_delay: float = 0.5
    max_delay: float = 4.0
    max_attempts: int = 8  # a bound even on a clock that does not move (backtests)


def worth_retrying(exc: ExchangeError) -> bool:
    """A refusal that a moment later may be an acceptance (never a definite rejection of the request itself)."""
    return isinstance(exc, TransientError | OrderStatusUnknown | PositionNotReady)


class RetryWindow:
    """One bounded retry loop: ``while ...: try ...; if window.spent: give up; await window.pause()``."""

    def __init__(self, budget: RetryBudget, clock: Clock, sleep: Sleep | None = None) -> None:
        self._budget = budget
        self._clock = clock
        self._sleep: Sleep = sleep or asyncio.sleep
        self._deadline = clock.now() + budget.total
        self._resume_at: datetime | None = None
        self._owed = False  # one more attempt is due after a cooldown, whatever the deadline says
        self.attempts = 0

    @property
    def spent(self) -> bool:
        if self.attempts >= self._budget.max_attempts:
            return True
        return self._clock.now() >= self._deadline and not self._owed

    def cooldown(self, seconds: float) -> None:
        """Binance said wait ``seconds`` (429 ``Retry-After``): the window lasts until then, the next pause
        waits for it, and one more attempt is made after it before the window counts as spent."""
        resume = self._clock.now() + timedelta(seconds=seconds)
        self._resume_at = max(self._resume_at or resume, resume)
        self._deadline = max(self._deadline, resume)
        self._owed = True

    async def pause(self) -> None:
        delay = min(self._budget.max_delay, self._budget.base_delay * (2 ** self.attempts))
        now = self._clock.now()
        remaining = (self._deadline - now).total_seconds()
        self.attempts += 1
        self._owed = False
        wait = max(0.0, min(delay, remaining))
        if self._resume_at is not None:
            wait = max(wait, (self._resume_at - now).total_seconds())
        await self._sleep(wait)
