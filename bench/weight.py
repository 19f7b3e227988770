"""Request-weight benchmark: Binance IP weight used per scan for 10, 50 and 100 symbols, cold and warm.

Run from the repository root:  .venv/bin/python bench/weight.py [--scans 48] [--sizes 10,50,100]

The real stack, over real HTTP on 127.0.0.1 (no network beyond it, no real keys):
``engine.exchange.binance.BinanceFutures`` over python-binance's ``AsyncClient``, talking to the fake
server ``tests.fakes.binance_server.FakeBinanceFutures`` (which charges each request Binance's documented
weight and answers with ``X-MBX-USED-WEIGHT-1M``), and ``engine.market.MarketDataService`` doing a scan's
market-data work with the default settings (timeframes 5m,15m,1h,4h, history 300, universe by 24 h quote
volume refreshed hourly, 8 concurrent requests). To reach 100 symbols the fake clones its 3 bundled real
series: ``S001USDT``..``S100USDT`` serve BTC, ETH and SOL candles in turn (same weight per request).

Per universe size: the cold (first) scan right after start-up, the warm scan 5 minutes later, and the
mean and maximum over ``--scans`` consecutive 5-minute scans. The default 48 scans are one full 4 h cycle
(16 closes of 15m, 4 of 1h, 1 of 4h, 4 hourly universe refreshes), i.e. the exact long-run mean; the
first 12 (1 h) are shown too. Then one monitor tick (positions + open algo orders + balance). Every
figure is the adapter's own count (``begin_scan()`` / ``scan_weight``), cross-checked against the fake's
accounting (weight it charged, requests it saw) and the ``X-MBX-USED-WEIGHT-1M`` count the adapter read.
The adapter's weight budget (``BINANCE_WEIGHT_BUDGET_PCT``) throttles by pausing; any pause is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.exchange.binance import BinanceFutures  # noqa: E402
from engine.exchange.weight import DEFAULT_WEIGHT_LIMIT  # noqa: E402
from engine.market import MarketDataService  # noqa: E402
from settings import Settings  # noqa: E402
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures  # noqa: E402

SOURCES = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = datetime(2025, 3, 3, 0, 0, 5, tzinfo=UTC)  # a 4h boundary + SCAN_DELAY_SECONDS
SCAN_EVERY = timedelta(minutes=5)
TARGET_PCT = 10.0


def _default(name: str) -> Any:
    """A setting's default (what a fresh deployment runs with), read without touching the environment."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


TIMEFRAMES: list[str] = list(_default("timeframes"))
HISTORY = int(_default("kline_history"))
CONCURRENCY = int(_default("max_concurrent_requests"))
MIN_QUOTE_VOLUME = Decimal(str(_default("min_quote_volume_usdt")))
BUDGET_PCT = float(_default("binance_weight_budget_pct"))
MONITOR_SECONDS = int(_default("monitor_interval_seconds"))


class ServerClock:
    """The fake exchange's clock: candle closes and weight minutes agree with the server."""

    def __init__(self, fake: FakeBinanceFutures) -> None:
        self.fake = fake

    def now(self) -> datetime:
        return self.fake.now


@dataclass(frozen=True)
class Measured:
    """One measured unit of work (a scan or a monitor tick)."""

    at: datetime
    weight: int  # the adapter's documented-weight sum since begin_scan()
    requests: int  # the adapter's request count since begin_scan()
    fake_weight: int  # weight the fake charged meanwhile
    fake_requests: int  # requests the fake received meanwhile
    header_ok: bool  # the adapter's used_weight equals the fake's count (read from X-MBX-USED-WEIGHT-1M)
    throttle_waits: int
    note: str = ""

    @property
    def consistent(self) -> bool:
        return self.weight == self.fake_weight and self.requests == self.fake_requests and self.header_ok


@dataclass(frozen=True)
class SizeResult:
    symbols: int
    startup: Measured
    cold: Measured
    warm: list[Measured]
    monitor_flat: Measured
    monitor_open: Measured


def pct(weight: float) -> float:
    return weight / DEFAULT_WEIGHT_LIMIT * 100


def clone_names(n: int) -> dict[str, str]:
    return {f"S{i:03d}USDT": SOURCES[(i - 1) % len(SOURCES)] for i in range(1, n + 1)}


async def measure(ex: BinanceFutures, fake: FakeBinanceFutures, work: Callable[[], Awaitable[str]]) -> Measured:
    ex.begin_scan()
    waits, charged, seen, at = ex.weight.throttle_waits, fake.weight_charged, len(fake.requests), fake.now
    note = await work()
    return Measured(at=at, weight=ex.scan_weight, requests=ex.weight.scan_requests,
                    fake_weight=fake.weight_charged - charged, fake_requests=len(fake.requests) - seen,
                    header_ok=ex.used_weight == fake.used_weight, throttle_waits=ex.weight.throttle_waits - waits,
                    note=note)


