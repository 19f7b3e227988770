"""Test helpers for market data, features and voters: real sample candles and a hand-written MarketData."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.clock import Clock, to_ms
from core.intervals import interval_ms
from engine.exchange.errors import ExchangeError
from engine.exchange.types import FundingRate, KlineBatch, MarkPrice, SymbolRules, Ticker24h
from engine.market import resample_klines
from strategies.features import Features, TimeframeFeatures

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
SAMPLE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC, first candle of the sample


@lru_cache(maxsize=16)
def sample_frame(symbol: str) -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DIR / f"{symbol}-5m.csv.gz")


@lru_cache(maxsize=32)
def sample_klines(symbol: str, interval: str = "5m") -> KlineBatch:
    """The bundled real 5m candles of ``symbol``, resampled to ``interval`` (complete buckets only)."""
    d = sample_frame(symbol)
    batch = KlineBatch(symbol, "5m", d["open_time"].to_numpy(np.int64), *(d[c].to_numpy(np.float64)
                       for c in ("open", "high", "low", "close", "volume")))
    return batch if interval == "5m" else resample_klines(batch, interval)


def window(batch: KlineBatch, end_ms: int, size: int) -> KlineBatch:
    """The last ``size`` candles of ``batch`` closed at ``end_ms`` (open_time + interval <= end_ms)."""
    stop = int(np.searchsorted(batch.open_time, end_ms - interval_ms(batch.interval), side="right"))
    return batch.slice(max(0, stop - size), stop)


def make_batch(symbol: str = "TESTUSDT", interval: str = "5m", *, n: int = 100, start_ms: int = T0,
               close: list[float] | np.ndarray | None = None, volume: float = 10.0) -> KlineBatch:
    """A clean synthetic series: gentle random walk (or the given closes), valid OHLC, on the grid."""
    iv = interval_ms(interval)
    if close is None:
        rng = np.random.default_rng(7)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    o = np.concatenate(([c[0]], c[:-1]))
    h = np.maximum(o, c) * 1.001
    lo = np.minimum(o, c) * 0.999
    t = start_ms + iv * np.arange(n, dtype=np.int64)
    return KlineBatch(symbol, interval, t, o, h, lo, c, np.full(n, volume))


def rules(symbol: str, *, status: str = "TRADING", contract_type: str = "PERPETUAL",
          quote: str = "USDT") -> SymbolRules:
    d = Decimal
    return SymbolRules(symbol=symbol, status=status, base_asset=symbol.removesuffix(quote), quote_asset=quote,
                       tick_size=d("0.01"), min_price=d("0.01"), max_price=d("1000000"), step_size=d("0.001"),
                       min_qty=d("0.001"), max_qty=d("1000"), market_step_size=d("0.001"),
                       market_min_qty=d("0.001"), market_max_qty=d("1000"), min_notional=d("5"),
                       contract_type=contract_type)


@dataclass
class FakeMarketData:
    """In-memory ``MarketData`` over full candle histories, answering like Binance at ``clock.now()``.

    ``klines`` returns candles with ``open_time <= now`` (so the newest may be forming), from ``start_ms``
    (inclusive) or the latest ``limit``. Every call is recorded; ``fail`` makes a symbol raise.
    """

    clock: Clock
    series: dict[tuple[str, str], KlineBatch] = field(default_factory=dict)
    symbol_info: dict[str, SymbolRules] = field(default_factory=dict)
    tickers: list[Ticker24h] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)
    calls: list[tuple[str, str, int | None, int]] = field(default_factory=list)
    ticker_calls: int = 0
    rules_calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def add(self, batch: KlineBatch) -> None:
        self.series[(batch.symbol, batch.interval)] = batch
        self.symbol_info.setdefault(batch.symbol, rules(batch.symbol))

    @property
    def candles_served(self) -> int:
        return sum(n for *_, n in self.calls)

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        self.rules_calls += 1
        return dict(self.symbol_info)

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # yield to the loop, as a real request would
            if symbol in self.fail:
                raise self.fail[symbol]
            full = self.series.get((symbol, interval))
            if full is None:
                raise ExchangeError(f"Invalid symbol {symbol}", code=-1121)
            visible = int(np.searchsorted(full.open_time, to_ms(self.clock.now()), side="right"))
            if start_ms is None:
                out = full.slice(max(0, visible - limit), visible)
            else:
                first = int(np.searchsorted(full.open_time, start_ms, side="left"))
                out = full.slice(first, min(visible, first + limit))
            self.calls.append((symbol, interval, start_ms, len(out)))
            return out
        finally:
            self.in_flight -= 1

    async def tickers_24h(self) -> list[Ticker24h]:
        self.ticker_calls += 1
        return list(self.tickers)

    async def mark_price(self, symbol: str) -> MarkPrice:
        raise NotImplementedError

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        return []

    async def close(self) -> None:
        return None


def ticker(symbol: str, quote_volume: str) -> Ticker24h:
    return Ticker24h(symbol, Decimal("1"), Decimal(quote_volume), Decimal("0"))


# ---- hand-set features ----------------------------------------------------------------------------

FEATURE_TFS = ("5m", "15m", "1h", "4h")


def tff(interval: str, direction: int = 1, **overrides: float) -> TimeframeFeatures:
    """Features of a clean trend in ``direction`` (+1 up, -1 down) on one timeframe."""
    s = direction
    values = dict(interval=interval, open_time=T0, candles=300, close=100.0 + 1.0 * s, ema_fast=100.0 + 0.5 * s,
                  ema_slow=100.0 - 0.5 * s, ema_fast_slope=0.2 * s, trend=1.5 * s, extension=0.5 * s,
                  rsi=50.0 + 10.0 * s, macd=0.3 * s, macd_signal=0.1 * s, macd_hist=0.2 * s, macd_hist_prev=0.1 * s,
                  atr=1.0, atr_pct=1.0, adx=30.0, plus_di=30.0 if s > 0 else 15.0,
                  minus_di=15.0 if s > 0 else 30.0, ret_1=0.001 * s, ret_12=0.01 * s, volatility=0.002,
                  volume_z=0.0, bb_pct_b=0.5 + 0.3 * s, bb_width=0.04)
    values.update(overrides)
    return TimeframeFeatures(**values)  # type: ignore[arg-type]


def feats(direction: int = 1, tfs: tuple[str, ...] = FEATURE_TFS, **per_tf: dict) -> Features:
    frames = {tf: tff(tf, direction, **per_tf.get(f"tf_{tf}", {})) for tf in tfs}
    return Features("TESTUSDT", frames, tfs)
