"""Download 5m klines and funding-rate history from Binance USDⓈ-M futures into the market-data folder.

Market data comes from public endpoints (no keys): ``/fapi/v1/exchangeInfo``, ``/fapi/v1/klines`` (pages
of 1,000 candles, see ``KLINES_PAGE``) and ``/fapi/v1/fundingRate`` (one page per 999 hours), through
``BinanceFutures`` and so through its request-weight budget (it pauses for the next minute rather than pass
``BINANCE_WEIGHT_BUDGET_PCT`` of the limit), its retries of transient failures and its error translation.
fundingRate has a request limit of its own (500 per 5 minutes per IP); the same share of it is kept with a
sliding window. With API keys, ``/fapi/v1/leverageBracket`` (signed, read-only) is saved too as
``leverage_brackets.json``.

Resumable: for each symbol only what lies before the first and after the last row already in the file is
fetched (a gap inside a file is Binance's own: it has no candles for its outages). Fetched rows are
merged into the file every ``checkpoint_pages`` pages and when the download stops for any reason, each
time with an atomic replace, so a kill loses at most one checkpoint of work and never corrupts a file.
Only closed candles are stored; ``end`` is exclusive. Funding times are floored to the minute (Binance
stamps them a few milliseconds after the hour).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clock import Clock, SystemClock, from_ms, to_ms
from engine.datasets.store import (
    EXCHANGE_INFO,
    FUNDING_COLUMNS,
    KLINE_COLUMNS,
    KLINE_INTERVAL,
    KLINE_MS,
    LEVERAGE_BRACKETS,
    MINUTE_MS,
    funding_path,
    kline_path,
    merge_exchange_info,
    merge_into,
    merge_leverage_brackets,
    read_funding,
    read_klines,
    remove_stale_parts,
)
from engine.exchange.binance import BinanceFutures
from engine.exchange.errors import AuthenticationError, OrderRejected
from engine.exchange.historical import BUNDLED_SAMPLE
from engine.exchange.weight import RequestWindow, Sleep
from engine.progress import ProgressBar

log = logging.getLogger(__name__)

#: Candles per klines request. Weight is 5 for 500..1000 candles and 10 above: pages of 1,000 fetch 200 candles
#: per weight unit against 150 for Binance's maximum of 1,500, a third more history per minute of budget.
KLINES_PAGE = 1000
#: Funding is settled at most hourly; nothing can be missing within an hour after the last stored event.
MIN_FUNDING_INTERVAL_MS = 3_600_000
#: One fundingRate request per window of 999 h holds at most 999 events: always a single page of 1,000.
FUNDING_WINDOW_MS = 999 * MIN_FUNDING_INTERVAL_MS
#: ``/fapi/v1/fundingRate`` shares 500 requests per 5 minutes per IP with ``/fapi/v1/fundingInfo``.
FUNDING_REQUEST_LIMIT = 500
FUNDING_LIMIT_SECONDS = 300.0
DEFAULT_CHECKPOINT_PAGES = 20


class DownloadError(Exception):
    """A download request that cannot be served (unknown symbol, empty window); one readable line."""


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    symbols: tuple[str, ...]
    start: datetime  # inclusive
    end: datetime  # exclusive
    data_dir: Path

    def __post_init__(self) -> None:
        if not self.symbols:
            raise DownloadError("no symbols given; pass --symbols like BTCUSDT,ETHUSDT")
        if self.end <= self.start:
            raise DownloadError(f"--end ({self.end:%Y-%m-%d}) must be after --start ({self.start:%Y-%m-%d})")


@dataclass(frozen=True, slots=True)
class SymbolReport:
    symbol: str
    klines_added: int
    klines_in_window: int
    expected_in_window: int
    gaps: int
    funding_added: int
    first: datetime | None
    last: datetime | None

    def render(self) -> str:
        span = f"{self.first:%Y-%m-%d %H:%M} → {self.last:%Y-%m-%d %H:%M} UTC" if self.first and self.last \
            else "no candles in the window"
        missing = self.expected_in_window - self.klines_in_window
        gaps = f", {self.gaps} gap(s), {missing} candles missing (Binance has none)" if missing else ""
        return (f"{self.symbol}: {self.klines_added} candles added, {self.klines_in_window} in the window "
                f"({span}){gaps}; {self.funding_added} funding events added")


Range = tuple[int, int]  # [start_ms, end_ms)


def missing_ranges(times: np.ndarray, start_ms: int, end_ms: int, step_ms: int) -> list[Range]:
    """The parts of [start, end) before the first and after the last stored time (``step`` past it)."""
    if start_ms >= end_ms:
        return []
    if len(times) == 0:
        return [(start_ms, end_ms)]
    first, last = int(times.min()), int(times.max())
    out = []
    if start_ms < min(first, end_ms):
        out.append((start_ms, min(first, end_ms)))
    if max(last + step_ms, start_ms) < end_ms:
        out.append((max(last + step_ms, start_ms), end_ms))
    return out


class Downloader:
    """Fills a data folder through a ``BinanceFutures`` adapter (public calls; the brackets need its keys)."""

    def __init__(self, exchange: BinanceFutures, *, funding_window: RequestWindow, progress_stream: Any = None,
                 checkpoint_pages: int = DEFAULT_CHECKPOINT_PAGES) -> None:
        self.exchange = exchange
        self.funding_window = funding_window
        self.progress_stream = progress_stream
        self.checkpoint_pages = max(1, checkpoint_pages)
        self.notes: list[str] = []

    async def run(self, request: DownloadRequest) -> list[SymbolReport]:
        data_dir = request.data_dir
        info = await self.exchange.raw_exchange_info()
        listed = {e.get("symbol") for e in info.get("symbols", [])}
        unknown = [s for s in request.symbols if s not in listed]
        if unknown:
            raise DownloadError(f"Binance USDⓈ-M futures does not list {', '.join(unknown)}; check the spelling "
                                f"(e.g. BTCUSDT)")
        server_now = int(info.get("serverTime") or to_ms(datetime.now(UTC)))
        start_ms = to_ms(request.start)
        end_ms = min(to_ms(request.end), server_now // KLINE_MS * KLINE_MS)  # closed candles only
        if start_ms >= end_ms:
            raise DownloadError(f"nothing to fetch: --start {request.start:%Y-%m-%d} is not before Binance's "
                                f"last closed candle ({from_ms(end_ms):%Y-%m-%d %H:%M} UTC)")
        data_dir.mkdir(parents=True, exist_ok=True)
        if remove_stale_parts(data_dir):
            log.info("removed temporary files left by an interrupted run in %s", data_dir)
        merge_exchange_info(data_dir / EXCHANGE_INFO, info, request.symbols)
        if self.exchange.has_keys:
            await self._brackets(request.symbols, data_dir)
        plans = {s: missing_ranges(read_klines(kline_path(data_dir, s))["open_time"].to_numpy(), start_ms,
                                   end_ms, KLINE_MS) for s in request.symbols}
        total = sum((b - a) // KLINE_MS for ranges in plans.values() for a, b in ranges)
        bar = ProgressBar(total, "candles", stream=self.progress_stream)
        try:
            reports = []
            for symbol in request.symbols:
                bar.set_label(symbol)
                added = await self._klines(symbol, data_dir, plans[symbol], bar)
                funding_added = await self._funding(symbol, data_dir, to_ms(request.start), to_ms(request.end))
                reports.append(self._report(symbol, data_dir, start_ms, end_ms, added, funding_added))
            return reports
        finally:
            bar.close()

    async def _brackets(self, symbols: Sequence[str], data_dir: Path) -> None:
        """Leverage brackets are served to a signed request only; without them backtests use the bundled
        conservative ladder, so a refusal here is a note, not a failure."""
        try:
            await self.exchange.sync_time()
            entries = await self.exchange.raw_leverage_brackets()
        except (AuthenticationError, OrderRejected) as exc:
            self.notes.append(f"leverage brackets not fetched ({exc}); backtests use the bundled conservative "
                              f"ladder for symbols without a table")
            return
        default = json.loads((BUNDLED_SAMPLE / LEVERAGE_BRACKETS).read_text())["default"]
        note = (f"Per-symbol tables from Binance's GET /fapi/v1/leverageBracket, fetched "
                f"{datetime.now(UTC):%Y-%m-%d}. 'default' (symbols without a table) is data/sample's deliberately "
                f"conservative generic ladder.")
        count = merge_leverage_brackets(data_dir / LEVERAGE_BRACKETS, entries, symbols, default, note)
        self.notes.append(f"leverage brackets: {count} symbol tables in {data_dir / LEVERAGE_BRACKETS}")

    async def _klines(self, symbol: str, data_dir: Path, ranges: Sequence[Range], bar: ProgressBar) -> int:
        path = kline_path(data_dir, symbol)
        pending: list[pd.DataFrame] = []
        added = 0
        try:
            for lo, hi in ranges:
                cursor = lo
                while cursor < hi:
                    limit = min(KLINES_PAGE, (hi - cursor) // KLINE_MS)
                    batch = await self.exchange.klines(symbol, KLINE_INTERVAL, start_ms=cursor, limit=limit)
                    keep = batch.open_time < hi
                    if not keep.any():
                        bar.advance((hi - cursor) // KLINE_MS)
                        break
                    pending.append(pd.DataFrame({"open_time": batch.open_time[keep], "open": batch.open[keep],
                                                 "high": batch.high[keep], "low": batch.low[keep],
                                                 "close": batch.close[keep], "volume": batch.volume[keep]}))
                    nxt = int(batch.open_time[keep][-1]) + KLINE_MS
                    bar.advance((nxt - cursor) // KLINE_MS)
                    cursor = nxt
                    if len(pending) >= self.checkpoint_pages:
                        added += _flush(path, pending, KLINE_COLUMNS)
        finally:
            added += _flush(path, pending, KLINE_COLUMNS)
        return added

    async def _funding(self, symbol: str, data_dir: Path, start_ms: int, end_ms: int) -> int:
        path = funding_path(data_dir, symbol)
        times = read_funding(path)["funding_time"].to_numpy()
        rows = []
        for lo, hi in missing_ranges(times, start_ms, end_ms, MIN_FUNDING_INTERVAL_MS):
            for begin in range(lo, hi, FUNDING_WINDOW_MS):
                await self.funding_window.acquire()
                stop = min(hi, begin + FUNDING_WINDOW_MS)
                for rate in await self.exchange.funding_rates(symbol, from_ms(begin), from_ms(stop - 1)):
                    t = to_ms(rate.funding_time) // MINUTE_MS * MINUTE_MS
                    if lo <= t < hi:
                        rows.append((t, float(rate.rate)))
        if not rows:
            return 0
        return merge_into(path, pd.DataFrame(rows, columns=list(FUNDING_COLUMNS)), FUNDING_COLUMNS).added

    @staticmethod
    def _report(symbol: str, data_dir: Path, start_ms: int, end_ms: int, added: int,
                funding_added: int) -> SymbolReport:
        times = read_klines(kline_path(data_dir, symbol))["open_time"].to_numpy()
        window = times[(times >= start_ms) & (times < end_ms)]
        gaps = int(np.count_nonzero(np.diff(window) != KLINE_MS)) if len(window) > 1 else 0
        expected = max(0, (end_ms - start_ms) // KLINE_MS)
        return SymbolReport(symbol, added, len(window), expected, gaps, funding_added,
                            from_ms(int(window[0])) if len(window) else None,
                            from_ms(int(window[-1])) if len(window) else None)


def _flush(path: Path, pending: list[pd.DataFrame], columns: tuple[str, ...]) -> int:
    if not pending:
        return 0
    frame = pd.concat(pending, ignore_index=True)
    pending.clear()
    return merge_into(path, frame, columns).added


@dataclass(frozen=True, slots=True)
class DownloadResult:
    reports: list[SymbolReport]
    notes: list[str]


async def download(request: DownloadRequest, *, base_url: str | None = None, weight_budget_pct: float = 40.0,
                   api_key: Any = None, api_secret: Any = None, clock: Clock | None = None,
                   sleep: Sleep | None = None, progress_stream: Any = None,
                   checkpoint_pages: int = DEFAULT_CHECKPOINT_PAGES,
                   funding_request_limit: int = FUNDING_REQUEST_LIMIT) -> DownloadResult:
    """Run one download against Binance (or ``base_url``), closing the adapter afterwards.

    Market data needs no keys; with ``api_key``/``api_secret`` the leverage brackets are fetched too.
    ``weight_budget_pct`` caps both the request weight per minute and the fundingRate requests per 5 minutes.
    """
    clock = clock or SystemClock()
    sleep = sleep or asyncio.sleep
    exchange = BinanceFutures(api_key, api_secret, base_url=base_url, weight_budget_pct=weight_budget_pct,
                              clock=clock, sleep=sleep)
    window = RequestWindow(clock, sleep, limit=funding_request_limit, window_seconds=FUNDING_LIMIT_SECONDS,
                           budget_pct=weight_budget_pct)
    try:
        downloader = Downloader(exchange, funding_window=window, progress_stream=progress_stream,
                                checkpoint_pages=checkpoint_pages)
        return DownloadResult(await downloader.run(request), downloader.notes)
    finally:
        await exchange.close()
