"""What the engine façade needs from the running system. ``app.runtime.Runtime`` implements it; the engine never
imports the composition root."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from core.clock import Clock
from core.enums import Mode
from engine.events import EventBus
from engine.exchange.protocol import Exchange
from engine.trading.trader import Trader
from settings import Settings
from storage.repositories import Repositories


class RuntimeControl(Protocol):
    settings: Settings
    repos: Repositories
    bus: EventBus
    clock: Clock
    mode: Mode

    @property
    def exchange(self) -> Exchange: ...

    @property
    def trader(self) -> Trader: ...

    def next_scan(self) -> datetime | None: ...

    async def run_job_now(self, name: str) -> None: ...

    async def switch_mode(self, mode: Mode) -> None: ...

    def apply_settings(self, new: Settings) -> None: ...
