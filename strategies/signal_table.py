"""The live scan's signals for every closed 5m candle of a history, computed once, vectorised and causal.

Row ``i`` of a ``SymbolSignals`` is what ``Trader.scan`` (``MarketDataService.snapshot`` →
``evaluate_snapshot``) produces for the symbol at the scan right after 5m candle ``i`` closed:

- per timeframe the scan sees the closed candles up to the close of candle ``i`` (a 1h candle only once its
  hour has closed), higher timeframes built from complete groups of 5m candles as ``HistoricalMarket`` and
  the service's cache build them;
- that window is validated as ``validate_klines`` does: it is the contiguous valid tail (a gap or a bad
  candle is never bridged), capped at ``history`` candles; the symbol is left out of the scan (``valid``
  False, FLAT, no signal, no context) when a timeframe's tail is shorter than ``min_candles``, ends in
  ``max_zero_volume_run`` zero-volume candles, is more than ``max_lag_candles`` behind, or is shorter than
  the features need;
- features on each window (``strategies.windowed``: the window-start-dependent EMAs and Wilder smoothings
  computed exactly, see there), every voter's ``vote_arrays`` and the consensus (``Consensus.combine_arrays``);
- the signal's ATR is the stop timeframe's, its price the entry timeframe's close, as ``evaluate_snapshot``.

Arrays (one value per row): ``open_ms``, ``valid``, ``direction`` (int8), ``score``, ``atr``, ``price``,
``stop_atr`` (the stop timeframe's ATR, which exit management reads), and for the risk/breaker context ``adx`` and
``atr_ratio`` (``SymbolContext.adx`` / ``.atr_ratio``, NaN for None).
Objects are built only on demand: ``features_at(i)``, ``signal_at(i)`` (the live ``Consensus.decide`` on the
row's features, so votes and reasons are the live ones) and ``context_at(i)`` (the live context code on the
row's stop-timeframe window). ``rows_at(times)`` maps scan times to rows, including the scan one candle into
a data gap, which the live validation still accepts with the previous candle.

Memory: rows are computed in blocks of ``ROW_BLOCK`` and only the arrays are kept (~80 bytes per row);
``keep_features=True`` also keeps every timeframe's feature columns (``column``; the parity tests and model
research use them), ~250 bytes per 5m row more.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from core.intervals import interval_ms
from engine.exchange.types import KlineBatch
from engine.market import DEFAULT_MAX_ZERO_VOLUME_RUN, DEFAULT_MIN_CANDLES, MAX_KLINES_LIMIT, resample_klines
from strategies.consensus import Consensus
from strategies.features import FeatureParams, Features, TimeframeFeatures, compute_features
from strategies.regime import bollinger_width, regime_codes_of_windows
from strategies.scanner import HISTORY_POINTS, SymbolContext, symbol_context
from strategies.types import Signal
from strategies.voters import VectorVoter
from strategies.windowed import FLOAT_FEATURES, Run, WilderState, run_features, wilder_state

if TYPE_CHECKING:
    from settings import Settings

log = logging.getLogger(__name__)

BASE_INTERVAL = "5m"
BASE_MS = interval_ms(BASE_INTERVAL)
#: 5m rows computed together: bounds the temporary memory (features of all timeframes for one block).
ROW_BLOCK = 32_768

BOLLINGER = 20   # the regime's Bollinger candles (``regime_codes_of_windows``' default)

#: ``progress(symbol, rows_done, rows_total)`` after each symbol.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """What the live scan is configured with (``SignalConfig.from_settings`` reads the same settings)."""

    timeframes: tuple[str, ...] = ("5m", "15m", "1h", "4h")
    history: int = 300
    stop_timeframe: str | None = "1h"
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    min_candles: int = DEFAULT_MIN_CANDLES
    max_zero_volume_run: int = DEFAULT_MAX_ZERO_VOLUME_RUN
    max_lag_candles: int = 1

    def __post_init__(self) -> None:
        if not self.timeframes:
            raise ValueError("at least one timeframe is needed")
        for tf in self.timeframes:
            if interval_ms(tf) % BASE_MS:
                raise ValueError(f"timeframe {tf} is not built from 5m candles; use multiples of 5m")
        ordered = tuple(sorted(dict.fromkeys(self.timeframes), key=interval_ms))
        object.__setattr__(self, "timeframes", ordered)
        if not self.min_candles <= self.history <= MAX_KLINES_LIMIT:
            raise ValueError(f"history must be in [{self.min_candles}, {MAX_KLINES_LIMIT}], got {self.history}")

    @classmethod
    def from_settings(cls, settings: Settings) -> SignalConfig:
        return cls(timeframes=tuple(settings.timeframes), history=settings.kline_history,
                   stop_timeframe=settings.stop_atr_timeframe)

    @property
    def stop(self) -> str:
        """The timeframe whose ATR sizes stops and feeds the context (the entry timeframe if absent)."""
        return self.stop_timeframe if self.stop_timeframe in self.timeframes else self.timeframes[0]


# --------------------------------------------------------------------------------------------------
# one timeframe
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TimeframeTable:
    """Every candle of one timeframe: its live window, whether validation passes it, and (when kept) its
    features."""

    interval: str
    batch: KlineBatch
    runs: tuple[tuple[int, int], ...]  # contiguous valid stretches [a, z)
    starts: np.ndarray                 # window start (candle index) of each candle, int32
    usable: np.ndarray                 # the window passes validation and is long enough for the features
    features: dict[str, np.ndarray]    # FLOAT_FEATURES per candle (NaN where not usable), only when kept

    def window(self, e: int) -> KlineBatch:
        """The candles the live scan holds for this timeframe when candle ``e`` is the newest."""
        return self.batch.slice(int(self.starts[e]), e + 1)


def _bad_rows(b: KlineBatch, iv: int) -> np.ndarray:
    o, h, lo, c, v = b.open, b.high, b.low, b.close, b.volume
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
        bad = ~finite | (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (v < 0)
        bad |= (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (h < lo)
    return bad | (b.open_time % iv != 0)


def _runs(b: KlineBatch, iv: int) -> list[tuple[int, int]]:
    """Maximal ``[a, b)`` stretches with no gap and no bad candle (``validate_klines`` never bridges them)."""
    n = len(b)
    bad = _bad_rows(b, iv)
    cut = np.zeros(n + 1, dtype=bool)
    cut[0] = cut[n] = True
    cut[1:n] |= np.diff(b.open_time) != iv
    cut[:n] |= bad
    cut[1:] |= bad
    edges = np.flatnonzero(cut)
    return [(int(a), int(z)) for a, z in itertools.pairwise(edges) if z > a and not bad[a]]


def timeframe_table(base: KlineBatch, interval: str, cfg: SignalConfig) -> TimeframeTable:
    """Candles of ``interval`` built from the 5m ``base``, each one's window and whether it is usable."""
    batch = base if interval == base.interval else resample_klines(base, interval)
    n = len(batch)
    required = cfg.feature_params.required_candles
    starts = np.zeros(n, dtype=np.int32)
    usable = np.zeros(n, dtype=bool)
    runs = tuple(_runs(batch, interval_ms(interval)))
    for a, z in runs:
        first = a + required - 1
        if z - a < max(cfg.min_candles, required) or cfg.history < required:
            continue
        j = np.arange(first, z)
        starts[first:z] = np.maximum(j - cfg.history + 1, a)
        idx = np.arange(a, z)
        last_nonzero = np.maximum.accumulate(np.where(batch.volume[a:z] == 0, a - 1, idx))
        zero_run = (idx - last_nonzero)[first - a:]
        usable[first:z] = (j - a + 1 >= cfg.min_candles) & (zero_run < cfg.max_zero_volume_run)
    return TimeframeTable(interval, batch, runs, starts, usable, {})


