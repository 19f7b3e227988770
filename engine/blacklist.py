"""Symbols the operator never wants traded (``/blacklist``), persisted in the state table for both modes.

The scan still analyses them (BTCUSDT's volatility feeds a breaker) but never opens a position on them, and
neither does a manual /long or /short. An open position on a symbol blacklisted later stays managed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from storage.repositories import StateRepository

BLACKLIST_KEY = "blacklist"


async def load_blacklist(state: StateRepository) -> frozenset[str]:
    raw = await state.get(BLACKLIST_KEY) or []
    return frozenset(str(s).upper() for s in raw)


async def save_blacklist(state: StateRepository, symbols: Iterable[str], now: datetime) -> None:
    await state.set(BLACKLIST_KEY, sorted({s.upper() for s in symbols}), now)
