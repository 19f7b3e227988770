"""Signal-table benchmark: wall and CPU time, rows/s and peak RSS of building the vectorised signal table
(every closed 5m candle's features on its live window, votes, consensus, context arrays) for BTC/ETH/SOL,
2023-01-01 → 2025-06-30 included (634,077 5m candles), from the real data in ``../shared/data/binance-futures``.

Run from the repository root:  .venv/bin/python bench/signals.py [--data DIR] [--symbols A,B] [--start D] [--end D]

Loading (pandas reading the gzip CSVs) is timed apart from the build. Peak RSS is ``ru_maxrss`` of this
process (Python, numpy, pandas and the tables included). Settings are the defaults (5m/15m/1h/4h, 300
candles, stop ATR on 1h, threshold 0.6, the TrendMomentum voter), as ``main.py run`` would use them.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.clock import to_ms  # noqa: E402
from engine.exchange.types import KlineBatch  # noqa: E402
from strategies.consensus import Consensus  # noqa: E402
from strategies.signal_table import SignalConfig, build_signal_tables  # noqa: E402
from strategies.technical import TrendMomentumVoter  # noqa: E402

COLUMNS = ("open", "high", "low", "close", "volume")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def read(data_dir: Path, symbol: str, start_ms: int, end_ms: int) -> KlineBatch:
    d = pd.read_csv(data_dir / f"{symbol}-5m.csv.gz", dtype={"open_time": "int64", **dict.fromkeys(COLUMNS, "float64")})
    d = d[(d["open_time"] >= start_ms) & (d["open_time"] < end_ms)]
    return KlineBatch(symbol, "5m", d["open_time"].to_numpy(np.int64), *(d[c].to_numpy(np.float64) for c in COLUMNS))


def day(text: str) -> int:
    return to_ms(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "binance-futures")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT")
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2025-07-01",
                        help="exclusive: candles before this day (default: 2025-06-30 included)")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no data folder {args.data}; pass --data DIR")

    wall0, cpu0 = time.perf_counter(), time.process_time()
    histories = {s: read(args.data, s, day(args.start), day(args.end)) for s in args.symbols.split(",")}
    load_wall, load_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rows = sum(len(b) for b in histories.values())
    print(f"loaded {rows:,} 5m candles ({', '.join(f'{s} {len(b):,}' for s, b in histories.items())}) in "
          f"{load_wall:.2f} s wall / {load_cpu:.2f} s cpu; RSS {rss_mb():.0f} MB")

    def progress(symbol: str, done: int, total: int) -> None:
        print(f"  {symbol}: {done:,}/{total:,} rows, {time.perf_counter() - wall1:.2f} s", flush=True)

    consensus = Consensus([TrendMomentumVoter()], threshold=0.6)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    tables = build_signal_tables(histories, consensus, SignalConfig(), progress=progress)
    wall, cpu = time.perf_counter() - wall1, time.process_time() - cpu1
    print(f"signal table: {rows:,} rows in {wall:.2f} s wall / {cpu:.2f} s cpu = {rows / wall:,.0f} rows/s wall "
          f"({rows / cpu:,.0f} rows/s cpu)")
    for s, t in tables.items():
        print(f"  {s}: {int(t.valid.sum()):,} rows scanned, {int((t.direction > 0).sum()):,} LONG, "
              f"{int((t.direction < 0).sum()):,} SHORT")
    print(f"load + table: {load_wall + wall:.2f} s wall / {load_cpu + cpu:.2f} s cpu; peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
