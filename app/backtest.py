"""Composition for the replay engine: the live trader, built from Settings, over the paper exchange."""

from __future__ import annotations

from app.runtime import build_trader
from core.clock import ManualClock
from engine.backtest.replay import BacktestSummary, DemoOptions, run_backtest
from engine.events import EventBus
from engine.exchange.paper import PaperExchange
from engine.trading.trader import Trader
from settings import Settings
from storage.repositories import Repositories


def paper_trader(settings: Settings, exchange: PaperExchange, repos: Repositories, bus: EventBus,
                 clock: ManualClock) -> Trader:
    return build_trader(settings, mode="paper", exchange=exchange, repos=repos, bus=bus, clock=clock)


async def replay(settings: Settings, options: DemoOptions, *, extra_sinks: list[object] | None = None
                 ) -> BacktestSummary:
    return await run_backtest(settings, options, make_trader=paper_trader, extra_sinks=extra_sinks)


async def run_demo(settings: Settings, options: DemoOptions) -> int:
    summary = await replay(settings, options)
    print(summary.render())
    return 0
