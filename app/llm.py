"""Builds the LLM panel from Settings: one shared httpx client, the call log in SQLite, the daily budget."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import httpx
from dotenv import dotenv_values

from core.clock import Clock
from settings import Settings
from storage.db import Database
from storage.llm_calls import LlmCallRepository
from strategies.llm import DailyBudget, LlmPanel, LlmVoter, ProviderSpec

log = logging.getLogger(__name__)


def key_lookup(env_file: Path | str | None = ".env") -> Callable[[str], str | None]:
    """A provider's key from the environment, else from ``.env`` (pydantic-settings does not export it)."""
    file_values = dotenv_values(env_file) if env_file and Path(env_file).is_file() else {}

    def lookup(name: str) -> str | None:
        return os.environ.get(name) or file_values.get(name) or None

    return lookup


def provider_keys(settings: Settings, lookup: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
    """The keys of the configured providers, for the log filter to mask."""
    lookup = lookup or key_lookup(settings.env_file)
    keys = (ProviderSpec.parse(item).key_variable for item in settings.llm_providers)
    return tuple(key for key in (lookup(k) for k in keys if k) if key)


class LlmRuntime:
    """The panel and the HTTP client it owns; ``close()`` at shutdown."""

    def __init__(self, panel: LlmPanel, http: httpx.AsyncClient | None) -> None:
        self.panel = panel
        self.http = http

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()


def build_llm(settings: Settings, db: Database, clock: Clock,
              lookup: Callable[[str], str | None] | None = None) -> LlmRuntime:
    specs = [ProviderSpec.parse(item) for item in settings.llm_providers]
    if not specs:
        return LlmRuntime(LlmPanel([]), None)
    lookup = lookup or key_lookup(settings.env_file)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=16))
    calls = LlmCallRepository(db)
    budget = DailyBudget(settings.llm_daily_budget_usd, calls)
    voters = []
    for spec in specs:
        provider = spec.provider(lookup)
        if spec.key_variable and provider.api_key is None:
            log.warning("LLM provider %s: %s is not set; its calls will be refused until it is", spec.name,
                        spec.key_variable)
        voters.append(LlmVoter(provider, http, calls, budget, clock.now, timeout_s=settings.llm_timeout_seconds))
    log.info("LLM voters: %s (top %d candidates per scan, budget %s USD/day)",
             ", ".join(s.name for s in specs), settings.llm_top_n, settings.llm_daily_budget_usd)
    return LlmRuntime(LlmPanel(voters, top_n=settings.llm_top_n, deadline_s=settings.llm_scan_deadline_seconds),
                      http)
