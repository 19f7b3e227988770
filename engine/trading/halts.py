"""Halt state: pause, stop and kill-switch, persisted so a restart keeps them (invariant 4).

- paused: no new entries; open positions keep being managed.
- stopped: no entries and no monitor actions; exchange-side stops stay in place.
- killed: everything was closed and cancelled; no entries until /resume.
Breakers (engine/breakers.py, later) add their own blocks on entries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from storage.repositories import StateRepository

HALTS_KEY = "halts"


@dataclass(frozen=True, slots=True)
class HaltState:
    paused: bool = False
    stopped: bool = False
    killed: bool = False
    reason: str = ""
    since: str = ""

    @property
    def entries_allowed(self) -> bool:
        return not (self.paused or self.stopped or self.killed)

    @property
    def label(self) -> str:
        if self.killed:
            return "halted (kill-switch)"
        if self.stopped:
            return "stopped"
        if self.paused:
            return "paused"
        return "running"

    def describe(self) -> str:
        return self.label + (f": {self.reason}" if self.reason else "")


async def load_halts(state: StateRepository) -> HaltState:
    raw = await state.get(HALTS_KEY)
    if not raw:
        return HaltState()
    return HaltState(**{k: raw[k] for k in ("paused", "stopped", "killed", "reason", "since") if k in raw})


async def save_halts(state: StateRepository, halts: HaltState, now: datetime) -> None:
    await state.set(HALTS_KEY, asdict(halts), now)
