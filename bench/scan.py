"""Scan benchmark: CPU and wall time of one full scan (features + every local voter of the shipped default panel,
the ML voter's inference when a model is given, consensus + ranking, no network) for 10, 50 and 100 symbols on real
Binance candles, peak RSS, and the MarketDataService cache effect.

Run from the repository root:  .venv/bin/python bench/scan.py [--reps 7] [--data ../shared/data/binance-futures]
[--model FILE]   (a model written by ``main.py train``: the ML voter joins the panel, as in ``main.py run``)

Data: the 7 real 5m series in ``../shared/data/binance-futures`` (BTC ETH SOL BNB XRP DOGE LTC), resampled
to 15m/1h/4h on the epoch grid (complete buckets only). Beyond 7 symbols the same series are reused:
symbol i reads base series ``i % 7`` with its window ending ``(i // 7) * OFFSET`` before that series'
last 4h boundary, so every benchmark symbol sees different candles. Nothing here is synthetic.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.clock import ManualClock, from_ms, to_ms  # noqa: E402
from core.intervals import interval_ms  # noqa: E402
from engine.exchange.types import KlineBatch, SymbolRules, Ticker24h  # noqa: E402
from engine.market import MarketDataService, resample_klines  # noqa: E402
from settings import Settings  # noqa: E402
from strategies.consensus import Consensus, rank  # noqa: E402
from strategies.features import compute_features  # noqa: E402
from strategies.panel import build_voters  # noqa: E402

BASES = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "LTCUSDT")
TIMEFRAMES = ("5m", "15m", "1h", "4h")
HISTORY = 300
FOUR_H = 4 * 3_600_000
OFFSET = 3 * 86_400_000 + FOUR_H  # 3 days 4 hours: a multiple of every timeframe, so shifted grids stay valid


def load(data_dir: Path) -> dict[str, dict[str, KlineBatch]]:
    out: dict[str, dict[str, KlineBatch]] = {}
    for sym in BASES:
        d = pd.read_csv(data_dir / f"{sym}-5m.csv.gz")
        b5 = KlineBatch(sym, "5m", d["open_time"].to_numpy(np.int64),
                        *(d[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")))
        out[sym] = {tf: resample_klines(b5, tf) for tf in TIMEFRAMES}
    return out


def last_boundary(series: dict[str, KlineBatch]) -> int:
    """The last 4h boundary at which every timeframe of the series has closed candles."""
    end = int(series["5m"].open_time[-1]) + interval_ms("5m")
    return end // FOUR_H * FOUR_H


def window(batch: KlineBatch, end_ms: int, size: int) -> KlineBatch:
    stop = int(np.searchsorted(batch.open_time, end_ms - interval_ms(batch.interval), side="right"))
    return batch.slice(max(0, stop - size), stop)


def bench_symbols(data: dict[str, dict[str, KlineBatch]], n: int) -> dict[str, dict[str, KlineBatch]]:
    frames: dict[str, dict[str, KlineBatch]] = {}
    for i in range(n):
        base, k = BASES[i % len(BASES)], i // len(BASES)
        end = last_boundary(data[base]) - k * OFFSET
        name = base if k == 0 else f"{base}~{k}"
        frames[name] = {tf: _rename(window(b, end, HISTORY), name) for tf, b in data[base].items()}
        assert all(len(b) == HISTORY for b in frames[name].values()), name
    return frames


def _rename(b: KlineBatch, name: str) -> KlineBatch:
    return KlineBatch(name, b.interval, b.open_time, b.open, b.high, b.low, b.close, b.volume)


def default_panel(model: Path | None = None) -> Consensus:
    """The shipped default panel (``VOTERS``, ``ENTRY_THRESHOLD`` and the other gates of a fresh Settings), plus the
    ML voter of ``model`` at ``ML_THRESHOLD``: what ``main.py run`` builds after ``main.py train``."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    voters = list(build_voters(settings.voters))
    if model is not None:
        from strategies.ml_voter import load_ml_voter

        voters.append(load_ml_voter(model, tuple(settings.timeframes), settings.ml_threshold))
    return Consensus(voters, threshold=settings.entry_threshold, min_agree=settings.min_agreeing_voters,
                     min_agreement=settings.min_agreement)


