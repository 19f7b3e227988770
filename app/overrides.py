"""Runtime choices the operator made through Telegram that are stored in the database and win over ``.env``
after a restart, and clearing them (``python main.py reset-overrides``) while the bot is stopped."""

from __future__ import annotations

from dataclasses import dataclass

from app.runtime import MODE_KEY
from engine.blacklist import BLACKLIST_KEY
from engine.service import SETTING_OVERRIDES_KEY
from engine.trading.halts import HALTS_KEY
from storage.repositories import StateRepository


@dataclass(frozen=True, slots=True)
class StoredChoice:
    name: str  # the reset-overrides flag without dashes
    key: str  # state table key
    what: str
    wins_over: str


CHOICES = (
    StoredChoice("settings", SETTING_OVERRIDES_KEY, "values changed with /set", "the same keys in .env"),
    StoredChoice("mode", MODE_KEY, "the paper/live choice made with /paper or /live", "TRADING_MODE"),
    StoredChoice("blacklist", BLACKLIST_KEY, "symbols added with /blacklist", "BLACKLIST (both apply)"),
    StoredChoice("halts", HALTS_KEY, "pause, stop or kill-switch (/pause, /stop, /kill)", "nothing in .env"),
)
BY_NAME = {c.name: c for c in CHOICES}


@dataclass(frozen=True, slots=True)
class StoredValue:
    choice: StoredChoice
    value: object


async def stored(state: StateRepository) -> list[StoredValue]:
    """The stored choices that are set (empty values are not listed)."""
    out: list[StoredValue] = []
    for choice in CHOICES:
        value = await state.get(choice.key)
        if value not in (None, "", {}, []):
            out.append(StoredValue(choice, value))
    return out


async def clear(state: StateRepository, names: list[str]) -> list[StoredChoice]:
    """Delete the named stored choices; returns those that were set."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown stored choice {', '.join(unknown)}; use {', '.join(BY_NAME)}")
    present = {v.choice.name for v in await stored(state)}
    cleared: list[StoredChoice] = []
    for name in names:
        await state.delete(BY_NAME[name].key)
        if name in present:
            cleared.append(BY_NAME[name])
    return cleared