def block_features(table: TimeframeTable, lo: int, hi: int, cfg: SignalConfig, *, context: bool = False,
                   names: frozenset[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Features of candles ``lo .. hi - 1`` of a timeframe on their live windows (NaN where there is no
    window; all features, or at least ``names``), and with ``context`` ``SymbolContext.atr_ratio`` of each."""
    p = cfg.feature_params
    required = p.required_candles
    feats = {name: np.full(hi - lo, np.nan) for name in FLOAT_FEATURES}
    ratio = np.full(hi - lo, np.nan) if context else None
    for a, z in table.runs:
        r_lo, r_hi = max(lo, a + required - 1), min(hi, z)
        if r_lo >= r_hi or cfg.history < required:
            continue
        run = Run.block(table.batch, a, r_lo, r_hi, cfg.history)
        state = wilder_state(run, p.rsi)
        values = run_features(run, p, state, names)
        at = slice(r_lo - lo, r_hi - lo)
        for name, column in values.items():
            feats[name][at] = column
        if ratio is not None:
            ratio[at] = _atr_ratio(run, state, values["atr"], p.rsi)
    return feats, ratio


def _normalise(batch: KlineBatch) -> KlineBatch:
    """Sorted, unique (the last row wins), on the 5m grid: as ``HistoricalMarket`` serves a kline file."""
    if batch.interval != BASE_INTERVAL:
        raise ValueError(f"{batch.symbol}: the signal table is built from 5m candles, got {batch.interval}")
    t = np.asarray(batch.open_time, dtype=np.int64)
    if len(t) > 1 and np.all(t[1:] > t[:-1]) and not np.any(t % BASE_MS):
        return batch
    order = np.argsort(t, kind="stable")
    t = t[order]
    keep = np.append(t[1:] != t[:-1], True) & (t % BASE_MS == 0)
    idx = order[keep]
    return KlineBatch(batch.symbol, BASE_INTERVAL, t[keep], *(np.asarray(getattr(batch, c))[idx]
                                                          for c in ("open", "high", "low", "close", "volume")))


# --------------------------------------------------------------------------------------------------
# one symbol
# --------------------------------------------------------------------------------------------------

class _Columns:
    """``FeatureColumns`` over rows: ``features[tf][name][index[tf][row]]`` (NaN where the index is -1)."""

    def __init__(self, features: Mapping[str, Mapping[str, np.ndarray]], index: Mapping[str, np.ndarray],
                 timeframes: tuple[str, ...]) -> None:
        self._features = features
        self._index = index
        self.timeframes = timeframes

    def column(self, timeframe: str, name: str) -> np.ndarray:
        values = self._features[timeframe][name]
        idx = self._index[timeframe]
        out = values[np.maximum(idx, 0)] if len(values) else np.full(len(idx), np.nan)
        out[idx < 0] = np.nan
        return out


class _Recorder:
    """``FeatureColumns`` that only notes which columns a voter reads."""

    def __init__(self, timeframes: tuple[str, ...]) -> None:
        self.timeframes = timeframes
        self.read: set[tuple[str, str]] = set()

    def column(self, timeframe: str, name: str) -> np.ndarray:
        self.read.add((timeframe, name))
        return np.full(1, np.nan)


def needed_features(consensus: Consensus, cfg: SignalConfig) -> dict[str, frozenset[str]]:
    """Per timeframe, the features the row arrays need: what the voters read, the entry close and ATR, the
    stop timeframe's ATR and ADX."""
    recorder = _Recorder(cfg.timeframes)
    for voter in consensus.voters:
        voter.vote_arrays(recorder)  # type: ignore[attr-defined]
    read = recorder.read | {(cfg.timeframes[0], "close"), (cfg.timeframes[0], "atr"), (cfg.stop, "atr"),
                            (cfg.stop, "adx")}
    return {tf: frozenset(name for t, name in read if t == tf) for tf in cfg.timeframes}


@dataclass(slots=True)
class _Arrays:
    direction: np.ndarray
    score: np.ndarray
    atr: np.ndarray
    price: np.ndarray
    adx: np.ndarray
    atr_ratio: np.ndarray
    stop_atr: np.ndarray
    votes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # voter → (direction, confidence), when kept


class SymbolSignals:
    """Row ``i``: the live scan right after 5m candle ``i`` closed (see the module docstring)."""

    def __init__(self, symbol: str, open_ms: np.ndarray, cfg: SignalConfig, consensus: Consensus,
                 tables: dict[str, TimeframeTable], index: dict[str, np.ndarray], valid: np.ndarray,
                 arrays: _Arrays) -> None:
        self.symbol = symbol
        self.config = cfg
        self.consensus = consensus
        self.open_ms = open_ms
        self.valid = valid
        self.direction = arrays.direction
        self.score = arrays.score
        self.atr = arrays.atr
        self.price = arrays.price
        self.adx = arrays.adx
        self.atr_ratio = arrays.atr_ratio
        self.stop_atr = arrays.stop_atr
        self.votes = arrays.votes
        self._tables = tables
        self._index = index
        self.features_kept = all(t.features for t in tables.values())
        self._contexts: dict[int, SymbolContext] = {}

    def __len__(self) -> int:
        return len(self.open_ms)

    def index_of(self, open_ms: int) -> int:
        """Row of the 5m candle that opened at ``open_ms``; ``KeyError`` if there is none."""
        i = int(np.searchsorted(self.open_ms, open_ms))
        if i >= len(self.open_ms) or int(self.open_ms[i]) != open_ms:
            raise KeyError(f"{self.symbol}: no 5m candle opened at {open_ms}")
        return i

    def rows_at(self, open_ms: np.ndarray) -> np.ndarray:
        """For scans right after the 5m candles opening at ``open_ms`` closed (any times on the 5m grid, e.g. the
        union of several symbols' candles): the row whose signal and context that scan has, or -1 when the scan
        leaves the symbol out. A candle of this symbol → its row if valid. A missing candle (a data gap) → the
        previous row while validation still tolerates the lag (``max_lag_candles``: the live scan then reuses
        the same windows), else -1."""
        t = np.asarray(open_ms, dtype=np.int64)
        k = np.searchsorted(self.open_ms, t, side="right") - 1
        kc = np.maximum(k, 0)
        out = np.where((k >= 0) & self.valid[kc], kc, -1)
        missing = (k >= 0) & (self.open_ms[kc] != t)
        if missing.any():
            close = t + BASE_MS
            ok = (t - self.open_ms[kc]) // BASE_MS <= self.config.max_lag_candles
            for tf in self.config.timeframes:
                iv = interval_ms(tf)
                e = self._index[tf][kc]
                expected = (close // iv) * iv - iv
                ok &= (e >= 0) & ((expected - self._tables[tf].batch.open_time[np.maximum(e, 0)]) // iv
                                  <= self.config.max_lag_candles)
            out = np.where(missing & ~ok, -1, out)
        return out

    def regime_codes(self, rows: np.ndarray) -> np.ndarray:
        """The regime the live vote book records at each of ``rows`` (valid rows): ``regime_of_candles`` on the
        row's stop-timeframe window, as an index into ``strategies.regime.REGIMES`` (−1 for None). Computed once
        per stop candle, windows of one length in one batch."""
        rows = np.asarray(rows, dtype=np.int64)
        table = self._tables[self.config.stop]
        stops = self._index[self.config.stop][rows].astype(np.int64)
        candles, inverse = np.unique(stops, return_inverse=True)
        codes = np.full(len(candles), -1, dtype=np.int8)
        lengths = candles - table.starts[candles].astype(np.int64) + 1
        b = table.batch
        width = bollinger_width(b.close)       # a candle's width does not depend on the window it is seen in
        for length in np.unique(lengths):
            for lo in range(0, int(np.count_nonzero(lengths == length)), 256):
                which = np.flatnonzero(lengths == length)[lo:lo + 256]
                ix = (candles[which] - length + 1)[:, None] + np.arange(length)[None, :]
                widths = width[ix]
                widths[:, :BOLLINGER - 1] = np.nan   # the window's own first candles have none
                codes[which] = regime_codes_of_windows(b.high[ix], b.low[ix], b.close[ix], widths=widths)
        return codes[inverse]

    def row_at(self, open_ms: int) -> int | None:
        """``rows_at`` for one scan time (None when the scan leaves the symbol out)."""
        row = int(self.rows_at(np.array([open_ms]))[0])
        return None if row < 0 else row

    @property
    def timeframes(self) -> tuple[str, ...]:
        """The scan's timeframes, shortest first: with ``column``, the table is the ``FeatureColumns`` of its rows
        (a voter's ``vote_arrays(table)`` votes on every row)."""
        return self.config.timeframes

    def column(self, timeframe: str, name: str) -> np.ndarray:
        """Vectorised feature ``name`` of ``timeframe`` at every row (NaN where the symbol is left out of the
        scan); needs ``keep_features``."""
        if not self.features_kept:
            raise ValueError("feature columns were not kept: build the table with keep_features=True")
        features = {tf: t.features for tf, t in self._tables.items()}
        out = _Columns(features, self._index, self.config.timeframes).column(timeframe, name)
        out[~self.valid] = np.nan
        return out

    def columns_at(self, rows: np.ndarray) -> _Columns:
        """``FeatureColumns`` of the given rows only (``column`` restricted to them, without building whole
        columns); needs ``keep_features``."""
        if not self.features_kept:
            raise ValueError("feature columns were not kept: build the table with keep_features=True")
        rows = np.asarray(rows, dtype=np.int64)
        ok = self.valid[rows]
        return _Columns({tf: t.features for tf, t in self._tables.items()},
                        {tf: np.where(ok, idx[rows], -1) for tf, idx in self._index.items()}, self.config.timeframes)

    def windows_at(self, i: int) -> dict[str, KlineBatch]:
        """The candles per timeframe the live scan holds at row ``i`` (row must be valid)."""
        return {tf: self._tables[tf].window(int(self._index[tf][i])) for tf in self.config.timeframes}

    def features_at(self, i: int) -> Features | None:
        """The ``Features`` the live scan computes at row ``i`` (None when it leaves the symbol out): the kept
        vectorised features, or the live ``compute_features`` on the row's windows."""
        if not self.valid[i]:
            return None
        if not self.features_kept:
            return compute_features(self.windows_at(i), self.config.feature_params)
        frames = {}
        for tf in self.config.timeframes:
            table = self._tables[tf]
            e = int(self._index[tf][i])
            values = {name: float(table.features[name][e]) for name in FLOAT_FEATURES}
            frames[tf] = TimeframeFeatures(interval=tf, open_time=int(table.batch.open_time[e]),
                                           candles=e - int(table.starts[e]) + 1, **values)
        return Features(symbol=self.symbol, frames=frames, timeframes=self.config.timeframes)

    def signal_at(self, i: int) -> Signal | None:
        """The live ``Signal`` at row ``i``: ``Consensus.decide`` on ``features_at(i)`` with the stop
        timeframe's ATR, as ``evaluate_snapshot`` (None when the scan leaves the symbol out)."""
        features = self.features_at(i)
        if features is None:
            return None
        signal = self.consensus.decide(self.symbol, features)
        stop = features[self.config.stop]
        return replace(signal, atr=stop.atr) if stop.atr > 0 else signal

    def stop_atr_at(self, i: int) -> float | None:
        """``signal_at(i).atr`` when the stop timeframe's ATR is positive (the vectorised ``stop_atr`` row, which
        the signal parity test holds to the live value), so a monitor that needs only the ATR computes nothing.
        ``None`` when the scan leaves the symbol out or that ATR is not positive (then ``signal_at`` decides)."""
        atr = float(self.stop_atr[i])
        return atr if self.valid[i] and atr > 0 else None

    def context_at(self, i: int) -> SymbolContext | None:
        """The live ``ScanResult.context`` at row ``i`` (None when the scan leaves the symbol out): the live
        ``symbol_context`` on the row's stop-timeframe window, kept per stop candle (every row whose scan holds
        the same stop window, and so the same stop ADX, has the same context)."""
        if not self.valid[i]:
            return None
        e = int(self._index[self.config.stop][i])
        context = self._contexts.get(e)
        if context is None:
            window = self._tables[self.config.stop].window(e)
            context = symbol_context(window.high, window.low, window.close, float(self.adx[i]))
            self._contexts[e] = context
        return context


def _atr_ratio(run: Run, state: WilderState, atr: np.ndarray, p: int) -> np.ndarray:
    """``SymbolContext.atr_ratio`` at each row of a run: the ATR % over the median of the (up to) 99 ATR %
    before it on the same window (NaN for None)."""
    out = np.full(len(run.rows), np.nan)
    b = 1.0 - 1.0 / p
    width = HISTORY_POINTS - 1
    close = run.close
    raw = np.concatenate(([np.nan], state.full[2]))  # the true-range recursion at each candle of the run
    with np.errstate(divide="ignore", invalid="ignore"):
        current = atr / close[run.rows] * 100.0
        for lo in range(0, len(run.rows), 4096):
            rows = run.rows[lo:lo + 4096]
            first = run.starts[lo:lo + 4096] + p  # the first candle with an ATR on the window
            u = rows[:, None] - width + np.arange(width)
            inside = u >= first[:, None]
            uu = np.where(inside, u, rows[:, None])
            expo = np.where(inside, uu - first[:, None], 0).astype(np.float64)
            hist = (raw[uu] - np.power(b, expo) * state.correction[2, lo:lo + 4096, None]) / close[uu] * 100.0
            hist[~inside | ~(hist > 0) | ~np.isfinite(hist)] = np.nan
            complete = ~np.isnan(hist).any(axis=1)
            med = np.full(len(rows), np.nan)
            if complete.any():
                med[complete] = np.median(hist[complete], axis=1)
            some = ~complete & ~np.isnan(hist).all(axis=1)
            if some.any():
                med[some] = np.nanmedian(hist[some], axis=1)
            out[lo:lo + 4096] = current[lo:lo + 4096] / med
    out[~np.isfinite(out)] = np.nan
    return out


def build_symbol_signals(history: KlineBatch, consensus: Consensus, cfg: SignalConfig = SignalConfig(), *,
                         keep_features: bool = False, keep_votes: bool = False) -> SymbolSignals:
    """The signal table of one symbol from its full 5m history (sorted/deduplicated as needed).

    ``keep_features`` keeps every timeframe's vectorised features (``column``, and ``features_at`` reads
    them): ~200 bytes per 5m row more. Without it (the backtest) only the arrays stay and ``features_at``
    recomputes a row's features with the live ``compute_features`` on the row's windows. ``keep_votes`` keeps
    every voter's direction and confidence per row (``votes``; 9 bytes per voter and row): what the backtest's
    learned weights replay."""
    missing = [v.name for v in consensus.voters if not isinstance(v, VectorVoter)]
    if missing:
        raise ValueError(f"voter(s) {', '.join(missing)} have no vectorised form (vote_arrays); the fast "
                         f"backtest cannot run them")
    base = _normalise(history)
    tables = {tf: timeframe_table(base, tf, cfg) for tf in cfg.timeframes}
    row_close = base.open_time + BASE_MS
    valid = np.ones(len(base), dtype=bool)
    index: dict[str, np.ndarray] = {}
    for tf, table in tables.items():
        iv = interval_ms(tf)
        opens = table.batch.open_time
        if len(opens) == 0:
            valid[:] = False
            index[tf] = np.full(len(base), -1, dtype=np.int32)
            continue
        e = np.searchsorted(opens + iv, row_close, side="right") - 1
        expected_last = (row_close // iv) * iv - iv
        found = e >= 0
        ec = np.maximum(e, 0)
        valid &= found & ((expected_last - opens[ec]) // iv <= cfg.max_lag_candles) & table.usable[ec]
        index[tf] = np.where(found, e, -1).astype(np.int32)
    if keep_features:
        for table in tables.values():
            table.features.update({name: np.full(len(table.batch), np.nan) for name in FLOAT_FEATURES})
    arrays = _compute_rows(base, tables, index, valid, consensus, cfg, keep_votes)
    return SymbolSignals(base.symbol, base.open_time, cfg, consensus, tables, index, valid, arrays)


def _compute_rows(base: KlineBatch, tables: dict[str, TimeframeTable], index: dict[str, np.ndarray],
                  valid: np.ndarray, consensus: Consensus, cfg: SignalConfig, keep_votes: bool = False) -> _Arrays:
    """The row arrays, block by block of ``ROW_BLOCK`` rows (memory stays bounded whatever the history)."""
    n = len(base)
    out = _Arrays(np.zeros(n, dtype=np.int8), np.zeros(n), np.full(n, np.nan), base.close.copy(),
                  np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    if keep_votes:
        out.votes = {v.name: (np.zeros(n, dtype=np.int8), np.zeros(n)) for v in consensus.voters}
    entry = cfg.timeframes[0]
    kept = all(t.features for t in tables.values())
    needed = {tf: None for tf in cfg.timeframes} if kept else needed_features(consensus, cfg)
    # per timeframe, the last block's candles [lo, hi) and their values: a candle is computed once, so a row
    # and the kept features always see the same value whichever block computed it
    carry: dict[str, tuple[int, int, dict[str, np.ndarray], np.ndarray]] = {}
    for start in range(0, n, ROW_BLOCK):
        rows = slice(start, min(n, start + ROW_BLOCK))
        ok = valid[rows]
        if not ok.any():
            continue
        features: dict[str, dict[str, np.ndarray]] = {}
        local: dict[str, np.ndarray] = {}
        ratio = np.empty(0)
        for tf, table in tables.items():
            e = index[tf][rows]
            lo, hi = int(e[ok].min()), int(e[ok].max()) + 1
            c_lo, c_hi, c_feats, c_ratio = carry.get(tf, (lo, lo, {}, np.empty(0)))
            fresh = max(lo, c_hi)
            new, new_ratio = block_features(table, fresh, hi, cfg, context=tf == cfg.stop, names=needed[tf])
            if c_hi > lo:
                reuse = slice(lo - c_lo, c_hi - c_lo)
                new = {k: np.concatenate((c_feats[k][reuse], v)) for k, v in new.items()}
                if new_ratio is not None:
                    new_ratio = np.concatenate((c_ratio[reuse], new_ratio))
            if table.features:
                for name, values in new.items():
                    table.features[name][fresh:hi] = values[fresh - lo:]
            features[tf] = new
            if new_ratio is not None:
                ratio = new_ratio
            carry[tf] = (lo, hi, new, new_ratio if new_ratio is not None else np.empty(0))
            local[tf] = np.where(ok, e - lo, -1)
        columns = _Columns(features, local, cfg.timeframes)
        votes = [(v.name, *v.vote_arrays(columns)) for v in consensus.voters]  # type: ignore[attr-defined]
        direction, score = consensus.combine_arrays(votes, len(ok))
        if out.votes is not None:
            for name, d, c in votes:
                out.votes[name][0][rows] = np.where(ok, d, 0)
                out.votes[name][1][rows] = np.where(ok, c, 0.0)
        out.direction[rows] = np.where(ok, direction, 0)
        out.score[rows] = np.where(ok, score, 0.0)
        entry_atr, stop_atr = columns.column(entry, "atr"), columns.column(cfg.stop, "atr")
        with np.errstate(invalid="ignore"):
            out.atr[rows] = np.where(ok, np.where(stop_atr > 0, stop_atr, entry_atr), np.nan)
        out.stop_atr[rows] = np.where(ok, stop_atr, np.nan)
        out.price[rows] = np.where(ok, columns.column(entry, "close"), out.price[rows])
        adx = columns.column(cfg.stop, "adx")
        out.adx[rows] = np.where(ok, np.where(np.isfinite(adx), adx, 0.0), np.nan)
        out.atr_ratio[rows] = np.where(ok, ratio[np.maximum(local[cfg.stop], 0)], np.nan)
    return out


def build_signal_tables(histories: Mapping[str, KlineBatch], consensus: Consensus,
                        cfg: SignalConfig = SignalConfig(), *, progress: Progress | None = None,
                        keep_features: bool = False, keep_votes: bool = False) -> dict[str, SymbolSignals]:
    """``build_symbol_signals`` for several symbols; ``progress(symbol, rows_done, rows_total)`` after each."""
    total = sum(len(b) for b in histories.values())
    done = 0
    out: dict[str, SymbolSignals] = {}
    for symbol, batch in histories.items():
        out[symbol] = build_symbol_signals(batch, consensus, cfg, keep_features=keep_features, keep_votes=keep_votes)
        done += len(batch)
        if progress is not None:
            progress(symbol, done, total)
        log.debug("signal table %s: %d rows, %d valid, %d non-FLAT", symbol, len(batch),
                  int(out[symbol].valid.sum()), int(np.count_nonzero(out[symbol].direction)))
    return out



def with_consensus(table: SymbolSignals, consensus: Consensus, lo_ms: int, hi_ms: int) -> SymbolSignals:
    """``table`` with its direction and score recomputed by ``consensus`` from the kept feature columns for the rows
    opening in ``[lo_ms, hi_ms)`` (FLAT elsewhere); windows, ATR, price and context arrays are shared, not copied.
    What a walk-forward needs to swap one fold's model in without recomputing any feature."""
    if not table.features_kept:
        raise ValueError("feature columns were not kept: build the table with keep_features=True")
    missing = [v.name for v in consensus.voters if not isinstance(v, VectorVoter)]
    if missing:
        raise ValueError(f"voter(s) {', '.join(missing)} have no vectorised form (vote_arrays)")
    lo, hi = (int(x) for x in np.searchsorted(table.open_ms, [lo_ms, hi_ms]))
    n = len(table)
    direction, score = np.zeros(n, dtype=np.int8), np.zeros(n)
    if hi > lo:
        columns = table.columns_at(np.arange(lo, hi))
        votes = [(v.name, *v.vote_arrays(columns)) for v in consensus.voters]  # type: ignore[attr-defined]
        d, s = consensus.combine_arrays(votes, hi - lo)
        ok = table.valid[lo:hi]
        direction[lo:hi] = np.where(ok, d, 0)
        score[lo:hi] = np.where(ok, s, 0.0)
    return with_signals(table, consensus, direction, score)


def with_signals(table: SymbolSignals, consensus: Consensus, direction: np.ndarray, score: np.ndarray
                 ) -> SymbolSignals:
    """``table`` with the given ``direction``/``score`` rows and ``consensus`` behind ``signal_at`` (the caller keeps
    them consistent); windows, ATR, price and context arrays are shared, not copied."""
    if len(direction) != len(table) or len(score) != len(table):
        raise ValueError(f"{table.symbol}: {len(direction)} directions / {len(score)} scores for {len(table)} rows")
    arrays = _Arrays(np.asarray(direction, dtype=np.int8), np.asarray(score, dtype=np.float64), table.atr,
                     table.price, table.adx, table.atr_ratio, table.stop_atr)
    return SymbolSignals(table.symbol, table.open_ms, table.config, consensus, table._tables, table._index,
                         table.valid, arrays)
