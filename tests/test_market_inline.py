"""A source that answers from memory (recorded data) is asked symbol by symbol instead of in concurrent tasks: the
snapshots are the same, candle for candle and counter for counter, as over the same data asked concurrently."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from core.clock import ManualClock
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import KlineBatch
from engine.market import MarketDataService
from storage.scratch_db import ScratchDatabase
from tests.helpers_market import SAMPLE_DIR, SAMPLE_SYMBOLS

COLS = ("open_time", "open", "high", "low", "close", "volume")


class Concurrent:
    """The same recorded market, without the inline mark: the service asks it in one task per symbol."""

    def __init__(self, market: HistoricalMarket) -> None:
        self.market = market

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None, limit: int = 500
                     ) -> KlineBatch:
        return await self.market.klines(symbol, interval, start_ms=start_ms, limit=limit)


def _service(source: object, clock: ManualClock) -> MarketDataService:
    return MarketDataService(source, clock, timeframes=["5m", "15m", "1h", "4h"], history=300,  # type: ignore[arg-type]
                             max_concurrency=8, universe_size=3, fixed_symbols=SAMPLE_SYMBOLS, blacklist=[],
                             min_quote_volume=Decimal(0))


async def test_inline_source_gives_the_snapshots_of_concurrent_requests(tmp_path):
    clock = ManualClock(datetime(2025, 3, 24, 0, 0, 5, tzinfo=UTC))
    market = HistoricalMarket(SAMPLE_DIR, clock, SAMPLE_SYMBOLS)
    db = await ScratchDatabase(tmp_path / "paper.sqlite3").open()
    try:
        paper = PaperExchange(db, market, clock, start_balance=Decimal(1000), trigger_interval="5m")
        assert market.answers_inline and paper.answers_inline
        assert not getattr(Concurrent(market), "answers_inline", False)
        inline, concurrent = _service(paper, clock), _service(Concurrent(market), clock)
        for _ in range(60):  # five hours: every higher timeframe closes a candle on the way
            a = await inline.snapshot(SAMPLE_SYMBOLS)
            b = await concurrent.snapshot(SAMPLE_SYMBOLS)
            assert a.symbols == b.symbols == list(SAMPLE_SYMBOLS) and a.rejected == b.rejected == {}
            assert asdict(a.stats) == asdict(b.stats)
            for symbol, frames in a.frames.items():
                assert list(frames) == list(b.frames[symbol])
                for tf, batch in frames.items():
                    for name in COLS:
                        assert np.array_equal(getattr(batch, name), getattr(b.frames[symbol][tf], name))
            clock.set(clock.now() + timedelta(minutes=5))
        assert inline.stats == concurrent.stats and inline.stats.derived > 0
    finally:
        await db.close()
