"""Builds a real trader over the paper exchange and the bundled real data, with hand-written voters."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from app.configs import risk_config
from app.runtime import build_breakers, trader_config
from core.clock import ManualClock
from core.enums import Mode
from engine.events import EventBus, RecordingSink
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType
from engine.market import MarketDataService
from engine.policy.risk import LimitsConfig
from engine.trading.trader import Trader, TraderConfig
from settings import Settings
from storage.db import Database
from storage.repositories import Repositories
from strategies.consensus import Consensus
from strategies.features import Features
from strategies.llm import LlmPanel
from strategies.types import Direction, Vote

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
START = datetime(2025, 3, 20, 0, 0, 5, tzinfo=UTC)


class FixedVoter:
    """Votes the same direction on the symbols it is told about (FLAT elsewhere)."""

    name = "fixed"

    def __init__(self, direction: Direction, symbols: set[str]) -> None:
        self.direction = direction
        self.symbols = symbols

    def vote(self, symbol: str, features: Features) -> Vote:
        if symbol in self.symbols:
            return Vote(self.name, self.direction, 1.0, "test")
        return Vote(self.name, Direction.FLAT, 0.0, "test")


@dataclass
class Rig:
    db: Database
    repos: Repositories
    clock: ManualClock
    market: HistoricalMarket
    exchange: PaperExchange
    trader: Trader
    bus: EventBus
    sink: RecordingSink
    voter: FixedVoter
    settings: Settings

    async def step(self, minutes: int = 5) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    async def close(self) -> None:
        await self.exchange.close()
        await self.db.close()


#: The panel the tests' real-data signal times were found with: ``trend_momentum`` alone at 0.6, the default before
#: issue 9's walk-forward chose a stricter one (docs/evaluation.md). Tests of the trader's mechanics pin it, so they
#: keep scanning into real signals whatever the default panel is.
RULE_PANEL: dict[str, object] = {"voters": ["trend_momentum"], "entry_threshold": 0.6}


@lru_cache(maxsize=8)
def _loaded_sample(symbols: tuple[str, ...]) -> HistoricalMarket:
    """The bundled sample of ``symbols``, read and resampled once per test session; its arrays made read-only,
    so that a test that wrote into them would fail instead of changing what the next test reads."""
    market = HistoricalMarket(SAMPLE, ManualClock(START), symbols)
    for data in market._data.values():
        arrays = [getattr(s, f.name) for s in data.series.values() for f in fields(s)]
        for array in [*arrays, data.funding.time, data.quote_cumsum]:
            array.setflags(write=False)
    return market


def sample_market(clock: ManualClock, symbols: list[str]) -> HistoricalMarket:
    """``HistoricalMarket(SAMPLE, clock, symbols)`` without reading the files again: a copy of the loaded one on
    its own clock with its own (empty) mark cache; only the read-only candles and rules are shared."""
    market = copy.copy(_loaded_sample(tuple(symbols)))
    market.clock = clock
    market._marks = {}
    return market


def make_settings(**overrides: object) -> Settings:
    base: dict[str, object] = dict(symbols=["BTCUSDT", "ETHUSDT"], universe_size=2, max_open_positions=2,
                                   leverage=3, risk_per_trade_pct=Decimal("1"), telegram_bot_token=None,
                                   trading_mode="paper", **RULE_PANEL)
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


async def build_rig(db_path: Path, *, clock: ManualClock | None = None, direction: Direction = Direction.LONG,
                    voted: set[str] | None = None, full: bool = False, exits: bool = True,
                    llm: LlmPanel | None = None, **settings_overrides: object) -> Rig:
    settings = make_settings(**settings_overrides)
    clock = clock or ManualClock(START)
    market = sample_market(clock, settings.symbols)
    db = await Database(db_path).open()
    repos = Repositories(db)
    exchange = PaperExchange(db, market, clock, start_balance=settings.paper_start_balance,
                             taker_fee=settings.paper_taker_fee, slippage_pct=settings.paper_slippage_pct,
                             trigger_interval="5m", default_leverage=settings.leverage,
                             default_margin_type=MarginType(settings.margin_type))
    await exchange.open()
    bus = EventBus()
    sink = RecordingSink()
    bus.subscribe(sink)
    voter = FixedVoter(direction, voted if voted is not None else {"BTCUSDT"})
    service = MarketDataService.from_settings(exchange, clock, settings)
    if full:
        # the production configuration: limits, exits (unless exits=False) and circuit breakers from settings
        config = trader_config(settings, Mode.PAPER)
        config = config if exits else replace(config, exits=None)
        breakers = build_breakers(settings, repos, "paper")
    else:
        # bare trader: sizing and protection only (no exit management, no breakers, no correlation guard)
        limits = LimitsConfig(max_open_positions=settings.max_open_positions, max_correlated=50,
                              funding_max_pay_rate=Decimal(1))
        config = TraderConfig(mode=Mode.PAPER, risk=risk_config(settings), margin_type=MarginType(settings.margin_type),
                              max_open_positions=settings.max_open_positions,
                              stop_timeframe=settings.stop_atr_timeframe, limits=limits)
        breakers = None
    trader = Trader(exchange=exchange, market=service, consensus=Consensus([voter], threshold=0.5), repos=repos,
                    bus=bus, clock=clock, config=config, breakers=breakers, llm=llm)
    await trader.start()
    return Rig(db, repos, clock, market, exchange, trader, bus, sink, voter, settings)
