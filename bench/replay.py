"""Replay-engine benchmark: CPU seconds, wall seconds, candles/s and peak RSS of the demo window.

    .venv/bin/python bench/replay.py [--days 21] [--profile FILE]

Runs ``python main.py demo --quiet`` in-process (data/sample, BTC/ETH/SOL from 2025-03-24, 21 days = 6,048 steps of
5 minutes) and prints the demo summary followed by the figures. CPU time (``time.process_time``) is the figure to
compare: the machine is shared, so wall time moves with other people's work. candles = steps × symbols.

Measured here (2 shared cores, load 4-7), both runs side by side: before issue 8's replay work (946c4d7)
77.3 s CPU, 235 candles/s, 12.8 ms per step; after it 31.9-35.2 s CPU, 516-569 candles/s, 5.3-5.8 ms per step;
peak RSS 137 MB both. The demo's figures are the same (tests/test_replay_figures.py pins them).

Again on 2026-11-30, the machine near idle (load ~1), the former rule's 55-trade demo window: the engine before
issue 8 (4a13144, ``main.py demo --quiet``) 84.7 s wall, 82.1 s CPU, 214 candles/s, 134 MB; the replay now
(``bench/backtest.py`` case c) 16.2-19.2 s wall, 943-1,119 candles/s, 116 MB: 4.4-5.2x on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.backtest.replay import BacktestSummary

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=21, help="days to replay from 2025-03-24 (default 21)")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile dump of the run to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from app.backtest import replay
    from app.run import configure_logging
    from engine.backtest.replay import DemoOptions
    from settings import load_settings

    configure_logging("WARNING")
    settings = load_settings(None, trading_mode="paper", telegram_bot_token=None)
    options = DemoOptions(data_dir=ROOT / "data" / "sample", symbols=SYMBOLS,
                          start=datetime(2025, 3, 24, tzinfo=UTC), days=args.days, quiet=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        summary = profiler.runcall(asyncio.run, replay(settings, options))
        profiler.dump_stats(args.profile)
    else:
        summary = asyncio.run(replay(settings, options))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    steps = _steps(summary)
    candles = steps * len(summary.symbols)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(summary.render())
    print()
    print(f"steps             {steps} × {len(summary.symbols)} symbols = {candles} candles")
    print(f"cpu               {cpu:.2f} s ({candles / cpu:,.0f} candles/s, {cpu / steps * 1000:.2f} ms per step)")
    print(f"wall              {wall:.2f} s ({candles / wall:,.0f} candles/s)")
    print(f"peak rss          {rss_mb:.0f} MB")
    return 0


def _steps(summary: BacktestSummary) -> int:
    """5-minute steps replayed (the summary ends at the last step's candle open)."""
    return int((summary.end - summary.start).total_seconds() // 300) + 1


if __name__ == "__main__":
    raise SystemExit(main())