def scan_once(frames: dict[str, dict[str, KlineBatch]], consensus: Consensus) -> tuple[float, float, int]:
    """One scan as ``evaluate_snapshot``: features of every symbol, the panel prepared for the whole scan (the ML
    model called once), every symbol decided, ranked."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    feats = {sym: compute_features(tfs) for sym, tfs in frames.items()}
    consensus.prepare(feats)
    ranked = rank([consensus.decide(sym, f) for sym, f in feats.items()])
    return time.process_time() - cpu, time.perf_counter() - wall, len(ranked)


def split_once(frames: dict[str, dict[str, KlineBatch]], consensus: Consensus) -> tuple[float, float]:
    t0 = time.process_time()
    feats = {sym: compute_features(tfs) for sym, tfs in frames.items()}
    t1 = time.process_time()
    consensus.prepare(feats)
    rank([consensus.decide(sym, f) for sym, f in feats.items()])
    return t1 - t0, time.process_time() - t1


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- cache figure ---------------------------------------------------------------------------------------

class ReplaySource:
    """A MarketData over the real series, answering like Binance at ``clock.now()``.

    Benchmark symbol ``BASE~k`` is base series shifted forward in time by ``shift`` so that all symbols
    are current at the same clock time (shifts are multiples of 4h, so every grid stays aligned).
    """

    def __init__(self, clock: ManualClock, data: dict[str, dict[str, KlineBatch]], shifts: dict[str, tuple[str, int]]
                 ) -> None:
        self.clock, self.data, self.shifts = clock, data, shifts

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        d = Decimal
        return {s: SymbolRules(s, "TRADING", s[:-4], "USDT", d("0.01"), d("0.01"), d("1e6"), d("0.001"), d("0.001"),
                               d("1e6"), d("0.001"), d("0.001"), d("1e6"), d("5")) for s in self.shifts}

    async def tickers_24h(self) -> list[Ticker24h]:
        return [Ticker24h(s, Decimal(1), Decimal(10**9), Decimal(0)) for s in self.shifts]

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None, limit: int = 500) -> KlineBatch:
        await asyncio.sleep(0)
        base, shift = self.shifts[symbol]
        full = self.data[base][interval]
        visible = int(np.searchsorted(full.open_time, to_ms(self.clock.now()) - shift, side="right"))
        if start_ms is None:
            first = max(0, visible - limit)
        else:
            first = int(np.searchsorted(full.open_time, start_ms - shift, side="left"))
        b = full.slice(first, min(visible, first + limit))
        return KlineBatch(symbol, interval, b.open_time + shift, b.open, b.high, b.low, b.close, b.volume)

    async def mark_price(self, symbol: str) -> object:
        raise NotImplementedError

    async def funding_rates(self, symbol: str, start: object, end: object) -> list:
        return []

    async def close(self) -> None:
        return None


async def cache_figure(data: dict[str, dict[str, KlineBatch]], n: int, warm_scans: int) -> list[str]:
    # common "now": one day before the latest 4h boundary of the data, so a day of future candles exists
    now0 = max(last_boundary(s) for s in data.values()) - 86_400_000
    shifts: dict[str, tuple[str, int]] = {}
    for i in range(n):
        base, k = BASES[i % len(BASES)], i // len(BASES)
        name = base if k == 0 else f"{base}~{k}"
        shifts[name] = (base, (now0 - (last_boundary(data[base]) - 86_400_000)) + k * OFFSET)
    clock = ManualClock(from_ms(now0 + 5_000))
    svc = MarketDataService(ReplaySource(clock, data, shifts), clock, timeframes=list(TIMEFRAMES), history=HISTORY,
                            max_concurrency=8, universe_size=n, fixed_symbols=[], blacklist=[],
                            min_quote_volume=Decimal(0))
    symbols = await svc.universe()
    lines = []
    t0, c0 = time.perf_counter(), time.process_time()
    cold = await svc.snapshot(symbols)
    cpu_ms, wall_ms = 1000 * (time.process_time() - c0), 1000 * (time.perf_counter() - t0)
    lines.append(f"  cold scan : {cold.stats.requests:5d} requests, {cold.stats.candles_fetched:7d} candles fetched, "
                 f"{len(cold.symbols)} ok / {len(cold.rejected)} rejected, cpu {cpu_ms:.0f} ms "
                 f"(wall {wall_ms:.0f} ms, in-process source)")
    reqs, cands, cpus = [], [], []
    for _ in range(warm_scans):
        clock.advance(timedelta(minutes=5))
        c0 = time.process_time()
        snap = await svc.snapshot(symbols)
        cpus.append(time.process_time() - c0)
        reqs.append(snap.stats.requests)
        cands.append(snap.stats.candles_fetched)
        assert not snap.rejected, snap.rejected
    lines.append(f"  warm scan : {reqs[0]:5d} requests, {cands[0]:7d} candles fetched (first 5-minute scan after cold)")
    mean_reqs = statistics.mean(reqs)
    lines.append(f"  {warm_scans} warm 5-minute scans: mean {mean_reqs:.1f} requests/scan "
                 f"(= {mean_reqs / n:.2f} per symbol, vs {len(TIMEFRAMES)} uncached), mean "
                 f"{statistics.mean(cands):.0f} candles/scan, median cpu {1000 * statistics.median(cpus):.1f} ms/scan")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "binance-futures")
    parser.add_argument("--model", type=Path, default=None, help="an ML model file (main.py train): it joins the panel")
    parser.add_argument("--no-cache", action="store_true", help="skip the MarketDataService cache figure")
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = load(args.data)
    print(f"loaded 7 real 5m series + resampled 15m/1h/4h in {time.perf_counter() - t0:.1f} s; "
          f"peak RSS after load {rss_mb():.0f} MB")
    print(f"windows: history={HISTORY} candles per timeframe ({', '.join(TIMEFRAMES)}); symbol i = base series i % 7 "
          f"(BTC ETH SOL BNB XRP DOGE LTC) with its window ending (i // 7) x 3d4h earlier")
    consensus = default_panel(args.model)
    names = ", ".join(v.name for v in consensus.voters)
    print(f"\nscan (features + the panel {names} at {consensus.threshold:g} + rank), median of {args.reps} runs:")
    print(f"  {'symbols':>7} | {'cpu ms':>8} | {'wall ms':>8} | {'cpu ms/symbol':>13} | {'features':>8} | "
          f"{'vote+cons':>9} | non-FLAT")
    for n in (10, 50, 100):
        frames = bench_symbols(data, n)
        scan_once(frames, consensus)  # warm-up (imports, caches)
        runs = [scan_once(frames, consensus) for _ in range(args.reps)]
        split = [split_once(frames, consensus) for _ in range(args.reps)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        feat = statistics.median(s[0] for s in split)
        vote = statistics.median(s[1] for s in split)
        print(f"  {n:7d} | {1000 * cpu:8.1f} | {1000 * wall:8.1f} | {1000 * cpu / n:13.3f} | "
              f"{1000 * feat / n:6.3f}ms | {1000 * vote / n:7.3f}ms | {runs[0][2]}")
    print(f"peak RSS (ru_maxrss) after scans: {rss_mb():.0f} MB (includes the full loaded history)")
    if args.no_cache:
        return

    print("\nMarketDataService cache over a replay source of the same real data, 100 symbols x 4 timeframes:")
    for line in asyncio.run(cache_figure(data, 100, 48)):
        print(line)
    print(f"peak RSS (ru_maxrss) at exit: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
