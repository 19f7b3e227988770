"""Market regime of one symbol on one timeframe: trending up or down, ranging, or volatile.

From three readings of the same candles:
- **ADX** says whether there is a trend at all (``adx_trend``, 25 by default) and ``di_diff`` (+DI − −DI) its side;
- the **ATR percentile** (where today's ATR % sits in its own recent history) says whether volatility is unusual;
- the **Bollinger width percentile** confirms it (a squeeze is not volatile, an expansion is).

Volatile wins over everything (the stop distances the risk model uses are least reliable there), then a trend, and
the rest is ranging. Vectorised over arrays (the backtest and the models) and scalar (the live scan) by the same
function. The regime is a model feature and the key under which each voter's accuracy is learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from strategies.features import wilder_indicators


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"


REGIMES: tuple[Regime, ...] = tuple(Regime)


@dataclass(frozen=True, slots=True)
class RegimeParams:
    adx_trend: float = 25.0
    volatile_atr_pct: float = 90.0      # ATR % above this percentile of its history …
    volatile_bb_pct: float = 80.0       # … with the Bollinger width above this one: volatile
    lookback: int = 500                 # candles of history for the percentiles


def percentile_rank(values: np.ndarray, lookback: int) -> np.ndarray:
    """Where each value sits among the ``lookback`` values up to it (itself included), 0–100; NaN before enough
    history. Causal."""
    import pandas as pd  # only research and training pay for pandas; the live scan uses ``last_percentile``

    series = pd.Series(np.asarray(values, dtype=np.float64))
    min_periods = max(20, lookback // 5)
    return series.rolling(lookback, min_periods=min_periods).rank(pct=True).to_numpy() * 100.0


def classify(adx: np.ndarray, di_diff: np.ndarray, atr_pctile: np.ndarray, bb_pctile: np.ndarray,
             p: RegimeParams = RegimeParams()) -> np.ndarray:
    """Regime codes (index into ``REGIMES``) per row; −1 where an input is unknown."""
    adx, di_diff, atr_pctile, bb_pctile = (np.asarray(a, dtype=np.float64) for a in (adx, di_diff, atr_pctile,
                                                                                        bb_pctile))
    known = np.isfinite(adx) & np.isfinite(di_diff) & np.isfinite(atr_pctile) & np.isfinite(bb_pctile)
    volatile = (atr_pctile >= p.volatile_atr_pct) & (bb_pctile >= p.volatile_bb_pct)
    trending = adx >= p.adx_trend
    codes = np.where(volatile, REGIMES.index(Regime.VOLATILE),
                     np.where(trending & (di_diff > 0), REGIMES.index(Regime.TRENDING_UP),
                              np.where(trending & (di_diff <= 0), REGIMES.index(Regime.TRENDING_DOWN),
                                       REGIMES.index(Regime.RANGING))))
    return np.where(known, codes, -1).astype(np.int8)


def regime_of(adx: float, di_diff: float, atr_pctile: float, bb_pctile: float,
              p: RegimeParams = RegimeParams()) -> Regime | None:
    """The scalar form, for one symbol at one scan (``None`` when an input is unknown)."""
    code = int(classify(np.array([adx]), np.array([di_diff]), np.array([atr_pctile]), np.array([bb_pctile]), p)[0])
    return REGIMES[code] if code >= 0 else None


def regime_series(adx: np.ndarray, di_diff: np.ndarray, atr_pct: np.ndarray, bb_width: np.ndarray,
                  p: RegimeParams = RegimeParams()) -> np.ndarray:
    """Regime codes of a whole series from the raw ATR % and Bollinger width (percentiles computed here)."""
    return classify(adx, di_diff, percentile_rank(atr_pct, p.lookback), percentile_rank(bb_width, p.lookback), p)


def last_percentile(values: np.ndarray, lookback: int) -> float:
    """``percentile_rank(values, lookback)[-1]`` without pandas: where the last value sits among the last
    ``lookback`` (NaN ignored, ties averaged), 0–100; NaN before enough history."""
    return float(last_percentiles(np.asarray(values, dtype=np.float64).reshape(1, -1), lookback)[0])


def last_percentiles(values: np.ndarray, lookback: int) -> np.ndarray:
    """``last_percentile`` of each row of a 2-D array (rows × candles)."""
    window = np.asarray(values, dtype=np.float64)[:, -lookback:]
    if window.shape[1] == 0:
        return np.full(len(window), np.nan)
    x = window[:, -1:]
    finite = np.isfinite(window)
    count = finite.sum(axis=1)
    rank = np.sum(window < x, axis=1) + (np.sum(window == x, axis=1) + 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = rank / count * 100.0
    return np.where(np.isfinite(x[:, 0]) & (count >= max(20, lookback // 5)), out, np.nan)


def regime_of_candles(high: np.ndarray, low: np.ndarray, close: np.ndarray, p: RegimeParams = RegimeParams(),
                      *, period: int = 14, bb: int = 20) -> Regime | None:
    """The regime at the last candle of one window (the live scan's stop-timeframe candles): ADX and ±DI (Wilder,
    ``period``), the ATR % and the Bollinger width (``bb`` candles, 2 σ) and their percentiles over the window.
    ``None`` when the window is too short for the percentiles. NumPy only (the running bot does not load pandas)."""
    code = int(regime_codes_of_windows(*(np.asarray(v, dtype=np.float64).reshape(1, -1) for v in (high, low, close)),
                                       p, period=period, bb=bb)[0])
    return REGIMES[code] if code >= 0 else None


def bollinger_width(close: np.ndarray, bb: int = 20) -> np.ndarray:
    """The Bollinger width (4 σ over the mean of the last ``bb`` closes) at each candle of each row (2-D, rows ×
    candles); NaN for a row's first ``bb − 1`` candles."""
    c = np.asarray(close, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(c, bb, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = 4.0 * windows.std(axis=-1) / windows.mean(axis=-1)
    return np.concatenate([np.full((*c.shape[:-1], bb - 1), np.nan), width], axis=-1)


def regime_codes_of_windows(high: np.ndarray, low: np.ndarray, close: np.ndarray, p: RegimeParams = RegimeParams(),
                            *, period: int = 14, bb: int = 20, widths: np.ndarray | None = None) -> np.ndarray:
    """``regime_of_candles`` of many windows of the same length at once (2-D inputs, one window per row): the
    regime code (index into ``REGIMES``) of each window's last candle, −1 for None. The live scan calls it with
    one row, the backtest with every stop-timeframe window it replays; ``widths`` (``bollinger_width`` of the
    rows) may be given when the windows overlap, so each candle's width is computed once."""
    c = np.asarray(close, dtype=np.float64)
    rows, n = c.shape
    if n < bb:
        return np.full(rows, -1, dtype=np.int8)
    ind = wilder_indicators(np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64), c, period=period)
    with np.errstate(divide="ignore", invalid="ignore"):
        atr_pct = ind.atr / c * 100.0
    bb_width = bollinger_width(c, bb) if widths is None else widths
    return classify(ind.adx[:, -1], ind.plus_di[:, -1] - ind.minus_di[:, -1], last_percentiles(atr_pct, p.lookback),
                    last_percentiles(bb_width, p.lookback), p)
