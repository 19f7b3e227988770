"""How long /chart holds up the event loop: the equity chart of 30 days of 5-minute snapshots (8,640 points)
rendered on the loop and in a worker thread (what the bot does), while a ticker measures the loop's lag.

Run: python bench/chart_loop_lag.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.charts import render_equity_chart
from storage.records import EquityPoint

TICK = 0.01


def points(n: int = 8640) -> list[EquityPoint]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        equity = Decimal(1000 + (i % 500) - (i % 37) * 2)
        out.append(EquityPoint(start + timedelta(minutes=5 * i), equity, equity, Decimal(0)))
    return out


async def worst_lag(work: asyncio.Future[bytes]) -> float:
    worst = 0.0
    while not work.done():
        before = time.perf_counter()
        await asyncio.sleep(TICK)
        worst = max(worst, time.perf_counter() - before - TICK)
    return worst


async def main() -> None:
    data = points()
    render_equity_chart(data[:10], "warm-up")  # matplotlib's import is not what we measure
    loop = asyncio.get_running_loop()

    async def on_loop() -> bytes:
        await asyncio.sleep(0)
        return render_equity_chart(data, "on the loop")

    starts = {"on the loop": lambda: asyncio.ensure_future(on_loop()),
              "worker thread": lambda: loop.run_in_executor(None, render_equity_chart, data, "in a thread")}
    for name, start in starts.items():
        started = time.perf_counter()
        work = start()
        lag = await worst_lag(work)
        png = await work
        print(f"{name:>13}: render {time.perf_counter() - started:5.2f} s, worst loop lag {lag * 1000:7.1f} ms, "
              f"{len(png) // 1024} KiB PNG")


if __name__ == "__main__":
    asyncio.run(main())
