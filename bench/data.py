"""Data-command benchmark: ``download`` against the local fake Binance, and ``import-dumps`` of monthly ZIPs.

Run from the repository root:  .venv/bin/python bench/data.py [--dumps-from ../shared/data/binance-futures]

- download: BTC, ETH and SOL, 2025-01-01 → 2025-05-01 (103,680 real candles of ``data/sample``) through the
  real AsyncClient, then the same command again (nothing to fetch). Against Binance the request-weight
  budget, not this code, sets the pace: 40 % of 2,400 a minute is 192 pages of 1,000 candles a minute.
- import-dumps: BTCUSDT's 5m history from ``--dumps-from`` cut into monthly ZIPs in Binance's 12-column dump
  format (newer months with a header row, older without), imported into an empty folder, then again.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from engine.datasets.download import DownloadRequest, download  # noqa: E402
from engine.datasets.dumps import import_dumps  # noqa: E402
from tests.fakes.binance_server import FakeBinanceFutures  # noqa: E402


async def bench_download(folder: Path) -> None:
    async with FakeBinanceFutures(start=datetime(2025, 5, 1, 0, 0, 30, tzinfo=UTC)) as fake:
        request = DownloadRequest(("BTCUSDT", "ETHUSDT", "SOLUSDT"), datetime(2025, 1, 1, tzinfo=UTC),
                                  datetime(2025, 5, 1, tzinfo=UTC), folder)
        for label in ("download", "re-run"):
            before, weight = len(fake.requests), fake.weight_charged
            started = time.perf_counter()
            reports = (await download(request, base_url=fake.base_url)).reports
            wall = time.perf_counter() - started
            added = sum(r.klines_added for r in reports)
            print(f"{label:10s} {added:>9,} candles added in {wall:6.2f} s ({added / wall:,.0f}/s); "
                  f"{len(fake.requests) - before} requests, weight {fake.weight_charged - weight}")


def make_dumps(source: Path, folder: Path) -> int:
    frame = pd.read_csv(source)
    months = pd.to_datetime(frame["open_time"], unit="ms", utc=True).dt.strftime("%Y-%m")
    for month, part in frame.groupby(months):
        name = f"BTCUSDT-5m-{month}"
        close_time = part["open_time"] + 299_999
        quote = part["volume"] * part["close"]
        full = part.assign(close_time=close_time, quote_volume=quote, count=0, taker_buy_volume=part["volume"] / 2,
                           taker_buy_quote_volume=quote / 2, ignore=0)
        text = full.to_csv(index=False, header=month >= "2024-01", lineterminator="\n")
        with zipfile.ZipFile(folder / f"{name}.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.csv", text)
    return months.nunique()


def bench_dumps(source: Path, work: Path) -> None:
    dumps, out = work / "dumps", work / "imported"
    dumps.mkdir()
    files = make_dumps(source, dumps)
    for label in ("import", "re-import"):
        started = time.perf_counter()
        summary = import_dumps([dumps], out)[0]
        wall = time.perf_counter() - started
        print(f"{label:10s} {files} monthly ZIPs, {summary.rows_read:,} rows read, {summary.merge.added:,} added "
              f"in {wall:6.2f} s ({summary.rows_read / wall:,.0f} rows/s)")
    with gzip.open(source, "rt") as a, gzip.open(out / "BTCUSDT-5m.csv.gz", "rt") as b:
        print(f"imported file identical to the source text: {a.read() == b.read()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dumps-from", type=Path, default=ROOT.parent / "shared" / "data" / "binance-futures"
                        / "BTCUSDT-5m.csv.gz", help="a SYMBOL-5m.csv.gz to cut into monthly dumps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_download(Path(tmp) / "download"))
        source = args.dumps_from if args.dumps_from.exists() else ROOT / "data" / "sample" / "BTCUSDT-5m.csv.gz"
        bench_dumps(source, Path(tmp))


if __name__ == "__main__":
    main()
