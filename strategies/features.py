"""Technical indicators and the per-symbol feature set the voters read.

Pure numpy on float64; no I/O. Every public indicator returns an array aligned with its input (index ``i``
is the value known at the close of candle ``i``; NaN where there is not enough history yet).

Speed: this runs for ~100 symbols x 4 timeframes every scan on one small vCPU, so the kernels work on 2-D
arrays (one row per series) and ``compute_features`` stacks the timeframes of a symbol, and the several
series each indicator needs, into a handful of numpy calls. Recursions (EMA, Wilder smoothing) use the
closed form of the first-order filter evaluated in blocks (``_ewm``) rather than a Python loop: measured
on the target, a loop costs ~45 µs per 300-value series, the closed form ~14 µs for one series and little
more for a stack of twenty. ``ewm_reference`` keeps the plain recursion the tests compare against.

Conventions (indicator libraries differ, so they are written down):
- ``ema``: ``alpha = 2 / (period + 1)``, seeded with the first value (pandas ``ewm(adjust=False)``).
- ``wilder`` / ``rsi`` / ``atr`` / ``adx``: Wilder smoothing, ``alpha = 1 / period``, seeded with the simple
  mean of the first ``period`` values (TA-Lib convention). Price changes, true range and directional
  movement start at the second candle, so RSI and ATR are defined from index ``period`` and ADX from
  index ``2 * period - 1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from core.intervals import interval_ms
from engine.exchange.types import KlineBatch

logger = logging.getLogger(__name__)

# Inside one block the growth factor b^-(k+1) stays below exp(_MAX_LOG_GROWTH): far from float64 overflow.
_MAX_LOG_GROWTH = 500.0


#: Bollinger bands sit this many standard deviations from their mean (Bollinger's own 20-period, 2-sigma bands).
BB_STDEVS = 2.0


class InsufficientData(ValueError):
    """A series is too short for the indicators asked of it."""


# --------------------------------------------------------------------------------------------------
# recursion kernel
# --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _weights(alphas: tuple[float, ...], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``p[r, k] = b_r^(k+1)`` and ``q[r, k] = alpha_r / p[r, k]`` for one block."""
    a = np.array(alphas, dtype=np.float64).reshape(-1, 1)
    p = (1.0 - a) ** np.arange(1, length + 1, dtype=np.float64)
    q = a / p
    p.flags.writeable = False
    q.flags.writeable = False
    return p, q


def _ewm(x: np.ndarray, alphas: tuple[float, ...], seed: np.ndarray) -> np.ndarray:
    """``y[r, i] = alpha_r * x[r, i] + (1 - alpha_r) * y[r, i-1]`` with ``y[r, -1] = seed[r]``.

    ``x`` is 2-D (rows filtered independently), ``alphas`` one per row in (0, 1), ``seed`` shaped (rows, 1).
    Closed form per block: ``y[k] = b^(k+1) * (y_prev + sum_{j<=k} alpha * x[j] / b^(j+1))``.
    """
    n = x.shape[1]
    worst = -math.log(1.0 - max(alphas))
    block = max(1, int(_MAX_LOG_GROWTH / worst))
    if n <= block:
        p, q = _weights(alphas, n)
        return p * (seed + np.cumsum(x * q, axis=1))
    out = np.empty_like(x)
    y_prev = seed
    for start in range(0, n, block):
        stop = min(n, start + block)
        p, q = _weights(alphas, stop - start)
        out[:, start:stop] = p * (y_prev + np.cumsum(x[:, start:stop] * q, axis=1))
        y_prev = out[:, stop - 1:stop]
    return out


