"""Fast loading of recorded candles and funding for the vectorised backtests (``SYMBOL-5m.csv.gz`` and
``SYMBOL-funding.csv.gz`` in the ``../shared/data/binance-futures`` layout), cut to a time window.

The kline files are sorted by open time, so they are read in chunks with pandas' C parser (only the price
columns, fixed dtypes) and reading stops at the first chunk past the window: a window at the start of a long
file costs only its share. Gaps (missing 5m candles) are found here and reported; callers never bridge them.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.clock import from_ms, to_ms
from engine.backtest.results import DataGap
from engine.exchange.historical import _discover_symbols, _first_existing, _read_exchange_info
from engine.exchange.rules import parse_symbol_rules
from engine.exchange.types import SymbolRules

log = logging.getLogger(__name__)

CANDLE_MS = 300_000
_PRICE_COLUMNS = ("open_time", "open", "high", "low", "close")
_DTYPES = {"open_time": "int64", "open": "float64", "high": "float64", "low": "float64", "close": "float64"}
_CHUNK_ROWS = 100_000


class DataError(ValueError):
    """The data cannot answer the request (unknown symbol, nothing in the window); the message says what to do."""


@dataclass(frozen=True, slots=True)
class Candles:
    """5m candles of one symbol, ascending, without duplicates; float64 prices, int64 epoch-ms open times."""

    symbol: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    def split(self, at_ms: int) -> tuple[Candles, Candles]:
        """(candles opening before ``at_ms``, the rest)."""
        k = int(np.searchsorted(self.open_time, at_ms, side="left"))
        cols = (self.open_time, self.open, self.high, self.low, self.close)
        return (Candles(self.symbol, *(c[:k] for c in cols)), Candles(self.symbol, *(c[k:] for c in cols)))

    def segments(self) -> list[tuple[int, int]]:
        """``[start, stop)`` index ranges of contiguous 5m candles."""
        if len(self) == 0:
            return []
        breaks = np.flatnonzero(np.diff(self.open_time) != CANDLE_MS) + 1
        bounds = [0, *breaks.tolist(), len(self)]
        return list(itertools.pairwise(bounds))

    def gaps(self) -> list[DataGap]:
        return [DataGap(self.symbol, from_ms(int(self.open_time[b - 1]) + CANDLE_MS), from_ms(int(self.open_time[b])))
                for _, b in self.segments()[:-1]]


@dataclass(frozen=True, slots=True)
class Funding:
    time: np.ndarray   # int64 epoch ms, ascending
    rate: np.ndarray   # float64 fraction (0.0001 = 0.01 %)


def available_symbols(data_dir: Path) -> list[str]:
    return _discover_symbols(data_dir)


def load_candles(data_dir: Path, symbol: str, start: datetime, end: datetime, *, warmup: int = 0) -> Candles:
    """Candles with ``start <= open_time < end``, plus up to ``warmup`` candles just before ``start``."""
    path = Path(data_dir) / f"{symbol}-5m.csv.gz"
    if not path.exists():
        raise DataError(f"no 5m kline file for {symbol} in {data_dir} (expected {path.name})")
    lo = to_ms(start) - warmup * CANDLE_MS
    hi = to_ms(end)
    parts = []
    with pd.read_csv(path, engine="c", usecols=list(_PRICE_COLUMNS), dtype=_DTYPES, chunksize=_CHUNK_ROWS) as reader:
        for chunk in reader:
            times = chunk["open_time"].to_numpy()
            parts.append(chunk[(times >= lo) & (times < hi)])
            if len(times) and times[-1] >= hi and bool(np.all(times[1:] > times[:-1])):
                break  # sorted file: everything after this chunk is past the window
    df = pd.concat(parts) if parts else pd.DataFrame(columns=list(_PRICE_COLUMNS))
    df = df.sort_values("open_time", kind="stable").drop_duplicates("open_time", keep="last")
    times = df["open_time"].to_numpy(dtype=np.int64)
    aligned = times % CANDLE_MS == 0
    if not aligned.all():
        log.warning("%s: %d candles not aligned to 5 minutes dropped", symbol, int((~aligned).sum()))
        df = df[aligned]
    cols = {c: df[c].to_numpy(dtype=np.float64 if c != "open_time" else np.int64) for c in _PRICE_COLUMNS}
    return Candles(symbol, cols["open_time"], cols["open"], cols["high"], cols["low"], cols["close"])


def load_funding(data_dir: Path, symbol: str) -> Funding:
    path = Path(data_dir) / f"{symbol}-funding.csv.gz"
    if not path.exists():
        log.warning("%s missing: no funding for %s", path.name, symbol)
        return Funding(np.empty(0, dtype=np.int64), np.empty(0))
    df = pd.read_csv(path, engine="c", dtype={"funding_time": "int64", "funding_rate": "float64"})
    df = df.sort_values("funding_time", kind="stable").drop_duplicates("funding_time", keep="last")
    return Funding(df["funding_time"].to_numpy(dtype=np.int64), df["funding_rate"].to_numpy(dtype=np.float64))


def load_rules(data_dir: Path, symbols: list[str], exchange_info: Path | None = None) -> dict[str, SymbolRules]:
    """Symbol filters from ``exchange_info`` or the folder's ``exchange_info.json`` (or ``../exchangeinfo/``)."""
    path = exchange_info or _first_existing(Path(data_dir) / "exchange_info.json",
                                            Path(data_dir).parent / "exchangeinfo" / "binance_usdm_markets.json")
    if not path.exists():
        raise DataError(f"no symbol rules: {path} does not exist (pass --exchange-info FILE, a raw exchangeInfo "
                        "JSON with a \"symbols\" list)")
    entries = _read_exchange_info(path)
    missing = [s for s in symbols if s not in entries]
    if missing:
        raise DataError(f"{', '.join(missing)} not in {path} (pass --exchange-info FILE with its exchangeInfo entry)")
    return {s: parse_symbol_rules(entries[s]) for s in symbols}