async def bench_size(n: int, scans: int) -> SizeResult:
    # The bundled symbols are left out of exchangeInfo (symbols=()) so the universe is exactly the clones.
    async with FakeBinanceFutures(start=START, symbols=(), clones=clone_names(n)) as fake:
        clock = ServerClock(fake)

        async def sleep(seconds: float) -> None:  # a throttle pause moves the exchange's clock, not ours
            await fake.advance(timedelta(seconds=seconds))

        ex = BinanceFutures(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock, sleep=sleep,
                            weight_budget_pct=BUDGET_PCT)
        try:
            startup = await measure(ex, fake, _noted(ex.open()))
            market = MarketDataService(ex, clock, timeframes=TIMEFRAMES, history=HISTORY,
                                       max_concurrency=CONCURRENCY, universe_size=n, fixed_symbols=(),
                                       blacklist=(), min_quote_volume=MIN_QUOTE_VOLUME,
                                       universe_ttl_seconds=3600)

            async def scan() -> str:
                refreshed = market._universe_at  # read only, to label the refreshes
                universe = await market.universe()
                snapshot = await market.snapshot(universe)
                if len(snapshot.symbols) != n or snapshot.rejected or snapshot.aborted:
                    raise RuntimeError(f"scan of {n} symbols incomplete: {len(snapshot.symbols)} ok, "
                                       f"rejected {snapshot.rejected}, aborted {snapshot.aborted}")
                return _closes(fake.now) + (" +universe" if market._universe_at != refreshed else "")

            cold = await measure(ex, fake, scan)
            warm: list[Measured] = []
            for k in range(1, scans + 1):
                await fake.set_time(START + k * SCAN_EVERY)
                warm.append(await measure(ex, fake, scan))

            async def monitor() -> str:
                positions = await ex.positions()
                orders = await ex.open_protective_orders()
                await ex.balance()
                return f"{len(positions)} positions, {len(orders)} algo orders"

            await fake.advance(timedelta(minutes=1))  # a fresh weight minute for the ticks
            monitor_flat = await measure(ex, fake, monitor)
            for symbol in list(fake.symbols)[:3]:
                fake.open_position_by_hand(symbol, "BUY", Decimal("0.01") if fake.source_of(symbol) != "SOLUSDT"
                                           else Decimal("1"))
            monitor_open = await measure(ex, fake, monitor)
        finally:
            await ex.close()
    return SizeResult(n, startup, cold, warm, monitor_flat, monitor_open)


def _noted(coro: Awaitable[None]) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        await coro
        return "time + exchangeInfo + leverageBracket"
    return run


def _closes(now: datetime) -> str:
    """Which of the timeframes closed a candle at this scan (5m always does)."""
    minutes = now.hour * 60 + now.minute
    closed = [tf for tf, m in (("15m", 15), ("1h", 60), ("4h", 240)) if minutes % m == 0]
    return "+".join(["5m", *closed])


