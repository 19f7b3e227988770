"""Vectorised, causal twins of ``strategies.features``: the features of every candle of a series exactly as the
live scan computes them on the window that ends at that candle.

The live scan (``engine.market`` → ``strategies.features.compute_features``) sees at most ``history`` closed,
contiguous candles per timeframe and seeds its EMAs and Wilder smoothings at the window start, so a value
depends on where its window starts. Here a ``Run`` is one contiguous stretch of valid candles (a gap or a bad
candle starts a new run: no indicator bridges one) and candle ``j`` of a run has the window ``[s_j, j]`` with
``s_j = max(0, j - history + 1)``. Each windowed value comes from ONE recursion over the whole run plus an
exact correction (the recursions are linear):

- EMA seeded with the first value: ``e_j(s) = E_j - b^(j-s) (E_s - x_s)``;
- Wilder seeded with the mean of the first ``p`` changes at ``s+p``: ``w_j(s) = W_j - b^(j-s-p) (W_{s+p} - mean)``;
- MACD signal: the EMA of the corrected MACD line, whose correction is a sum of geometric sequences with a
  closed-form response (``_geo``);
- ADX smooths DX values that themselves depend on the window start, so it has no such form: for a full
  window the smoothing weights are one fixed vector, and the ADX of a chunk of candles is one weighted sum
  over their (candles x window) DX matrix; windows shorter than ``history`` (the first candles of a run) all start at
  the run start and reduce to one plain recursion.

Exact zeros are kept exact: a Wilder smoothing whose window has had only zero changes so far is 0 in the live
code (``loss == 0`` makes RSI 100), and is set to 0 here rather than left as rounding noise. The rare windows
whose DX is 0/0 somewhere (no directional move at all over the ``p`` seed candles) or whose volume reference
is constant (``sd == 0``) are computed by the live ``compute_features`` itself.

Feature families (``ema_family``, ``macd_family``, ``wilder_family``, ``return_family``, ``volume_family``,
``bollinger_family``) each take a ``Run`` and ``FeatureParams`` and return arrays aligned with ``run.rows``;
``run_features`` combines them into the ``TimeframeFeatures`` fields. New families (issue 9) follow the same shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.exchange.types import KlineBatch
from strategies.features import FEATURE_NAMES, FeatureParams, _ewm, bollinger, compute_features

log = logging.getLogger(__name__)

#: Candles per chunk of the 2-D (candles x window) computations: bounded memory, cache-friendly.
CHUNK = 2048

#: Float features of ``TimeframeFeatures`` (``open_time`` and ``candles`` are integers, kept apart).
FLOAT_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in ("open_time", "candles"))


@dataclass(frozen=True, slots=True)
class Run:
    """One contiguous run of valid candles of one timeframe; ``rows`` are the candles whose window is long
    enough for the features (``>= params.required_candles``), ``starts`` their window starts (run-local)."""

    interval: str
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    history: int
    rows: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, batch: KlineBatch, history: int, required: int) -> Run:
        """Every candle of ``batch`` (one contiguous run) whose window has ``required`` candles."""
        if history < required:
            return cls.block(batch, 0, len(batch), len(batch), history)
        return cls.block(batch, 0, min(required - 1, len(batch)), len(batch), history)

    @classmethod
    def block(cls, batch: KlineBatch, run_start: int, lo: int, hi: int, history: int) -> Run:
        """Candles ``lo .. hi - 1`` of ``batch`` in the run that starts at ``run_start``, with the candles their
        windows reach back to (indices in the result are local to that slice)."""
        first = max(run_start, lo - history + 1)
        sl = slice(first, hi)
        rows = np.arange(lo, hi, dtype=np.int64)
        starts = np.maximum(rows - history + 1, run_start) - first
        return cls(batch.interval, batch.open_time[sl], batch.open[sl], batch.high[sl], batch.low[sl],
                   batch.close[sl], batch.volume[sl], history, rows - first, starts)

    @property
    def size(self) -> int:
        return len(self.close)

    @property
    def full(self) -> np.ndarray:
        """Mask over ``rows``: the window has its full ``history`` length (``starts == rows - history + 1``)."""
        return self.rows - self.starts + 1 == self.history


# --------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------

def _recursions(x: np.ndarray, alphas: tuple[float, ...]) -> np.ndarray:
    """``y = alpha x + (1 - alpha) y_prev`` seeded with ``x[:, 0]``, one row per alpha (``x`` 2-D, rows match)."""
    return _ewm(x, alphas, x[:, :1])


def _powers(base: float, exponent: np.ndarray) -> np.ndarray:
    """``base ** exponent`` for non-negative integer exponents (a table lookup when they are small)."""
    top = int(exponent.max(initial=0))
    if top < 4096:
        return _table(base, top + 1)[exponent]
    return np.power(base, exponent.astype(np.float64))


def _table(base: float, length: int) -> np.ndarray:
    size = 1 << max(8, (length - 1).bit_length())
    cached = _TABLES.get(base)
    if cached is None or len(cached) < size:
        cached = np.power(base, np.arange(size, dtype=np.float64))
        _TABLES[base] = cached
    return cached


_TABLES: dict[float, np.ndarray] = {}


def _geo(g: float, b: float, n: np.ndarray) -> np.ndarray:
    """``sum_{m=1..n} b^(n-m) g^m``: the response after ``n`` steps of ``y = a x + b y`` (without the ``a``) to
    the input ``x_m = g^m``."""
    if abs(g - b) < 1e-12:
        return n * _powers(b, n)
    return g * (_powers(g, n) - _powers(b, n)) / (g - b)


def _seed_means(changes: np.ndarray, starts: np.ndarray, p: int) -> np.ndarray:
    """Mean of ``changes[:, s : s + p]`` for each start (gathered contiguously so the mean sums in the same
    order as the live ``x[:, :p].mean(axis=1)``)."""
    if len(starts) == 0:
        return np.empty((changes.shape[0], 0))
    lo, hi = int(starts[0]), int(starts[-1])  # run starts are non-decreasing consecutive integers
    means = sliding_window_view(changes, p, axis=1)[:, lo:hi + 1].mean(axis=-1)
    return means[:, starts - lo]


# --------------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------------

def ema_family(run: Run, p: FeatureParams) -> dict[str, np.ndarray]:
    """Fast and slow EMA at each row and the fast EMA ``slope_lookback`` candles earlier (same window)."""
    c = run.close
    j, s = run.rows, run.starts
    full = _recursions(np.vstack((c, c)), (2.0 / (p.ema_fast + 1), 2.0 / (p.ema_slow + 1)))
    out = {}
    for row, name, period in ((0, "ema_fast", p.ema_fast), (1, "ema_slow", p.ema_slow)):
        b = 1.0 - 2.0 / (period + 1)
        gap = full[row, s] - c[s]
        out[name] = full[row, j] - _powers(b, j - s) * gap
        if name == "ema_fast":
            k = j - p.slope_lookback
            out["ema_fast_lagged"] = full[row, k] - _powers(b, k - s) * gap
    return out


def macd_family(run: Run, p: FeatureParams) -> dict[str, np.ndarray]:
    """MACD line, signal and histogram at each row, and the histogram one candle earlier (same window)."""
    c = run.close
    j, s = run.rows, run.starts
    a12, a26, a9 = (2.0 / (n + 1) for n in (p.macd_fast, p.macd_slow, p.macd_signal))
    g12, g26, b9 = 1.0 - a12, 1.0 - a26, 1.0 - a9
    e = _recursions(np.vstack((c, c)), (a12, a26))
    line_full = e[0] - e[1]
    sig_full = _recursions(line_full.reshape(1, -1), (a9,))[0]
    d12 = e[0, s] - c[s]
    d26 = e[1, s] - c[s]
    z0 = -sig_full[s]  # the windowed line is exactly 0 at the window start (both EMAs equal the first close)
    out: dict[str, np.ndarray] = {}
    for u, suffix in ((j, ""), (j - 1, "_prev")):
        n = u - s
        line = line_full[u] - _powers(g12, n) * d12 + _powers(g26, n) * d26
        sig = sig_full[u] + _powers(b9, n) * z0 + a9 * (-d12 * _geo(g12, b9, n) + d26 * _geo(g26, b9, n))
        if suffix:
            out["macd_hist_prev"] = line - sig
        else:
            out["macd"], out["macd_signal"], out["macd_hist"] = line, sig, line - sig
    return out


@dataclass(frozen=True, slots=True)
class WilderState:
    """Full-run Wilder recursions of the changes (diff index ``k`` is candle ``k + 1``), each row's window
    correction ``full[:, s + p - 1] - seed``, and running counts of positive changes (``positive[:, k]`` = how
    many of the first ``k`` changes are > 0) to tell when the live value is exactly zero."""

    full: np.ndarray        # (5, size - 1): gain, loss, true range, +DM, -DM
    correction: np.ndarray  # (5, rows)
    positive: np.ndarray    # (5, size) int

    def at(self, run: Run, p: int, u: np.ndarray) -> np.ndarray:
        """Windowed smoothed values at candles ``u`` (one per row, ``u >= start + p``), shape (5, rows).

        A smoothing of non-negative changes is exactly 0 in the live code when every change in its window so
        far is 0; the correction would leave rounding noise there, so those values are set to 0."""
        b = 1.0 - 1.0 / p
        out = self.full[:, u - 1] - _powers(b, u - run.starts - p) * self.correction
        out[self.positive[:, u] == self.positive[:, run.starts]] = 0.0
        return out

    def no_direction(self, run: Run, p: int) -> np.ndarray:
        """Rows whose seed window has neither +DM nor -DM: their DX is 0/0 in places (live: 0)."""
        s = run.starts
        seed_plus = self.positive[3, s + p] - self.positive[3, s]
        seed_minus = self.positive[4, s + p] - self.positive[4, s]
        return (seed_plus == 0) & (seed_minus == 0)


def wilder_state(run: Run, p: int) -> WilderState:
    c, h, lo = run.close, run.high, run.low
    d = np.diff(c)
    up = np.diff(h)
    down = -np.diff(lo)
    prev = c[:-1]
    tr = np.maximum(h[1:], prev) - np.minimum(lo[1:], prev)
    zero = np.zeros_like(d)
    changes = np.vstack((np.maximum(d, zero), np.maximum(-d, zero), tr,
                         np.where((up > down) & (up > 0), up, zero), np.where((down > up) & (down > 0), down, zero)))
    full = _recursions(changes, (1.0 / p,) * 5)
    seeds = _seed_means(changes, run.starts, p)
    positive = np.zeros((5, run.size), dtype=np.int64)
    np.cumsum(changes > 0, axis=1, out=positive[:, 1:])
    return WilderState(full, full[:, run.starts + p - 1] - seeds, positive)


def wilder_family(run: Run, p: FeatureParams, state: WilderState | None = None) -> dict[str, np.ndarray]:
    """RSI, ATR, +DI, -DI and ADX at each row (Wilder smoothing over ``p.rsi``)."""
    period = p.rsi
    state = state or wilder_state(run, period)
    gain, loss, atr_, pdm, mdm = state.at(run, period, run.rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(loss == 0, np.where(gain == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + gain / loss))
        pdi = np.where(atr_ > 0, 100.0 * pdm / atr_, 0.0)
        mdi = np.where(atr_ > 0, 100.0 * mdm / atr_, 0.0)
    return {"rsi": rsi, "atr": atr_, "plus_di": pdi, "minus_di": mdi, "adx": _adx(run, period, state)}


def _adx(run: Run, p: int, state: WilderState) -> np.ndarray:
    out = np.full(len(run.rows), np.nan)
    b = 1.0 - 1.0 / p
    pm_diff = state.full[3] - state.full[4]
    pm_sum = state.full[3] + state.full[4]
    full = np.flatnonzero(run.full)
    if len(full):
        width = run.history - p  # DX values in a full window: candles s+p .. j
        eps = _powers(b, np.arange(width))
        weights = np.empty(width)
        weights[:p] = b ** (run.history - 2 * p) / p
        weights[p:] = (1.0 / p) * _powers(b, run.history - 1 - p - np.arange(p, width))
        weights *= 100.0
        diff_win = sliding_window_view(pm_diff, width)
        sum_win = sliding_window_view(pm_sum, width)
        first = run.starts[full] + p - 1  # diff index of candle s + p
        d1 = state.correction[3, full] - state.correction[4, full]
        d2 = state.correction[3, full] + state.correction[4, full]
        buf = np.empty((CHUNK, width))
        den = np.empty((CHUNK, width))
        with np.errstate(divide="ignore", invalid="ignore"):
            for lo in range(0, len(full), CHUNK):
                hi = min(lo + CHUNK, len(full))
                k = hi - lo
                num_b, den_b = buf[:k], den[:k]
                np.multiply(d1[lo:hi, None], eps, out=num_b)
                at = slice(int(first[lo]), int(first[lo]) + k)  # full-window rows are consecutive candles
                np.subtract(diff_win[at], num_b, out=num_b)
                np.abs(num_b, out=num_b)
                np.multiply(d2[lo:hi, None], eps, out=den_b)
                np.subtract(sum_win[at], den_b, out=den_b)
                np.divide(num_b, den_b, out=num_b)
                # einsum, not ``@``: a BLAS call spins threads that fight over a small shared machine
                out[full[lo:hi]] = np.einsum("ij,j->i", num_b, weights)
    short = np.flatnonzero(~run.full)
    if len(short):
        # windows shorter than ``history`` all start at the run start: one recursion, as the live code does it
        last = int(run.rows[short[-1]])
        u = np.arange(p, last + 1)
        _, _, _, pdm, mdm = state.full[:, u - 1] - _powers(b, u - p)[None, :] * state.correction[:, short[:1]]
        total = pdm + mdm
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = np.where(total > 0, 100.0 * np.abs(pdm - mdm) / total, 0.0)
        smoothed = np.full(len(u), np.nan)
        if len(u) >= p:
            smoothed[p - 1] = dx[:p].mean()
            if len(u) > p:
                smoothed[p:] = _ewm(dx[p:].reshape(1, -1), (1.0 / p,), smoothed[p - 1:p].reshape(1, 1))[0]
        out[short] = smoothed[run.rows[short] - p]
    return out


def return_family(run: Run, p: FeatureParams) -> dict[str, np.ndarray]:
    """One- and twelve-candle returns and the standard deviation of the last ``window`` log returns."""
    c = run.close
    j = run.rows
    with np.errstate(divide="ignore", invalid="ignore"):
        logret = np.diff(np.log(c))
        ret_1 = c[j] / c[j - 1] - 1.0
        ret_12 = c[j] / c[j - 12] - 1.0
    return {"ret_1": ret_1, "ret_12": ret_12,
            "volatility": _rolling_std(logret, j - p.window, p.window)[0]}


def volume_family(run: Run, p: FeatureParams) -> dict[str, np.ndarray]:
    """Z-score of each row's volume against the ``window`` volumes before it (0 when they are all equal)."""
    v = run.volume
    j = run.rows
    sd, mean = _rolling_std(v, j - p.window, p.window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where((sd == 0) | ~np.isfinite(sd), 0.0, (v[j] - mean) / sd)
    return {"volume_z": z, "volume_sd": sd}


def bollinger_family(run: Run, p: FeatureParams) -> dict[str, np.ndarray]:
    """Bollinger %B and width of each row over the last ``bb`` closes (the row's close included)."""
    j = run.rows
    sd, mean = _rolling_std(run.close, j - p.bb + 1, p.bb)
    pct_b, width = bollinger(run.close[j], mean, sd)
    return {"bb_pct_b": pct_b, "bb_width": width}


def _rolling_std(x: np.ndarray, first: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviation and mean of ``x[f : f + width]`` for each ``f`` in ``first`` (consecutive; chunked)."""
    sd = np.empty(len(first))
    mean = np.empty(len(first))
    if len(first) == 0:
        return sd, mean
    win = sliding_window_view(x, width)
    step = CHUNK * 4
    for lo in range(0, len(first), step):
        hi = min(lo + step, len(first))
        block = win[int(first[lo]):int(first[lo]) + hi - lo]  # rows of a run are consecutive candles
        sd[lo:hi] = block.std(axis=1)
        mean[lo:hi] = block.mean(axis=1)
    return sd, mean


# --------------------------------------------------------------------------------------------------
# all features of a run
# --------------------------------------------------------------------------------------------------

RETURN_FEATURES = frozenset({"ret_1", "ret_12", "volatility"})
VOLUME_FEATURES = frozenset({"volume_z"})
BOLLINGER_FEATURES = frozenset({"bb_pct_b", "bb_width"})


def run_features(run: Run, p: FeatureParams, state: WilderState | None = None,
                 names: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """The float fields of ``TimeframeFeatures`` at each of ``run.rows`` (arrays aligned with the rows): all of
    them, or at least ``names`` (families nobody reads are skipped)."""
    if len(run.rows) == 0:
        return {name: np.empty(0) for name in FLOAT_FEATURES}
    state = state or wilder_state(run, p.rsi)
    e = ema_family(run, p)
    m = macd_family(run, p)
    w = wilder_family(run, p, state)
    close = run.close[run.rows]
    atr_ = w["atr"]
    with np.errstate(divide="ignore", invalid="ignore"):
        atr_div = np.where(atr_ > 0, atr_, np.nan)
        out = {
            "close": close,
            "ema_fast": e["ema_fast"],
            "ema_slow": e["ema_slow"],
            "ema_fast_slope": _finite((e["ema_fast"] - e["ema_fast_lagged"]) / p.slope_lookback / atr_div),
            "trend": _finite((e["ema_fast"] - e["ema_slow"]) / atr_div),
            "extension": _finite((close - e["ema_fast"]) / atr_div),
            "rsi": w["rsi"],
            "macd": m["macd"],
            "macd_signal": m["macd_signal"],
            "macd_hist": m["macd_hist"],
            "macd_hist_prev": m["macd_hist_prev"],
            "atr": atr_,
            "atr_pct": np.where(close > 0, atr_ / close * 100.0, 0.0),
            "adx": w["adx"],
            "plus_di": w["plus_di"],
            "minus_di": w["minus_di"],
        }
        if names is None or names & RETURN_FEATURES:
            r = return_family(run, p)
            out.update(ret_1=_finite(r["ret_1"]), ret_12=_finite(r["ret_12"]), volatility=_finite(r["volatility"]))
        if names is None or names & BOLLINGER_FEATURES:
            out.update(bollinger_family(run, p))
    degenerate = state.no_direction(run, p.rsi)
    if names is None or names & VOLUME_FEATURES:
        vol = volume_family(run, p)
        out["volume_z"] = vol["volume_z"]
        degenerate = degenerate | (vol["volume_sd"] == 0)
    for k in np.flatnonzero(degenerate):
        _live_row(run, p, int(k), out)
    return out


def _live_row(run: Run, p: FeatureParams, k: int, out: dict[str, np.ndarray]) -> None:
    """Row ``k`` computed by the live ``compute_features`` on its window (degenerate windows only)."""
    j, s = int(run.rows[k]), int(run.starts[k])
    sl = slice(s, j + 1)
    batch = KlineBatch("RUN", run.interval, run.open_time[sl], run.open[sl], run.high[sl], run.low[sl],
                       run.close[sl], run.volume[sl])
    feats = compute_features({run.interval: batch}, p)[run.interval]
    for name, values in out.items():
        values[k] = getattr(feats, name)


def _finite(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, 0.0)
