"""``HistoricalMarket``: the ``MarketData`` protocol over recorded Binance data, replayed against a clock.

Reads a folder in the ``data/sample`` / ``../shared/data/binance-futures`` format:

- ``SYMBOL-5m.csv.gz`` — 5m klines ``open_time,open,high,low,close,volume`` (ms UTC, last price)
- ``SYMBOL-funding.csv.gz`` — ``funding_time,funding_rate`` (optional; no file = no funding)
- ``exchange_info.json`` — raw ``exchangeInfo`` (``{"symbols": [...]}``)
- ``leverage_brackets.json`` — ``{"symbols": [{"symbol", "brackets"}], "default": [...]}``

When the folder has no ``exchange_info.json`` (the shared data folder), ``../exchangeinfo/
binance_usdm_markets.json`` next to it is used, then the bundled ``data/sample`` files. Symbols without an
exchangeInfo entry are skipped with a warning unless ``rules`` supplies theirs.

Everything is loaded once into numpy arrays; higher timeframes (15m … 1d) are built at load time from
5m candles aligned to UTC boundaries, and a higher-timeframe candle exists only if all of its 5m candles
do (gaps are never bridged). Every query answers only with what was known at ``clock.now()``: candles
that have closed (``open_time + interval <= now``) and funding settled at or before now.

The mark price is approximated by the last price: the open of the 5m candle containing ``now``.
``klines`` does not cap ``limit`` at Binance's 1500 (callers that page anyway are unaffected) and answers
only 5m and the resampled intervals; finer ones raise ``ValueError`` (see ``min_interval``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clock import Clock, from_ms, to_ms
from core.intervals import interval_ms
from engine.exchange.errors import ExchangeError, UnknownSymbol
from engine.exchange.rules import parse_brackets, parse_symbol_rules
from engine.exchange.types import FundingRate, KlineBatch, LeverageBracket, MarkPrice, SymbolRules, Ticker24h

log = logging.getLogger(__name__)

BASE_INTERVAL = "5m"
BASE_MS = interval_ms(BASE_INTERVAL)
RESAMPLED = ("15m", "30m", "1h", "2h", "4h", "1d")
INTERVALS = (BASE_INTERVAL, *RESAMPLED)
FUNDING_PERIOD_MS = 8 * 3_600_000
DAY_MS = 86_400_000
#: A symbol "has data at now" when its last closed 5m candle closed at most this long ago.
STALE_AFTER_MS = 3 * BASE_MS
BUNDLED_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


@dataclass(frozen=True, slots=True)
class _Series:
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def batch(self, symbol: str, interval: str, start: int, stop: int) -> KlineBatch:
        sl = slice(start, stop)
        return KlineBatch(symbol, interval, self.open_time[sl].copy(), self.open[sl].copy(),
                          self.high[sl].copy(), self.low[sl].copy(), self.close[sl].copy(),
                          self.volume[sl].copy())


@dataclass(frozen=True, slots=True)
class _Funding:
    time: np.ndarray  # int64 ms, ascending
    rates: tuple[Decimal, ...]


@dataclass(slots=True)
class _SymbolData:
    series: dict[str, _Series]
    funding: _Funding
    quote_cumsum: np.ndarray  # cumulative close*volume of 5m candles, with a leading 0


class HistoricalMarket:
    """Recorded Binance USDⓈ-M market data served as of ``clock.now()``."""

    #: Finest kline interval available; PaperExchange raises its trigger interval to this.
    min_interval = BASE_INTERVAL
    #: Market data answers from memory, never waiting on I/O (``MarketDataService`` then asks symbol by symbol
    #: instead of in concurrent tasks: the same work in the same order, without a task per symbol).
    answers_inline = True

    def __init__(self, data_dir: Path | str, clock: Clock, symbols: Iterable[str] | None = None, *,
                 exchange_info: Path | None = None, leverage_brackets: Path | None = None,
                 rules: Mapping[str, SymbolRules] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        available = _discover_symbols(self.data_dir)
        wanted = [s.upper() for s in symbols] if symbols is not None else available
        missing = [s for s in wanted if s not in available]
        if missing:
            raise UnknownSymbol(f"no 5m kline file for {', '.join(missing)} in {self.data_dir}")
        self._rules = self._load_rules(wanted, exchange_info, leverage_brackets, rules or {})
        self._data: dict[str, _SymbolData] = {s: self._load_symbol(s) for s in wanted if s in self._rules}
        # the last mark price per symbol with its time: a replay step asks for it several times at one instant
        self._marks: dict[str, MarkPrice] = {}
        log.info("historical market: %d symbols from %s", len(self._data), self.data_dir)

    # --- loading ---------------------------------------------------------------------------
    def _load_rules(self, symbols: list[str], exchange_info: Path | None, brackets_file: Path | None,
                    overrides: Mapping[str, SymbolRules]) -> dict[str, SymbolRules]:
        entries = _read_exchange_info(exchange_info or _first_existing(
            self.data_dir / "exchange_info.json",
            self.data_dir.parent / "exchangeinfo" / "binance_usdm_markets.json",
            BUNDLED_SAMPLE / "exchange_info.json"))
        per_symbol, default = _read_brackets(brackets_file or _first_existing(
            self.data_dir / "leverage_brackets.json", BUNDLED_SAMPLE / "leverage_brackets.json"))
        out: dict[str, SymbolRules] = {}
        for symbol in symbols:
            if symbol in overrides:
                out[symbol] = overrides[symbol]
            elif symbol in entries:
                out[symbol] = parse_symbol_rules(entries[symbol], per_symbol.get(symbol, default))
            else:
                log.warning("%s has kline data but no exchangeInfo entry: skipped", symbol)
        return out

    def _load_symbol(self, symbol: str) -> _SymbolData:
        base = _read_klines(self.data_dir / f"{symbol}-5m.csv.gz", symbol)
        series = {BASE_INTERVAL: base}
        for interval in RESAMPLED:
            series[interval] = _resample(base, interval_ms(interval))
        quote = np.concatenate(([0.0], np.cumsum(base.close * base.volume)))
        return _SymbolData(series, _read_funding(self.data_dir / f"{symbol}-funding.csv.gz"), quote)

    # --- helpers ----------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return list(self._data)

    @property
    def rules(self) -> dict[str, SymbolRules]:
        """Symbol rules of the loaded symbols (what ``symbol_rules()`` answers)."""
        return {s: r for s, r in self._rules.items() if s in self._data}

    def _symbol(self, symbol: str) -> _SymbolData:
        try:
            return self._data[symbol]
        except KeyError:
            raise UnknownSymbol(f"{symbol}: no historical data for this symbol", code=-1121) from None

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    def history(self, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                            tuple[Decimal, ...]]:
        """The whole recorded history of ``symbol`` (not clock-bound; for backtest engines): 5m open times, open,
        high, low, close, then funding times and rates."""
        data = self._symbol(symbol)
        base = data.series[BASE_INTERVAL]
        return base.open_time, base.open, base.high, base.low, base.close, data.funding.time, data.funding.rates

    def base_klines(self, symbol: str) -> KlineBatch:
        """The whole recorded 5m history of ``symbol`` as one batch (not clock-bound; for backtest engines)."""
        base = self._symbol(symbol).series[BASE_INTERVAL]
        return base.batch(symbol, BASE_INTERVAL, 0, len(base.open_time))

    def data_range(self, symbol: str) -> tuple[datetime, datetime]:
        """Open time of the first and of the last 5m candle of ``symbol``."""
        times = self._symbol(symbol).series[BASE_INTERVAL].open_time
        return from_ms(int(times[0])), from_ms(int(times[-1]))

    def _closed_end(self, series: _Series, ms: int, now_ms: int) -> int:
        """Index one past the last candle closed at ``now_ms``."""
        return int(np.searchsorted(series.open_time, now_ms - ms, side="right"))

    # --- MarketData ---------------------------------------------------------------------------
    async def symbol_rules(self) -> dict[str, SymbolRules]:
        return dict(self._rules)

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        data = self._symbol(symbol)
        series = data.series.get(interval)
        if series is None:
            raise ValueError(f"historical data serves {', '.join(INTERVALS)} klines, not {interval!r}")
        end = self._closed_end(series, interval_ms(interval), self._now_ms())
        limit = max(int(limit), 0)
        if start_ms is None:
            start = max(end - limit, 0)
        else:
            start = min(int(np.searchsorted(series.open_time, start_ms, side="left")), end)
            end = min(end, start + limit)
        return series.batch(symbol, interval, start, end)

    async def tickers_24h(self) -> list[Ticker24h]:
        now_ms = self._now_ms()
        out = []
        for symbol, data in self._data.items():
            ticker = self._ticker(symbol, data, now_ms)
            if ticker is not None:
                out.append(ticker)
        return out

    def _ticker(self, symbol: str, data: _SymbolData, now_ms: int) -> Ticker24h | None:
        base = data.series[BASE_INTERVAL]
        end = self._closed_end(base, BASE_MS, now_ms)
        if end == 0 or int(base.open_time[end - 1]) + BASE_MS < now_ms - STALE_AFTER_MS:
            return None
        last_close_time = int(base.open_time[end - 1]) + BASE_MS
        start = int(np.searchsorted(base.open_time, last_close_time - DAY_MS, side="left"))
        first_open = float(base.open[start])
        last = float(base.close[end - 1])
        quote_volume = float(data.quote_cumsum[end] - data.quote_cumsum[start])
        change = (last - first_open) / first_open * 100.0 if first_open else 0.0
        return Ticker24h(symbol, _dec(last), Decimal(f"{quote_volume:.2f}"), Decimal(f"{change:.3f}"))

    async def mark_price(self, symbol: str) -> MarkPrice:
        data = self._symbol(symbol)
        now = self.clock.now()
        known = self._marks.get(symbol)
        if known is not None and known.time == now:
            return known
        now_ms = to_ms(now)
        base = data.series[BASE_INTERVAL]
        i = int(np.searchsorted(base.open_time, now_ms, side="right")) - 1
        if i < 0:
            raise ExchangeError(f"{symbol}: no market data at {now.isoformat()} (data starts "
                                f"{from_ms(int(base.open_time[0])).isoformat()})")
        # The candle containing now: its open is the price at now. Otherwise the last close seen.
        price = base.open[i] if now_ms < int(base.open_time[i]) + BASE_MS else base.close[i]
        rate, next_time = self._funding_at(data.funding, now_ms)
        mark = self._marks[symbol] = MarkPrice(symbol, _dec(float(price)), rate, from_ms(next_time), now)
        return mark

    def _funding_at(self, funding: _Funding, now_ms: int) -> tuple[Decimal, int]:
        j = int(np.searchsorted(funding.time, now_ms, side="right"))
        rate = funding.rates[j - 1] if j > 0 else Decimal(0)
        if j < len(funding.time):
            return rate, int(funding.time[j])
        last = int(funding.time[-1]) if len(funding.time) else now_ms - now_ms % FUNDING_PERIOD_MS
        periods = (now_ms - last) // FUNDING_PERIOD_MS + 1
        return rate, last + periods * FUNDING_PERIOD_MS

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        funding = self._symbol(symbol).funding
        end_ms = min(to_ms(end), self._now_ms())  # never settled in the future
        lo = int(np.searchsorted(funding.time, to_ms(start), side="left"))
        hi = int(np.searchsorted(funding.time, end_ms, side="right"))
        return [FundingRate(symbol, from_ms(int(funding.time[k])), funding.rates[k]) for k in range(lo, hi)]

    async def close(self) -> None:
        return None


# --- file readers ------------------------------------------------------------------------------
def _discover_symbols(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"market data folder {data_dir} does not exist")
    return sorted(p.name.removesuffix("-5m.csv.gz") for p in data_dir.glob("*-5m.csv.gz"))


def _first_existing(*paths: Path) -> Path:
    for p in paths:
        if p.exists():
            return p
    return paths[-1]


def _read_exchange_info(path: Path) -> dict[str, dict[str, Any]]:
    raw = json.loads(path.read_text())
    entries = raw.get("symbols", []) if isinstance(raw, dict) else raw
    return {e["symbol"]: e for e in entries if isinstance(e, dict) and "symbol" in e}


def _read_brackets(path: Path) -> tuple[dict[str, tuple[LeverageBracket, ...]], tuple[LeverageBracket, ...]]:
    raw = json.loads(path.read_text())
    per_symbol = {e["symbol"]: parse_brackets(e["brackets"]) for e in raw.get("symbols", [])}
    return per_symbol, parse_brackets(raw.get("default", []))


def _read_klines(path: Path, symbol: str) -> _Series:
    df = pd.read_csv(path, dtype={"open_time": "int64", "open": "float64", "high": "float64",
                                  "low": "float64", "close": "float64", "volume": "float64"})
    df = df.sort_values("open_time", kind="stable").drop_duplicates("open_time", keep="last")
    times = df["open_time"].to_numpy(dtype=np.int64)
    misaligned = int(np.count_nonzero(times % BASE_MS))
    if misaligned:
        log.warning("%s: %d 5m candles not aligned to 5 minutes dropped", symbol, misaligned)
        df = df[times % BASE_MS == 0]
        times = df["open_time"].to_numpy(dtype=np.int64)
    gaps = int(np.count_nonzero(np.diff(times) != BASE_MS))
    if gaps:
        log.warning("%s: %d gaps in the 5m data; they are not bridged", symbol, gaps)
    return _Series(times, *(df[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")))


def _read_funding(path: Path) -> _Funding:
    if not path.exists():
        log.warning("%s missing: no funding for this symbol", path.name)
        return _Funding(np.empty(0, dtype=np.int64), ())
    df = pd.read_csv(path, dtype={"funding_time": "int64", "funding_rate": str})
    df = df.sort_values("funding_time", kind="stable").drop_duplicates("funding_time", keep="last")
    return _Funding(df["funding_time"].to_numpy(dtype=np.int64),
                    tuple(Decimal(r.strip()) for r in df["funding_rate"]))


def _resample(base: _Series, ms: int) -> _Series:
    """Candles of ``ms`` built from complete groups of UTC-aligned 5m candles."""
    if len(base.open_time) == 0:
        return base
    keys = base.open_time - base.open_time % ms
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    full = counts == ms // BASE_MS
    ends = starts + counts - 1
    out = _Series(
        keys[starts],
        base.open[starts],
        np.maximum.reduceat(base.high, starts),
        np.minimum.reduceat(base.low, starts),
        base.close[ends],
        np.add.reduceat(base.volume, starts),
    )
    return _Series(*(a[full] for a in (out.open_time, out.open, out.high, out.low, out.close, out.volume)))


def _dec(value: float) -> Decimal:
    """Decimal of a float's shortest repr ("93514.2", not the binary expansion)."""
    return Decimal(repr(float(value)))
