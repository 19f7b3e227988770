"""Market data for the scan: universe selection, multi-timeframe klines, validation and caching.

``MarketDataService`` sits between a ``MarketData`` source (live Binance, paper, a historical feed) and
the scanner:

- ``universe()`` picks the symbols to scan (fixed list or top by 24 h quote volume), cached for a TTL;
- ``snapshot(symbols)`` returns validated closed candles for every symbol x timeframe. Requests run
  concurrently under a semaphore. Per (symbol, timeframe) the last ``history`` closed candles are cached;
  later calls ask only for the candles that closed since (from the last cached open time, inclusive, so
  that candle is refreshed too) and make no request at all when none has closed. A symbol whose data is
  unusable or whose request failed is listed in ``snapshot.rejected`` and left out: one bad symbol never
  breaks the scan.

``validate_klines`` is the pure validation rule (see its docstring); ``resample_klines`` aggregates
candles to a longer interval (for historical feeds that only store 5m).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from core.clock import Clock, from_ms, to_ms
from core.intervals import interval_ms
from engine.exchange.errors import ExchangeError, IpBanned, RateLimited
from engine.exchange.protocol import MarketData
from engine.exchange.types import KlineBatch, SymbolRules

if TYPE_CHECKING:
    from settings import Settings

logger = logging.getLogger(__name__)

MAX_KLINES_LIMIT = 1500  # Binance /fapi/v1/klines maximum ``limit``
DEFAULT_MIN_CANDLES = 60
DEFAULT_MAX_ZERO_VOLUME_RUN = 12


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of ``validate_klines``.

    ``batch`` is the usable series: closed candles, sorted, unique, contiguous, valid (possibly shorter
    than ``min_candles`` when rejected). ``reason`` says why the series is unusable (None when it is fine).
    Counters say what was fixed or dropped on the way; ``notes`` says it in words.
    """

    batch: KlineBatch
    reason: str | None = None
    forming_dropped: int = 0
    reordered: bool = False
    duplicates_dropped: int = 0
    bad_rows: int = 0
    gaps: int = 0
    cut: int = 0
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