def _wilder(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder smoothing of each row of 2-D ``x``: NaN for the first ``period - 1`` values, the mean of the
    first ``period`` values at ``period - 1``, then the ``alpha = 1 / period`` recursion."""
    rows, n = x.shape
    if period == 1:
        return x.astype(np.float64, copy=True)
    out = np.full((rows, n), np.nan)
    if n < period:
        return out
    seed = x[:, :period].mean(axis=1, keepdims=True)
    out[:, period - 1:period] = seed
    if n > period:
        out[:, period:] = _ewm(x[:, period:], (1.0 / period,) * rows, seed)
    return out


def ewm_reference(x: np.ndarray, alpha: float, seed: float) -> np.ndarray:
    """The plain recursion ``y[i] = alpha * x[i] + (1 - alpha) * y[i-1]``, ``y[-1] = seed`` (reference)."""
    out = np.empty(len(x), dtype=np.float64)
    y = float(seed)
    b = 1.0 - alpha
    for i, v in enumerate(np.asarray(x, dtype=np.float64).tolist()):
        y = alpha * v + b * y
        out[i] = y
    return out


# --------------------------------------------------------------------------------------------------
# public 1-D indicators
# --------------------------------------------------------------------------------------------------

def ema(x: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2 / (period + 1)``, seeded with ``x[0]``."""
    _check_period(period)
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0 or period == 1:
        return x.copy()
    return _ewm(x.reshape(1, -1), (2.0 / (period + 1),), x[:1].reshape(1, 1))[0]


def wilder(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's smoothing (RMA) of one series."""
    _check_period(period)
    return _wilder(np.asarray(x, dtype=np.float64).reshape(1, -1), period)[0]


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range; ``tr[0]`` is NaN (there is no previous close)."""
    high, low, close = (np.asarray(v, dtype=np.float64) for v in (high, low, close))
    out = np.full(len(close), np.nan)
    out[1:] = np.maximum(high[1:], close[:-1]) - np.minimum(low[1:], close[:-1])
    return out


@dataclass(frozen=True, slots=True)
class Indicators:
    """Full series of the Wilder-family indicators of one or more rows (2-D: rows x candles)."""

    rsi: np.ndarray
    atr: np.ndarray
    plus_di: np.ndarray
    minus_di: np.ndarray
    adx: np.ndarray


def wilder_indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> Indicators:
    """RSI, ATR, +DI, -DI and ADX of each row (2-D inputs, rows x candles), smoothed in one stack."""
    _check_period(period)
    rows, n = close.shape
    if n <= period:
        nan = np.full((rows, n), np.nan)
        return Indicators(nan, nan.copy(), nan.copy(), nan.copy(), nan.copy())
    d = np.diff(close, axis=1)
    up = np.diff(high, axis=1)
    down = -np.diff(low, axis=1)
    prev = close[:, :-1]
    tr = np.maximum(high[:, 1:], prev) - np.minimum(low[:, 1:], prev)
    zero = np.zeros_like(d)
    stack = np.concatenate((np.maximum(d, zero), np.maximum(-d, zero), tr,
                            np.where((up > down) & (up > 0), up, zero),
                            np.where((down > up) & (down > 0), down, zero)))
    sm = _wilder(stack, period)
    gain, loss, atr_s, pdm, mdm = (sm[i * rows:(i + 1) * rows] for i in range(5))
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi_s = np.where(loss == 0, np.where(gain == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + gain / loss))
        pdi = np.where(atr_s > 0, 100.0 * pdm / atr_s, 0.0)
        mdi = np.where(atr_s > 0, 100.0 * mdm / atr_s, 0.0)
        total = pdi + mdi
        dx = np.where(total > 0, 100.0 * np.abs(pdi - mdi) / total, 0.0)
    undefined = np.isnan(atr_s)
    rsi_s[undefined] = np.nan
    pdi[undefined] = np.nan
    mdi[undefined] = np.nan
    adx_s = np.full((rows, n - 1), np.nan)
    adx_s[:, period - 1:] = _wilder(dx[:, period - 1:], period)
    pad = np.full((rows, 1), np.nan)
    return Indicators(*(np.concatenate((pad, v), axis=1) for v in (rsi_s, atr_s, pdi, mdi, adx_s)))


def _one(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> Indicators:
    return wilder_indicators(*(np.asarray(v, dtype=np.float64).reshape(1, -1) for v in (high, low, close)),
                             period=period)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's RSI; 100 when there were no losses, 50 when the price did not move at all."""
    c = np.asarray(close, dtype=np.float64)
    return _one(c, c, c, period).rsi[0]


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's average true range (price units)."""
    return _one(high, low, close, period).atr[0]


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's average directional index."""
    return _one(high, low, close, period).adx[0]


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """MACD line, signal line and histogram (EMAs as in ``ema``)."""
    line = ema(close, fast) - ema(close, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def zscore_last(x: np.ndarray, window: int) -> float:
    """Z-score of the last value against the ``window`` values before it (0 when they are all equal)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        return 0.0
    ref = x[-window - 1:-1]
    sd = float(ref.std())
    return 0.0 if sd == 0 or not math.isfinite(sd) else float((x[-1] - ref.mean()) / sd)


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")


# --------------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FeatureParams:
    ema_fast: int = 20
    ema_slow: int = 50
    rsi: int = 14  # RSI, ATR, DI and ADX share this period (smoothed in one stack)
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    slope_lookback: int = 3
    window: int = 50  # volatility and volume z-score window
    bb: int = 20  # Bollinger bands: the mean and standard deviation of the last ``bb`` closes
    min_candles: int = 60

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 2:
                raise ValueError(f"FeatureParams.{f.name} must be >= 2")

    @property
    def required_candles(self) -> int:
        return max(self.min_candles, 2 * self.rsi + 1, self.slope_lookback + 1, 13, self.window + 1, self.bb)


@dataclass(frozen=True, slots=True)
class TimeframeFeatures:
    """Indicator values at the close of the last candle of one timeframe.

    ``ema_fast_slope`` is the change of the fast EMA per candle over ``slope_lookback`` candles, in ATRs;
    ``trend`` is ``(ema_fast - ema_slow) / atr``; ``extension`` is ``(close - ema_fast) / atr``;
    ``volatility`` is the standard deviation of log returns over ``window`` candles (not annualised);
    ``volume_z`` the z-score of the last volume against the ``window`` before it;
    ``bb_pct_b`` is Bollinger's %B, ``(close - lower) / (upper - lower)`` with the bands ``BB_STDEVS`` population
    standard deviations of the last ``bb`` closes (the close included) around their mean (0.5 when they are all
    equal), and ``bb_width`` is ``(upper - lower) / mean``.
    """

    interval: str
    open_time: int
    candles: int
    close: float
    ema_fast: float
    ema_slow: float
    ema_fast_slope: float
    trend: float
    extension: float
    rsi: float
    macd: float
    macd_signal: float
    macd_hist: float
    macd_hist_prev: float
    atr: float
    atr_pct: float
    adx: float
    plus_di: float
    minus_di: float
    ret_1: float
    ret_12: float
    volatility: float
    volume_z: float
    bb_pct_b: float
    bb_width: float

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.pop("interval")
        return {k: float(v) for k, v in d.items()}


FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TimeframeFeatures) if f.name != "interval")


@dataclass(frozen=True, slots=True)
class Features:
    """Per-timeframe features of one symbol; ``timeframes`` is ordered from the shortest interval."""

    symbol: str
    frames: Mapping[str, TimeframeFeatures]
    timeframes: tuple[str, ...]

    @property
    def entry(self) -> TimeframeFeatures:
        """The shortest timeframe: where entries are timed, stops sized and the price read."""
        return self.frames[self.timeframes[0]]

    def __getitem__(self, interval: str) -> TimeframeFeatures:
        return self.frames[interval]

    def __contains__(self, interval: object) -> bool:
        return interval in self.frames

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"<tf>_<name>": value}`` (e.g. for a model)."""
        return {f"{tf}_{k}": v for tf in self.timeframes for k, v in self.frames[tf].as_dict().items()}


def compute_features(frames: Mapping[str, KlineBatch], params: FeatureParams = FeatureParams()) -> Features:
    """Features of one symbol from its closed, validated candles per timeframe (``{"5m": batch, ...}``).

    Raises ``InsufficientData`` if a timeframe is shorter than ``params.required_candles`` and
    ``ValueError`` if ``frames`` is empty or mixes symbols.
    """
    symbol = _check_frames(frames, params)
    return compute_features_many({symbol: frames}, params)[0][symbol]


def compute_features_many(frames_by_symbol: Mapping[str, Mapping[str, KlineBatch]],
                          params: FeatureParams = FeatureParams(), memo: FeatureMemo | None = None
                          ) -> tuple[dict[str, Features], dict[str, InsufficientData]]:
    """``compute_features`` of several symbols (``{"BTCUSDT": {"5m": batch, ...}, ...}``), every equally long
    series of every symbol in one stack: numpy's per-call cost is paid once, and each row is computed on its
    own, so the values are the same bit for bit as one symbol at a time. With a ``memo``, a series whose batch
    is the very (read-only) batch of the last call is not computed again.

    Returns the features per symbol (in the given order) and, apart, the symbols with too few candles.
    Raises ``ValueError`` if a symbol's frames are empty or mix symbols.
    """
    skipped: dict[str, InsufficientData] = {}
    out: dict[tuple[str, str], TimeframeFeatures] = {}
    orders: dict[str, tuple[str, ...]] = {}
    by_length: dict[int, list[tuple[str, str]]] = {}
    for key, frames in frames_by_symbol.items():
        try:
            _check_frames(frames, params)
        except InsufficientData as exc:
            skipped[key] = exc
            continue
        orders[key] = tuple(sorted(frames, key=interval_ms))
        for tf in orders[key]:
            known = memo.get(key, tf, frames[tf], params) if memo is not None else None
            if known is not None:
                out[(key, tf)] = known
            else:
                by_length.setdefault(len(frames[tf]), []).append((key, tf))
    for items in by_length.values():
        batches = [frames_by_symbol[key][tf] for key, tf in items]
        for item, batch, feats in zip(items, batches, _stacked_features(batches, params), strict=True):
            out[item] = feats
            if memo is not None:
                memo.put(*item, batch, params, feats)
    features = {key: Features(symbol=next(iter(frames_by_symbol[key].values())).symbol,
                              frames={tf: out[(key, tf)] for tf in order}, timeframes=order)
                for key, order in orders.items()}
    return features, skipped


class FeatureMemo:
    """The features of the batch seen last per (symbol, timeframe), kept between scans.

    The market cache hands out the same frozen batch of a timeframe until one of its candles closes (a 4h frame
    changes once in 48 five-minute scans). A hit needs the very same batch object with read-only arrays (nobody
    can have changed it since) and the same parameters; the memo keeps the batch, so its id is not reused.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[KlineBatch, FeatureParams, TimeframeFeatures]] = {}

    def get(self, symbol: str, interval: str, batch: KlineBatch, params: FeatureParams) -> TimeframeFeatures | None:
        seen = self._seen.get((symbol, interval))
        if seen is None or seen[0] is not batch or seen[1] != params:
            return None
        return seen[2]

    def put(self, symbol: str, interval: str, batch: KlineBatch, params: FeatureParams,
            features: TimeframeFeatures) -> None:
        if read_only(batch):
            self._seen[(symbol, interval)] = (batch, params, features)
        else:
            self._seen.pop((symbol, interval), None)


def read_only(batch: KlineBatch) -> bool:
    """Whether no array of ``batch`` can be written to (what the market cache hands out)."""
    return not any(getattr(batch, n).flags.writeable for n in ("open_time", "open", "high", "low", "close", "volume"))


def _check_frames(frames: Mapping[str, KlineBatch], params: FeatureParams) -> str:
    """The one symbol of ``frames``; ``InsufficientData`` if a timeframe is too short for ``params``."""
    if not frames:
        raise ValueError("no timeframes given")
    symbols = {b.symbol for b in frames.values()}
    if len(symbols) != 1:
        raise ValueError(f"frames mix symbols: {sorted(symbols)}")
    need = params.required_candles
    for tf, batch in frames.items():
        if len(batch) < need:
            raise InsufficientData(f"{batch.symbol} {tf}: {len(batch)} candles, at least {need} needed")
    return symbols.pop()


def _stacked_features(batches: list[KlineBatch], p: FeatureParams) -> list[TimeframeFeatures]:
    """Features of several equally long series, computed as one stack."""
    rows = len(batches)
    close = np.vstack([b.close for b in batches])
    high = np.vstack([b.high for b in batches])
    low = np.vstack([b.low for b in batches])
    alphas = tuple(2.0 / (period + 1) for period in (p.ema_fast, p.ema_slow, p.macd_fast, p.macd_slow)
                   for _ in range(rows))
    stacked = np.concatenate((close, close, close, close))
    emas = _ewm(stacked, alphas, stacked[:, :1])
    fast, slow = emas[:rows], emas[rows:2 * rows]
    line = emas[2 * rows:3 * rows] - emas[3 * rows:]
    signal = _ewm(line, (2.0 / (p.macd_signal + 1),) * rows, line[:, :1])
    ind = wilder_indicators(high, low, close, p.rsi)

    last_close = close[:, -1]
    last_atr = ind.atr[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        atr_div = np.where(last_atr > 0, last_atr, np.nan)
        k = p.slope_lookback
        slope = (fast[:, -1] - fast[:, -1 - k]) / k / atr_div
        trend = (fast[:, -1] - slow[:, -1]) / atr_div
        extension = (last_close - fast[:, -1]) / atr_div
        atr_pct = np.where(last_close > 0, last_atr / last_close * 100.0, 0.0)
        ret_1 = last_close / close[:, -2] - 1.0
        ret_12 = last_close / close[:, -13] - 1.0
        logret = np.diff(np.log(close[:, -p.window - 1:]), axis=1)
    volatility = logret.std(axis=1)
    hist = line - signal
    volume_z = _zscores_last(np.vstack([b.volume for b in batches]), p.window)
    ref = close[:, -p.bb:]
    pct_b, width = bollinger(close[:, -1], ref.mean(axis=1), ref.std(axis=1))
    # python floats in one go (``tolist``) rather than one ``float()`` per value: the same numbers, less time
    cols = {name: arr.tolist() for name, arr in (
        ("close", last_close), ("ema_fast", fast[:, -1]), ("ema_slow", slow[:, -1]), ("slope", slope),
        ("trend", trend), ("extension", extension), ("rsi", ind.rsi[:, -1]), ("macd", line[:, -1]),
        ("macd_signal", signal[:, -1]), ("macd_hist", hist[:, -1]), ("macd_hist_prev", hist[:, -2]),
        ("atr", last_atr), ("atr_pct", atr_pct), ("adx", ind.adx[:, -1]), ("plus_di", ind.plus_di[:, -1]),
        ("minus_di", ind.minus_di[:, -1]), ("ret_1", ret_1), ("ret_12", ret_12), ("volatility", volatility),
        ("bb_pct_b", pct_b), ("bb_width", width))}
    out = []
    for r, b in enumerate(batches):
        out.append(TimeframeFeatures(
            interval=b.interval,
            open_time=int(b.open_time[-1]),
            candles=len(b),
            close=cols["close"][r],
            ema_fast=cols["ema_fast"][r],
            ema_slow=cols["ema_slow"][r],
            ema_fast_slope=_finite(cols["slope"][r]),
            trend=_finite(cols["trend"][r]),
            extension=_finite(cols["extension"][r]),
            rsi=cols["rsi"][r],
            macd=cols["macd"][r],
            macd_signal=cols["macd_signal"][r],
            macd_hist=cols["macd_hist"][r],
            macd_hist_prev=cols["macd_hist_prev"][r],
            atr=cols["atr"][r],
            atr_pct=cols["atr_pct"][r],
            adx=cols["adx"][r],
            plus_di=cols["plus_di"][r],
            minus_di=cols["minus_di"][r],
            ret_1=_finite(cols["ret_1"][r]),
            ret_12=_finite(cols["ret_12"][r]),
            volatility=_finite(cols["volatility"][r]),
            volume_z=volume_z[r],
            bb_pct_b=cols["bb_pct_b"][r],
            bb_width=cols["bb_width"][r],
        ))
    return out


def bollinger(close: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bollinger %B and width from the close, the mean and the population standard deviation of the band window
    (arrays; the live features and ``strategies.windowed`` share this, so both compute it the same way)."""
    half = BB_STDEVS * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(sd > 0, (close - (mean - half)) / (2.0 * half), 0.5)
        width = np.where(mean > 0, 2.0 * half / mean, 0.0)
    return pct_b, width


def _zscores_last(x: np.ndarray, window: int) -> list[float]:
    """``zscore_last`` of each row of 2-D ``x`` (equally long rows), in one set of numpy calls."""
    rows, n = x.shape
    if n < 3:
        return [0.0] * rows
    ref = x[:, -window - 1:-1]
    sd = ref.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((x[:, -1] - ref.mean(axis=1)) / sd).tolist()
    return [0.0 if s == 0 or not math.isfinite(s) else v for s, v in zip(sd.tolist(), z, strict=True)]


def _finite(value: float | np.floating) -> float:
    v = float(value)
    return v if math.isfinite(v) else 0.0
