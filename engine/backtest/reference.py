"""The slow reference signal tables: the live scan itself (``MarketDataService.snapshot`` over the recorded data,
then ``strategies.scanner.evaluate_snapshot``) run at every scan time, its answers stored per symbol and candle.

Exact by construction (it IS the live code path, with the same cache history as the replay's trader), and slow
(one full scan per step). The vectorised ``strategies.signal_table`` replaces it; the engine parity tests use
this one. The market data service runs its coroutines on one private event loop, outside the fast engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from core.clock import ManualClock, to_ms
from engine.market import MarketDataService
from strategies.consensus import Consensus
from strategies.scanner import SymbolContext, evaluate_snapshot
from strategies.types import Signal

BASE_MS = 300_000


class ReferenceSignals:
    """One symbol's table (see ``engine.backtest.signals.SymbolSignals``)."""

    def __init__(self, n: int) -> None:
        self.direction = np.zeros(n, dtype=np.int8)
        self.score = np.zeros(n, dtype=np.float64)
        self._signals: dict[int, Signal] = {}
        self._contexts: dict[int, SymbolContext | None] = {}

    def put(self, i: int, signal: Signal, context: SymbolContext | None) -> None:
        self._signals[i] = signal
        self._contexts[i] = context
        self.direction[i] = int(signal.direction)
        self.score[i] = signal.score

    def signal_at(self, i: int) -> Signal | None:
        return self._signals.get(i)

    def context_at(self, i: int) -> SymbolContext | None:
        return self._contexts.get(i)


def build_reference_signals(service: MarketDataService, clock: ManualClock, consensus: Consensus,
                            open_times: dict[str, np.ndarray], scan_times: Sequence[datetime], *,
                            stop_timeframe: str | None) -> dict[str, ReferenceSignals]:
    """Run the live scan at each of ``scan_times`` (ascending) with ``service`` (over a HistoricalMarket that
    reads ``clock``); store each symbol's signal under the index of the 5m candle that just closed."""
    tables = {s: ReferenceSignals(len(t)) for s, t in open_times.items()}

    async def run() -> None:
        for when in scan_times:
            clock.set(when)
            universe = await service.universe()
            result = evaluate_snapshot(await service.snapshot(universe), consensus, stop_timeframe=stop_timeframe)
            now_ms = to_ms(when)
            expected = (now_ms // BASE_MS) * BASE_MS - BASE_MS
            for symbol, signal in result.signals.items():
                times = open_times[symbol]
                i = int(np.searchsorted(times, expected, side="right")) - 1
                if i >= 0 and int(times[i]) == expected:
                    tables[symbol].put(i, signal, result.context(symbol))

    asyncio.run(run())
    return tables


def scan_times(start: datetime, end: datetime, scan_every: int, delay: timedelta) -> list[datetime]:
    """The replay's scan moments: every ``scan_every``-th 5m step from ``start``, ``delay`` after the close."""
    out = []
    step, t = 0, start
    while t + delay <= end:
        if step % scan_every == 0:
            out.append(t + delay)
        step += 1
        t += timedelta(milliseconds=BASE_MS)
    return out
