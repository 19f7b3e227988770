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
    """Features of several equally long series, computed as one stack.

    The same operations on the same numbers as ``ema``, ``wilder_indicators``, ``bollinger`` and numpy's std (the
    signal parity tests compare them with the vectorised table bit for bit), in far fewer numpy calls: only the
    recursions run on whole series, the values read at the last candle are plain float arithmetic (IEEE, as numpy's).
    Callers guarantee ``len >= required_candles`` (more than ``2 * rsi`` candles)."""
    rows, n = len(batches), len(batches[0])
    data = np.concatenate([b.close for b in batches] + [b.high for b in batches] + [b.low for b in batches]
                          + [b.volume for b in batches]).reshape(4 * rows, n)
    close = data[:rows]
    alphas = tuple(2.0 / (period + 1) for period in (p.ema_fast, p.ema_slow, p.macd_fast, p.macd_slow)
                   for _ in range(rows))
    stacked = np.concatenate((close, close, close, close))
    emas = _ewm(stacked, alphas, stacked[:, :1])
    line = emas[2 * rows:3 * rows] - emas[3 * rows:]
    signal = _ewm(line, (2.0 / (p.macd_signal + 1),) * rows, line[:, :1])

    # the Wilder family as wilder_indicators: price changes, true range and directional movement from candle 1
    period = p.rsi
    diffs = data[:3 * rows, 1:] - data[:3 * rows, :-1]
    d, up, down = diffs[:rows], diffs[rows:2 * rows], -diffs[2 * rows:]
    prev = close[:, :-1]
    tr = np.maximum(data[rows:2 * rows, 1:], prev) - np.minimum(data[2 * rows:3 * rows, 1:], prev)
    zero = np.zeros_like(d)
    stack = np.concatenate((np.maximum(d, zero), np.maximum(-d, zero), tr,
                            np.where((up > down) & (up > 0), up, zero),
                            np.where((down > up) & (down > 0), down, zero)))
    seed = np.true_divide(np.add.reduce(stack[:, :period], axis=1, keepdims=True), period)  # ndarray.mean's steps
    # the smoothed series from their first value on (candle ``period``)
    sm = np.concatenate((seed, _ewm(stack[:, period:], (1.0 / period,) * len(stack), seed)), axis=1)
    atr_s = sm[2 * rows:3 * rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        di = np.where(atr_s > 0, 100.0 * sm[3 * rows:].reshape(2, rows, -1) / atr_s, 0.0)  # +DI, -DI
        total = di[0] + di[1]
        dx = np.where(total > 0, 100.0 * np.abs(di[0] - di[1]) / total, 0.0)
        logret = np.diff(np.log(close[:, -p.window - 1:]), axis=1)
    adx_seed = np.true_divide(np.add.reduce(dx[:, :period], axis=1, keepdims=True), period)
    adx = _ewm(dx[:, period:], (1.0 / period,) * rows, adx_seed)[:, -1] if dx.shape[1] > period else adx_seed[:, 0]
    # the log returns and the volumes before the last (both ``window`` long), and the band window: mean and std
    volume = data[3 * rows:]
    mean, sd = _rows_mean_std(np.concatenate((logret, volume[:, -p.window - 1:-1])))
    bb_mean, bb_sd = _rows_mean_std(close[:, -p.bb:])
    k = p.slope_lookback
    out = []
    for b, c, c1, c12, f, fk, s, m, m1, sg, sg1, g, lo, a, pdi, mdi, x, vol, vm, vsd, v, bm, bsd in zip(
            batches, close[:, -1].tolist(), close[:, -2].tolist(), close[:, -13].tolist(),
            emas[:rows, -1].tolist(), emas[:rows, -1 - k].tolist(), emas[rows:2 * rows, -1].tolist(),
            line[:, -1].tolist(), line[:, -2].tolist(), signal[:, -1].tolist(), signal[:, -2].tolist(),
            sm[:rows, -1].tolist(), sm[rows:2 * rows, -1].tolist(), atr_s[:, -1].tolist(), di[0, :, -1].tolist(),
            di[1, :, -1].tolist(), adx.tolist(), sd[:rows].tolist(), mean[rows:].tolist(), sd[rows:].tolist(),
            volume[:, -1].tolist(), bb_mean.tolist(), bb_sd.tolist(), strict=True):
        if a != a:  # no ATR yet: RSI and the DIs are undefined too
            rsi_v = pdi = mdi = math.nan
        elif lo == 0:
            rsi_v = 50.0 if g == 0 else 100.0
        else:
            rsi_v = 100.0 - 100.0 / (1.0 + g / lo)
        positive = a > 0
        half = BB_STDEVS * bsd
        out.append(TimeframeFeatures(
            interval=b.interval,
            open_time=int(b.open_time[-1]),
            candles=n,
            close=c,
            ema_fast=f,
            ema_slow=s,
            ema_fast_slope=_finite((f - fk) / k / a) if positive else 0.0,
            trend=_finite((f - s) / a) if positive else 0.0,
            extension=_finite((c - f) / a) if positive else 0.0,
            rsi=rsi_v,
            macd=m,
            macd_signal=sg,
            macd_hist=m - sg,
            macd_hist_prev=m1 - sg1,
            atr=a,
            atr_pct=a / c * 100.0 if c > 0 else 0.0,
            adx=x,
            plus_di=pdi,
            minus_di=mdi,
            ret_1=_ratio_change(c, c1),
            ret_12=_ratio_change(c, c12),
            volatility=_finite(vol),
            volume_z=0.0 if vsd == 0 or not math.isfinite(vsd) else (v - vm) / vsd,
            bb_pct_b=(c - (bm - half)) / (2.0 * half) if bsd > 0 else 0.5,
            bb_width=2.0 * half / bm if bm > 0 else 0.0,
        ))
    return out


def _ratio_change(price: float, before: float) -> float:
    """``price / before - 1`` as numpy computes it, 0 when that is not finite (``_finite``)."""
    return _finite(price / before - 1.0) if before != 0 else 0.0


def bollinger(close: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bollinger %B and width from the close, the mean and the population standard deviation of the band window
    (arrays; the live features and ``strategies.windowed`` share this, so both compute it the same way)."""
    half = BB_STDEVS * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(sd > 0, (close - (mean - half)) / (2.0 * half), 0.5)
        width = np.where(mean > 0, 2.0 * half / mean, 0.0)
    return pct_b, width


def _rows_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x.mean(axis=1)`` and ``x.std(axis=1)`` of 2-D ``x``: numpy's own steps (``_methods._var``: the sum, the
    mean, the squared deviations, their mean, the root), so the same numbers, without computing the mean twice."""
    n = x.shape[1]
    total = np.add.reduce(x, axis=1, keepdims=True)
    mean = np.true_divide(total, n, out=total)
    dev = np.subtract(x, mean)
    np.square(dev, out=dev)
    var = np.add.reduce(dev, axis=1)
    np.true_divide(var, n, out=var)
    return mean[:, 0], np.sqrt(var, out=var)


def _finite(value: float | np.floating) -> float:
    v = float(value)
    return v if math.isfinite(v) else 0.0