def report(results: Sequence[SizeResult], scans: int, elapsed: float) -> None:
    first_hour = min(12, scans)
    print(f"Binance request weight per scan - real BinanceFutures/AsyncClient against FakeBinanceFutures on "
          f"127.0.0.1 ({elapsed:.1f} s)")
    print(f"scan = universe (ticker/24hr, all symbols: weight 40, refreshed hourly) + klines for every symbol x "
          f"{','.join(TIMEFRAMES)}, history {HISTORY}")
    print(f"limit {DEFAULT_WEIGHT_LIMIT}/min; the adapter throttles at BINANCE_WEIGHT_BUDGET_PCT={BUDGET_PCT:g} % "
          f"= {int(DEFAULT_WEIGHT_LIMIT * BUDGET_PCT / 100)}/min; target: warm 100-symbol scan < {TARGET_PCT:g} % "
          f"= {int(DEFAULT_WEIGHT_LIMIT * TARGET_PCT / 100)}")
    print()
    head = (f"{'symbols':>7} | {'cold scan':^20} | {'warm, +5 min':^20} | {f'warm mean, {first_hour} scans':^20} | "
            f"{f'warm mean, {scans} scans':^20} | {'warm max':^20} | throttled")
    print(head)
    print(f"{'':>7} | " + " | ".join([f"{'weight':>6} {'%':>6} {'req':>6}"] * 5) + " |")
    print("-" * len(head))
    for r in results:
        hour, every = r.warm[:first_hour], r.warm
        worst = max(every, key=lambda m: m.weight)
        cells = [_cell(r.cold.weight, r.cold.requests), _cell(every[0].weight, every[0].requests),
                 _cell(_mean(hour, "weight"), _mean(hour, "requests")),
                 _cell(_mean(every, "weight"), _mean(every, "requests")), _cell(worst.weight, worst.requests)]
        throttled = sum(m.throttle_waits for m in (r.startup, r.cold, *every, r.monitor_flat, r.monitor_open))
        print(f"{r.symbols:>7} | " + " | ".join(cells) + f" | {throttled} pauses")
    print()
    big = results[-1]
    print(f"warm scans of {big.symbols} symbols by the candles that closed (weight = one request per symbol and "
          f"timeframe to fetch):")
    groups: dict[str, list[Measured]] = {}
    for m in big.warm:
        groups.setdefault(m.note, []).append(m)
    for note, ms in sorted(groups.items(), key=lambda kv: kv[1][0].weight):
        weights = sorted({m.weight for m in ms})
        print(f"  {note:<22} x{len(ms):<3}  weight {'/'.join(map(str, weights)):>9}  "
              f"({'/'.join(f'{pct(w):.1f}' for w in weights)} % of {DEFAULT_WEIGHT_LIMIT})  "
              f"{'<' if max(weights) < DEFAULT_WEIGHT_LIMIT * TARGET_PCT / 100 else '>='} {TARGET_PCT:g} %")
    print()
    print("monitor tick (positionRisk v2 + openAlgoOrders all symbols + account v3; symbolConfig when a "
          "position is open):")
    for r in results:
        print(f"  {r.symbols:>3} symbols: flat {r.monitor_flat.weight} ({r.monitor_flat.requests} req), "
              f"{r.monitor_open.note}: {r.monitor_open.weight} ({r.monitor_open.requests} req) = "
              f"{pct(r.monitor_open.weight):.1f} % per tick; every {MONITOR_SECONDS} s that is "
              f"{r.monitor_open.weight * 60 / MONITOR_SECONDS:.0f}/min")
    print(f"start-up (open): weight {big.startup.weight} ({big.startup.note})")
    worst_minute = max(m.weight for m in big.warm) + big.monitor_open.weight * max(1, 60 // MONITOR_SECONDS)
    print(f"busiest minute, {big.symbols} symbols warm: heaviest scan + monitor ticks = {worst_minute} "
          f"({pct(worst_minute):.1f} %); cold start minute: {big.startup.weight + big.cold.weight} + monitor "
          f"({pct(big.startup.weight + big.cold.weight):.1f} % + ticks)")
    print()
    measured = [m for r in results for m in (r.startup, r.cold, *r.warm, r.monitor_flat, r.monitor_open)]
    bad = [m for m in measured if not m.consistent]
    if bad:
        print(f"CROSS-CHECK FAILED for {len(bad)} of {len(measured)} measurements, e.g. {bad[0]}")
    else:
        print(f"cross-check: all {len(measured)} measurements agree - adapter scan_weight == weight the fake "
              f"charged, adapter requests == requests the fake saw, adapter used_weight == "
              f"X-MBX-USED-WEIGHT-1M count")
    warm_mean = statistics.fmean(m.weight for m in big.warm)
    over = [m for m in big.warm if pct(m.weight) >= TARGET_PCT]
    verdict = "met" if pct(warm_mean) < TARGET_PCT else "MISSED"
    print(f"target (warm {big.symbols}-symbol scan < {TARGET_PCT:g} % of {DEFAULT_WEIGHT_LIMIT}/min): {verdict} "
          f"on average ({pct(warm_mean):.1f} %, median {pct(statistics.median(m.weight for m in big.warm)):.1f} %); "
          f"{len(over)} of {len(big.warm)} warm scans at or above it"
          + (f" ({', '.join(sorted({m.note for m in over}))}; up to {pct(max(m.weight for m in over)):.1f} %)"
             if over else ""))


def _mean(ms: Sequence[Measured], attr: str) -> float:
    return statistics.fmean(getattr(m, attr) for m in ms)


def _cell(weight: float, requests: float) -> str:
    w = f"{weight:.0f}" if float(weight).is_integer() else f"{weight:.1f}"
    r = f"{requests:.0f}" if float(requests).is_integer() else f"{requests:.1f}"
    return f"{w:>6} {pct(weight):>5.1f}% {r:>6}"


async def run(sizes: Sequence[int], scans: int) -> None:
    started = time.perf_counter()
    results = [await bench_size(n, scans) for n in sizes]
    report(results, scans, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=48, help="warm 5-minute scans after the cold one (48 = 4 h)")
    parser.add_argument("--sizes", default="10,50,100", help="universe sizes, comma separated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.scans < 1 or not sizes or min(sizes) < 1:
        parser.error("--scans and every size must be >= 1")
    asyncio.run(run(sizes, args.scans))


if __name__ == "__main__":
    main()
