"""CPU time of a full ``Trader.monitor()`` tick (breakers, reconciliation, exits, equity, heartbeat) over the
paper exchange on real data, with every bundled symbol holding an open protected position. No network.

Run: python bench/monitor_tick.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from core.enums import Mode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime import build_trader
from core.clock import ManualClock
from engine.events import EventBus
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType
from settings import Settings
from storage.db import Database
from storage.repositories import Repositories
from strategies.consensus import Consensus
from strategies.types import Direction, Vote

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
TICKS = 200


class AlwaysLong:
    name = "bench"

    def vote(self, symbol: str, features: object) -> Vote:
        return Vote(self.name, Direction.LONG, 1.0, "bench")


async def main() -> None:
    clock = ManualClock(datetime(2025, 3, 20, 0, 0, 5, tzinfo=UTC))
    settings = Settings(_env_file=None, symbols=SYMBOLS, universe_size=len(SYMBOLS),  # type: ignore[call-arg]
                        max_open_positions=len(SYMBOLS), max_correlated_positions=len(SYMBOLS),
                        max_total_exposure_pct=Decimal(1000), time_stop_hours=0, stale_after_hours=0)
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database(Path(tmp) / "bench.sqlite3").open()
        market = HistoricalMarket(SAMPLE, clock, SYMBOLS)
        exchange = PaperExchange(db, market, clock, start_balance=Decimal(100_000), trigger_interval="5m",
                                 default_margin_type=MarginType.ISOLATED)
        await exchange.open()
        trader = build_trader(settings, mode=Mode.PAPER, exchange=exchange, repos=Repositories(db), bus=EventBus(),
                              clock=clock, consensus=Consensus([AlwaysLong()], threshold=0.5))
        await trader.start()
        opened = len((await trader.scan()).opened)
        cpu: list[float] = []
        wall: list[float] = []
        for _ in range(TICKS):
            clock.advance(timedelta(minutes=1))
            c0, w0 = time.process_time(), time.perf_counter()
            await trader.monitor()
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        still_open = len(await exchange.positions())
        await trader.close_all("bench")
        flat: list[float] = []
        for _ in range(TICKS):
            clock.advance(timedelta(minutes=1))
            c0 = time.process_time()
            await trader.monitor()
            flat.append((time.process_time() - c0) * 1000)
        await exchange.close()
        await db.close()
    cpu.sort()
    print(f"full Trader.monitor() tick over the paper exchange, real data, {opened} positions opened "
          f"({still_open} still open after {TICKS} one-minute ticks)")
    print(f"  cpu  median {statistics.median(cpu):.2f} ms   p95 {cpu[int(0.95 * len(cpu))]:.2f} ms   "
          f"max {cpu[-1]:.2f} ms")
    print(f"  wall median {statistics.median(wall):.2f} ms (SQLite writes via aiosqlite's thread included)")
    base = statistics.median(flat)
    per_position = (statistics.median(cpu) - base) / max(opened, 1)
    print(f"  flat account (no positions): cpu median {base:.2f} ms")
    print(f"  per open position ≈ {per_position:.2f} ms cpu → 20 positions ≈ {base + 20 * per_position:.1f} ms "
          "(linear estimate)")


if __name__ == "__main__":
    asyncio.run(main())
