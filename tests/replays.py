"""The replay of the demo window, run once per test session and read by every test that needs it.

The demo window (bundled sample, BTC/ETH/SOL from 2025-03-24, 21 days) with the former default rule
(``RULE_PANEL``: ``trend_momentum`` alone at 0.6, which trades there 55 times; the default panel trades once) is
replayed by the engine parity test and pinned figure by figure by the figures test: the same replay, so it is
computed once. The summary is a frozen dataclass read by the tests, never written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from app.backtest import replay
from engine.backtest.replay import BacktestSummary, DemoOptions
from settings import Settings
from tests.trading_fixtures import RULE_PANEL

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
DEMO_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
DEMO_START = datetime(2025, 3, 24, tzinfo=UTC)
DEMO_DAYS = 21


def demo_settings() -> Settings:
    """The settings of the parity windows and the pinned 55-trade replay: defaults with ``RULE_PANEL``."""
    return Settings(_env_file=None, trading_mode="paper", **RULE_PANEL)  # type: ignore[call-arg]


@cache
def demo_replay() -> BacktestSummary:
    """The live trader replayed over the demo window with ``demo_settings()`` (call outside an event loop)."""
    options = DemoOptions(data_dir=SAMPLE, symbols=list(DEMO_SYMBOLS), start=DEMO_START, days=DEMO_DAYS, quiet=True)
    return asyncio.run(replay(demo_settings(), options))