def validate_klines(batch: KlineBatch, interval: str, now: datetime, *, min_candles: int = DEFAULT_MIN_CANDLES,
                    max_zero_volume_run: int = DEFAULT_MAX_ZERO_VOLUME_RUN, max_lag_candles: int = 1
                    ) -> ValidationResult:
    """Clean a kline series and say whether it is fit to trade on at ``now``.

    Fixed silently (and counted): rows out of order are sorted; duplicate open times keep the row received
    last; candles still forming at ``now`` (``open_time + interval > now``) are dropped.

    Never bridged: a gap (missing candle or an open time off the interval grid), a row with a NaN/inf
    value, a non-positive price, a negative volume, or an OHLC violation (high below open/close/low, low
    above open/close). Only the contiguous valid tail after the last such problem is kept.

    Rejected (``reason`` set) when: that tail is shorter than ``min_candles``; it ends with a run of at
    least ``max_zero_volume_run`` zero-volume candles (halted or dead market); or its newest candle is more
    than ``max_lag_candles`` behind the last candle that has closed at ``now`` (stale data).
    """
    iv = interval_ms(interval)
    now_ms = to_ms(now)
    notes: list[str] = []
    t = np.asarray(batch.open_time, dtype=np.int64)
    cols = [np.asarray(c, dtype=np.float64) for c in (batch.open, batch.high, batch.low, batch.close, batch.volume)]

    reordered = bool(len(t) > 1 and np.any(t[1:] < t[:-1]))
    if reordered:
        order = np.argsort(t, kind="stable")
        t = t[order]
        cols = [c[order] for c in cols]
        notes.append("rows sorted by open time")
    duplicates = 0
    if len(t) > 1:
        keep = np.append(t[1:] != t[:-1], True)  # the last row received wins
        duplicates = int(len(t) - keep.sum())
        if duplicates:
            t = t[keep]
            cols = [c[keep] for c in cols]
            notes.append(f"{duplicates} duplicate open time(s) dropped (kept the last received)")
    closed = t + iv <= now_ms
    forming = int(len(t) - closed.sum())
    if forming:
        t = t[closed]
        cols = [c[closed] for c in cols]
        notes.append(f"{forming} forming candle(s) dropped")

    o, h, lo, c, v = cols
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
        bad = ~finite | (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (v < 0)
        bad |= (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (h < lo)
        bad |= (t % iv) != 0
    bad_rows = int(bad.sum())
    gap_at = np.flatnonzero(np.diff(t) != iv) + 1  # row i follows a gap
    start = 0
    problem = ""
    if bad_rows:
        last_bad = int(np.flatnonzero(bad)[-1])
        start = last_bad + 1
        problem = f"invalid candle at {_fmt(int(t[last_bad]))}"
        notes.append(f"{bad_rows} invalid row(s) (NaN/inf, non-positive price, OHLC violation or off-grid "
                     f"time); last at {_fmt(int(t[last_bad]))}")
    if len(gap_at):
        last_gap = int(gap_at[-1])
        missing = (int(t[last_gap]) - int(t[last_gap - 1])) / iv - 1
        notes.append(f"{len(gap_at)} gap(s); last before {_fmt(int(t[last_gap]))} ({missing:g} candles missing)")
        if last_gap >= start:
            start = last_gap
            problem = f"gap before {_fmt(int(t[last_gap]))}"
    if start:
        notes.append(f"{start} row(s) before the last problem discarded (gaps and bad rows are never bridged)")
    tail = KlineBatch(batch.symbol, interval, t[start:], o[start:], h[start:], lo[start:], c[start:], v[start:])

    def result(reason: str | None) -> ValidationResult:
        return ValidationResult(tail, reason, forming, reordered, duplicates, bad_rows, len(gap_at), start,
                                tuple(notes))

    n = len(tail)
    if n == 0:
        return result("no closed valid candles")
    zero_run = n - int(np.flatnonzero(tail.volume != 0)[-1]) - 1 if np.any(tail.volume != 0) else n
    if zero_run >= max_zero_volume_run:
        return result(f"{zero_run} zero-volume candles at the end: market halted or dead")
    expected_last = (now_ms // iv) * iv - iv
    lag = int((expected_last - int(tail.open_time[-1])) // iv)
    if lag > max_lag_candles:
        return result(f"stale: newest closed candle {_fmt(int(tail.open_time[-1]))} is {lag} candle(s) behind")
    if n < min_candles:
        after = f" after the {problem}" if problem else ""
        return result(f"only {n} contiguous valid candle(s){after}, {min_candles} needed")
    return result(None)


def extend_validated(valid: KlineBatch, added: KlineBatch, now: datetime, *, min_candles: int = DEFAULT_MIN_CANDLES,
                     max_zero_volume_run: int = DEFAULT_MAX_ZERO_VOLUME_RUN, max_lag_candles: int = 1
                     ) -> ValidationResult | None:
    """``validate_klines(valid + added)`` without re-checking ``valid`` (a series ``validate_klines`` accepted:
    sorted, unique, contiguous, closed, valid), in plain Python on the few ``added`` rows: a scan extends each
    cached series by a candle or two, and numpy's per-call cost made the full check the dearest part of it.

    Only the clean case is handled: ``added`` continues ``valid`` (its first candle refreshes ``valid``'s last or
    follows it), is contiguous and every closed row is valid, and the result is usable (newest volume non-zero,
    not stale, long enough). Anything else returns ``None``: validate in full, which says what is wrong.
    """
    iv = interval_ms(valid.interval)
    now_ms = to_ms(now)
    times = added.open_time.tolist()
    if not times or not len(valid) or added.interval != valid.interval:
        return None
    last = int(valid.open_time[-1])
    if last + iv > now_ms or times[0] not in (last, last + iv) or \
            any(t != times[0] + k * iv for k, t in enumerate(times)):
        return None  # not a contiguous continuation of a series closed at ``now``
    closed = 0
    for t, o, h, lo, c, v in zip(times, added.open.tolist(), added.high.tolist(), added.low.tolist(),
                                 added.close.tolist(), added.volume.tolist(), strict=True):
        if t + iv > now_ms:
            break  # forming, and so is every later row: dropped unchecked, as validate_klines does
        finite = math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c) and math.isfinite(v)
        if (not finite or o <= 0 or h <= 0 or lo <= 0 or c <= 0 or v < 0 or h < max(o, c) or lo > min(o, c)
                or h < lo or t % iv):
            return None
        closed += 1
    duplicates = int(times[0] == last)
    forming = len(times) - closed
    keep = len(valid) - duplicates
    cat = np.concatenate
    tail = KlineBatch(valid.symbol, valid.interval, cat((valid.open_time[:keep], added.open_time[:closed])),
                      cat((valid.open[:keep], added.open[:closed])), cat((valid.high[:keep], added.high[:closed])),
                      cat((valid.low[:keep], added.low[:closed])), cat((valid.close[:keep], added.close[:closed])),
                      cat((valid.volume[:keep], added.volume[:closed])))
    n = len(tail)
    if n < max(min_candles, 1) or max_zero_volume_run <= 0 or tail.volume[-1] == 0 or \
            ((now_ms // iv) * iv - iv - int(tail.open_time[-1])) // iv > max_lag_candles:
        return None
    notes = []
    if duplicates:
        notes.append(f"{duplicates} duplicate open time(s) dropped (kept the last received)")
    if forming:
        notes.append(f"{forming} forming candle(s) dropped")
    return ValidationResult(tail, None, forming, False, duplicates, 0, 0, 0, tuple(notes))


def resample_klines(batch: KlineBatch, interval: str) -> KlineBatch:
    """Aggregate sorted, unique candles into ``interval`` candles aligned on the epoch grid.

    Only complete buckets are kept: a bucket with a missing source candle (a gap, or the still-forming
    end) is dropped, never half-filled.
    """
    src = interval_ms(batch.interval)
    dst = interval_ms(interval)
    if dst % src:
        raise ValueError(f"cannot build {interval} candles from {batch.interval}")
    if dst == src or len(batch) == 0:
        return KlineBatch(batch.symbol, interval, batch.open_time, batch.open, batch.high, batch.low,
                          batch.close, batch.volume)
    ratio = dst // src
    bucket = batch.open_time // dst
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    counts = np.diff(np.append(starts, len(batch)))
    ends = starts + counts - 1
    high = np.maximum.reduceat(batch.high, starts)
    low = np.minimum.reduceat(batch.low, starts)
    volume = np.add.reduceat(batch.volume, starts)
    full = counts == ratio
    return KlineBatch(batch.symbol, interval, (bucket[starts] * dst)[full], batch.open[starts][full],
                      high[full], low[full], batch.close[ends][full], volume[full])


def _fmt(ms: int) -> str:
    return from_ms(ms).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------------------------------
# service
# --------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class MarketStats:
    """Cumulative counters (the cache's effect is ``requests`` and ``candles_fetched`` per scan)."""

    requests: int = 0
    candles_fetched: int = 0
    full_fetches: int = 0
    incremental_fetches: int = 0
    cache_hits: int = 0  # (symbol, timeframe) served from the cache without a request
    derived: int = 0     # new higher-timeframe candles built from cached base candles, without a request
    errors: int = 0

    def add(self, other: MarketStats) -> None:
        for name in _STAT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_STAT_NAMES = tuple(f.name for f in fields(MarketStats))


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Validated candles of the symbols that passed, per symbol then timeframe (read-only by convention).

    ``rejected`` maps each left-out symbol to the reason; ``aborted`` is set when the exchange asked us to
    back off (rate limit or IP ban) and the remaining requests were not sent.
    """

    time: datetime
    frames: dict[str, dict[str, KlineBatch]]
    rejected: dict[str, str]
    stats: MarketStats = field(default_factory=MarketStats)
    aborted: str | None = None

    @property
    def symbols(self) -> list[str]:
        return list(self.frames)


class _Abort(Exception):
    pass


@dataclass(slots=True)
class _Scan:
    stats: MarketStats
    abort: str | None = None


class MarketDataService:
    def __init__(self, source: MarketData, clock: Clock, *, timeframes: Sequence[str], history: int,
                 max_concurrency: int, universe_size: int, fixed_symbols: Sequence[str],
                 blacklist: Sequence[str], min_quote_volume: Decimal, universe_ttl_seconds: float = 3600,
                 min_candles: int = DEFAULT_MIN_CANDLES, max_zero_volume_run: int = DEFAULT_MAX_ZERO_VOLUME_RUN,
                 cache_idle_seconds: float = 6 * 3600) -> None:
        if not timeframes:
            raise ValueError("at least one timeframe is needed")
        for tf in timeframes:
            interval_ms(tf)
        if not min_candles <= history <= MAX_KLINES_LIMIT:
            raise ValueError(f"history must be in [{min_candles}, {MAX_KLINES_LIMIT}], got {history}")
        if max_concurrency < 1 or universe_size < 1:
            raise ValueError("max_concurrency and universe_size must be >= 1")
        self.source = source
        self.clock = clock
        self.timeframes = tuple(sorted(dict.fromkeys(timeframes), key=interval_ms))
        self.history = history
        self.universe_size = universe_size
        self.fixed_symbols = tuple(dict.fromkeys(s.upper() for s in fixed_symbols))
        self.blacklist = frozenset(s.upper() for s in blacklist)
        self.min_quote_volume = Decimal(min_quote_volume)
        self.universe_ttl_seconds = universe_ttl_seconds
        self.min_candles = min_candles
        self.max_zero_volume_run = max_zero_volume_run
        self.cache_idle_seconds = cache_idle_seconds
        self.stats = MarketStats()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._cache: dict[tuple[str, str], KlineBatch] = {}
        self._last_used: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._universe: list[str] | None = None
        self._universe_at: float | None = None
        self._universe_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, source: MarketData, clock: Clock, settings: Settings) -> MarketDataService:
        return cls(source, clock, timeframes=settings.timeframes, history=settings.kline_history,
                   max_concurrency=settings.max_concurrent_requests, universe_size=settings.universe_size,
                   fixed_symbols=settings.symbols, blacklist=settings.blacklist,
                   min_quote_volume=settings.min_quote_volume_usdt,
                   universe_ttl_seconds=max(3600, settings.scan_interval_seconds))

    # ---- universe ------------------------------------------------------------------------------
    async def universe(self, *, refresh: bool = False) -> list[str]:
        """Symbols to scan, cached for ``universe_ttl_seconds``.

        Fixed ``SYMBOLS`` when configured (unknown or untradable ones dropped with a warning), otherwise
        the ``universe_size`` tradable USDT perpetuals with the highest 24 h quote volume at or above
        ``min_quote_volume``. The blacklist applies to both. If the exchange fails and a previous universe
        exists, that one is kept (with a warning); otherwise the ``ExchangeError`` propagates.
        """
        async with self._universe_lock:
            now = self.clock.now().timestamp()
            fresh = self._universe_at is not None and now - self._universe_at < self.universe_ttl_seconds
            if self._universe is not None and fresh and not refresh:
                return list(self._universe)
            try:
                chosen = await self._select_universe()
            except ExchangeError as exc:
                if self._universe is None:
                    raise
                logger.warning("universe refresh failed (%s); keeping the previous %d symbols",
                               exc, len(self._universe))
                return list(self._universe)
            self._universe, self._universe_at = chosen, now
            logger.info("universe: %d symbols: %s", len(chosen), ", ".join(chosen))
            return list(chosen)

    async def _select_universe(self) -> list[str]:
        rules = await self.source.symbol_rules()
        if self.fixed_symbols:
            return [s for s in self.fixed_symbols if self._fixed_ok(s, rules)]
        tickers = await self.source.tickers_24h()
        candidates = [
            t for t in tickers
            if t.symbol in rules and rules[t.symbol].is_tradable and t.symbol not in self.blacklist
            and t.quote_volume >= self.min_quote_volume
        ]
        candidates.sort(key=lambda t: (-t.quote_volume, t.symbol))
        return [t.symbol for t in candidates[:self.universe_size]]

    def _fixed_ok(self, symbol: str, rules: dict[str, SymbolRules]) -> bool:
        if symbol in self.blacklist:
            logger.warning("SYMBOLS: %s is blacklisted; skipped", symbol)
            return False
        r = rules.get(symbol)
        if r is None:
            logger.warning("SYMBOLS: %s is not a Binance USD-M symbol; skipped", symbol)
            return False
        if not r.is_tradable:
            logger.warning("SYMBOLS: %s is not a tradable USDT perpetual (status %s, %s); skipped",
                           symbol, r.status, r.contract_type)
            return False
        return True

    # ---- snapshot ------------------------------------------------------------------------------
    async def snapshot(self, symbols: Iterable[str]) -> MarketSnapshot:
        """Validated candles of every symbol x timeframe (see the module docstring)."""
        started = time.perf_counter()
        now = self.clock.now()
        wanted = list(dict.fromkeys(symbols))
        scan = _Scan(MarketStats())
        if getattr(self.source, "answers_inline", False):
            # nothing to wait for (recorded data): one symbol after the other is what the tasks would do, in the same
            # order, without creating one per symbol on every scan
            results = [await self._symbol(s, now, scan) for s in wanted]
        else:
            results = await asyncio.gather(*(self._symbol(s, now, scan) for s in wanted))
        frames: dict[str, dict[str, KlineBatch]] = {}
        rejected: dict[str, str] = {}
        for symbol, (batches, reason) in zip(wanted, results, strict=True):
            if reason is None:
                frames[symbol] = batches
            else:
                rejected[symbol] = reason
        self.stats.add(scan.stats)
        self._evict_idle(now.timestamp())
        logger.info("snapshot: %d symbols ok, %d rejected, %d requests, %d candles fetched, %.2f s",
                    len(frames), len(rejected), scan.stats.requests, scan.stats.candles_fetched,
                    time.perf_counter() - started)
        for symbol, reason in rejected.items():
            logger.info("snapshot: %s left out: %s", symbol, reason)
        return MarketSnapshot(now, frames, rejected, scan.stats, scan.abort)

    async def _symbol(self, symbol: str, now: datetime, scan: _Scan) -> tuple[dict[str, KlineBatch], str | None]:
        lock = self._locks.setdefault(symbol, asyncio.Lock())
        self._last_used[symbol] = now.timestamp()
        out: dict[str, KlineBatch] = {}
        async with lock:
            for tf in self.timeframes:
                try:
                    batch, reason = await self._frame(symbol, tf, now, scan)
                except _Abort:
                    return {}, f"not fetched: {scan.abort}"
                except (RateLimited, IpBanned) as exc:
                    scan.stats.errors += 1
                    scan.abort = f"exchange asked to back off ({exc})"
                    logger.warning("market data: %s; remaining requests of this snapshot skipped", exc)
                    return {}, f"exchange error on {tf}: {exc}"
                except ExchangeError as exc:
                    scan.stats.errors += 1
                    return {}, f"exchange error on {tf}: {exc}"
                except Exception as exc:
                    scan.stats.errors += 1
                    logger.exception("market data: unexpected error on %s %s", symbol, tf)
                    return {}, f"unexpected error on {tf}: {type(exc).__name__}: {exc}"
                if reason is not None:
                    return {}, f"{tf}: {reason}"
                out[tf] = batch
        return out, None

    async def _frame(self, symbol: str, tf: str, now: datetime, scan: _Scan) -> tuple[KlineBatch, str | None]:
        iv = interval_ms(tf)
        key = (symbol, tf)
        last_closed = (to_ms(now) // iv) * iv - iv
        cached = self._cache.get(key)
        if cached is not None and int(cached.open_time[-1]) >= last_closed:
            scan.stats.cache_hits += 1
            return cached, None
        new_closed = None if cached is None else int((last_closed - int(cached.open_time[-1])) // iv)
        added: KlineBatch | None = None  # what extends ``cached`` (None: a full fetch replaces it)
        if cached is not None and new_closed is not None and (local := self._from_base(symbol, tf, cached,
                                                                                      new_closed)) is not None:
            scan.stats.derived += 1
            added = local
        elif cached is None or new_closed is None or new_closed + 1 >= self.history:
            limit = min(self.history + 1, MAX_KLINES_LIMIT)  # +1: the newest is usually still forming
            fetched = await self._request(symbol, tf, None, limit, scan)
            scan.stats.full_fetches += 1
            merged = fetched
        else:
            start = int(cached.open_time[-1])
            limit = min(new_closed + 2, MAX_KLINES_LIMIT)  # refreshed last + new closed + forming
            added = await self._request(symbol, tf, start, limit, scan)
            scan.stats.incremental_fetches += 1
        result = None
        if cached is not None and added is not None:
            result = extend_validated(cached, added, now, min_candles=self.min_candles,
                                      max_zero_volume_run=self.max_zero_volume_run)
            if result is None:
                merged = _concat(cached, added)
        fresh = result is not None  # extend_validated's arrays are new and ours alone: sealed, not copied
        if result is None:
            result = validate_klines(merged, tf, now, min_candles=self.min_candles,
                                     max_zero_volume_run=self.max_zero_volume_run)
        if result.notes and (result.bad_rows or result.gaps or result.duplicates_dropped or result.reordered):
            logger.debug("klines %s %s: %s", symbol, tf, "; ".join(result.notes))
        if not result.ok:
            self._cache.pop(key, None)
            return result.batch, result.reason
        kept = result.batch.slice(max(0, len(result.batch) - self.history))
        batch = _seal(kept) if fresh else _freeze(kept)
        self._cache[key] = batch
        return batch, None

    def _from_base(self, symbol: str, tf: str, cached: KlineBatch, new_closed: int) -> KlineBatch | None:
        """The ``new_closed`` candles of ``tf`` after ``cached``, built from this scan's base-timeframe candles
        (e.g. a 1h candle from its twelve 5m candles), or ``None`` if they are not all there. Saves one request
        per symbol and higher timeframe whenever one of its candles closes: exactly what Binance aggregates."""
        base_tf = self.timeframes[0]
        iv, base_iv = interval_ms(tf), interval_ms(base_tf)
        base = self._cache.get((symbol, base_tf))
        if tf == base_tf or iv % base_iv or base is None or new_closed < 1:
            return None
        first = int(cached.open_time[-1]) + iv
        start = int(np.searchsorted(base.open_time, first))
        if new_closed == 1:  # the usual case, one candle closed: its base candles reduced directly
            return _one_candle(base, tf, start, first, iv, base_iv)
        built = resample_klines(base.slice(start), tf)
        expected = first + iv * np.arange(new_closed, dtype=np.int64)
        if len(built) < new_closed or not np.array_equal(built.open_time[:new_closed], expected):
            return None
        return built.slice(0, new_closed)

    async def _request(self, symbol: str, tf: str, start_ms: int | None, limit: int, scan: _Scan) -> KlineBatch:
        if scan.abort is not None:
            raise _Abort
        async with self._semaphore:
            if scan.abort is not None:
                raise _Abort
            scan.stats.requests += 1
            batch = await self.source.klines(symbol, tf, start_ms=start_ms, limit=limit)
        scan.stats.candles_fetched += len(batch)
        return batch

    # ---- cache ---------------------------------------------------------------------------------
    def cached(self, symbol: str, timeframe: str) -> KlineBatch | None:
        return self._cache.get((symbol, timeframe))

    def invalidate(self, symbol: str | None = None) -> None:
        """Forget cached candles of one symbol (or all): the next snapshot fetches full history."""
        for key in [k for k in self._cache if symbol is None or k[0] == symbol]:
            del self._cache[key]

    def _evict_idle(self, now: float) -> None:
        idle = [s for s, t in self._last_used.items() if now - t > self.cache_idle_seconds]
        for symbol in idle:
            self.invalidate(symbol)
            del self._last_used[symbol]
            lock = self._locks.get(symbol)
            if lock is not None and not lock.locked():
                del self._locks[symbol]


_FIRST = np.zeros(1, dtype=np.intp)


def _one_candle(base: KlineBatch, tf: str, start: int, first: int, iv: int, base_iv: int) -> KlineBatch | None:
    """The ``tf`` candle opening at ``first`` from the cached base candles ``start:`` (what ``resample_klines`` builds
    for it, with the same reductions: bit for bit), or ``None`` when they do not cover it. The cache holds a
    contiguous series, so the right first and last open times mean every base candle of the bucket is there."""
    stop = start + iv // base_iv
    times = base.open_time
    if stop > len(times) or int(times[start]) != first or int(times[stop - 1]) != first + iv - base_iv:
        return None
    return KlineBatch(base.symbol, tf, np.array([first], dtype=np.int64), base.open[start:start + 1].copy(),
                      np.maximum.reduceat(base.high[start:stop], _FIRST),
                      np.minimum.reduceat(base.low[start:stop], _FIRST), base.close[stop - 1:stop].copy(),
                      np.add.reduceat(base.volume[start:stop], _FIRST))


def _concat(a: KlineBatch, b: KlineBatch) -> KlineBatch:
    if len(b) == 0:
        return a
    return KlineBatch(a.symbol, a.interval, *(np.concatenate((getattr(a, n), getattr(b, n)))
                                              for n in ("open_time", "open", "high", "low", "close", "volume")))


def _seal(batch: KlineBatch) -> KlineBatch:
    """``batch`` made read-only in place (for arrays nobody else holds)."""
    for name in ("open_time", "open", "high", "low", "close", "volume"):
        getattr(batch, name).flags.writeable = False
    return batch


def _freeze(batch: KlineBatch) -> KlineBatch:
    """Private read-only copies: the cache hands the same arrays to every snapshot."""
    arrays = []
    for name in ("open_time", "open", "high", "low", "close", "volume"):
        arr = np.array(getattr(batch, name), copy=True)
        arr.flags.writeable = False
        arrays.append(arr)
    return KlineBatch(batch.symbol, batch.interval, *arrays)
