"""The ML voter: the calibrated long/short models of ``strategies.ml`` voting on the live scan's own features.

**Same features live and in the backtest.** The model's inputs are computed from one symbol's ``Features`` (the
live scan, ``strategies.features``) or, for many candles at once, from ``FeatureColumns`` (the signal table,
``strategies.signal_table``, which reproduces the live windows exactly). Both go through ``_derive``, the one
function that turns the per-timeframe values into the model's columns, on float64 arrays (one element for a live
``vote``): the matrix the backtest predicts on is the matrix the live voter would have built, value for value.

**Inputs** (``feature_names``): per timeframe, in the order of ``timeframes``, the scale-free values of
``TimeframeFeatures`` (EMA slope, trend and extension in ATRs, RSI, ADX, the DI spread, ATR %, returns, realised
volatility, volume z-score) and three derived in ATRs (MACD histogram, its change, close against the slow EMA).
Prices in quote units (close, EMAs, MACD, ATR) are left out: they do not carry across symbols.

**Not included: cross-symbol context** (BTC trend and volatility, breadth). ``vote(symbol, features)`` sees one
symbol; the live scan has no cross-symbol feature object and the signal table is built symbol by symbol, so such
inputs could not be reproduced identically in both places. They stay in ``strategies.feature_frame`` for research.

**Decision.** ``p_long`` and ``p_short`` are the calibrated probabilities that the long (short) take-profit is hit
before its stop (triple-barrier labels, ``strategies.labels``). Both are rounded to ``DECIMALS`` places first;
LONG when ``p_long >= threshold`` and ``p_long > p_short``, SHORT the mirror, FLAT otherwise (also on a tie or
NaN); confidence = that probability. Why round: ``predict_proba`` on one row and on a batch may differ in the
last bits (the logistic regression's BLAS dot product); they agree to ~1e-15, so after rounding to 1e-6 a vote can
only differ between the two paths if a probability sits within 1e-15 of a rounding half-point.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.enums import VoterKind
from strategies.features import Features
from strategies.types import Direction, Vote
from strategies.voters import FeatureColumns

log = logging.getLogger(__name__)

MODEL_KIND = "live-features-v1"
#: rows of ``vote_arrays`` a remembering voter keeps (~0.6 kB each) for ``vote`` on the same inputs
KNOWN_ROWS = 200_000
DECIMALS = 6
#: values of ``TimeframeFeatures`` used as they are
DIRECT = ("ema_fast_slope", "trend", "extension", "rsi", "adx", "atr_pct", "ret_1", "ret_12", "volatility",
          "volume_z")
#: derived per timeframe (see ``_derive``)
DERIVED = ("di_spread", "macd_hist_atr", "macd_hist_change_atr", "close_slow_atr")
#: every ``TimeframeFeatures`` value the inputs read
RAW = (*DIRECT, "plus_di", "minus_di", "macd_hist", "macd_hist_prev", "atr", "close", "ema_slow")

Getter = Callable[[str, str], np.ndarray]


def feature_names(timeframes: Sequence[str]) -> list[str]:
    """The model's input columns, in order: ``<tf>_<name>`` for each timeframe, shortest first."""
    return [f"{tf}_{name}" for tf in timeframes for name in (*DIRECT, *DERIVED)]


def _derive(get: Getter, timeframes: Sequence[str]) -> list[np.ndarray]:
    """The input columns from the raw per-timeframe values (``get(tf, name)`` → float64 array)."""
    out: list[np.ndarray] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for tf in timeframes:
            raw = {name: np.asarray(get(tf, name), dtype=np.float64) for name in RAW}
            atr = np.where(raw["atr"] > 0, raw["atr"], np.nan)
            out.extend(raw[name] for name in DIRECT)
            out.append(raw["plus_di"] - raw["minus_di"])
            out.append(raw["macd_hist"] / atr)
            out.append((raw["macd_hist"] - raw["macd_hist_prev"]) / atr)
            out.append((raw["close"] - raw["ema_slow"]) / atr)
    return [np.where(np.isfinite(c), c, np.nan) for c in out]


def matrix_from_columns(columns: FeatureColumns, timeframes: Sequence[str]) -> np.ndarray:
    """``(rows, features)`` float64 inputs from per-candle feature columns (NaN where a value is unknown)."""
    return np.column_stack(_derive(columns.column, timeframes))


def row_from_features(features: Features, timeframes: Sequence[str]) -> np.ndarray:
    """``(1, features)`` float64 inputs from one live ``Features`` (the same arithmetic as the columns)."""
    return np.column_stack(_derive(lambda tf, name: np.array([getattr(features[tf], name)], dtype=np.float64),
                                   timeframes))


@functools.cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_thread() -> Any:
    return _controller().limit(limits=1, user_api="openmp")


def decide(p_long: np.ndarray, p_short: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(direction int8, confidence)`` from the two probabilities (see the module docstring)."""
    pl = np.round(np.asarray(p_long, dtype=np.float64), DECIMALS)
    ps = np.round(np.asarray(p_short, dtype=np.float64), DECIMALS)
    long = (pl >= threshold) & (pl > ps)
    short = (ps >= threshold) & (ps > pl)
    direction = np.where(long, Direction.LONG, np.where(short, Direction.SHORT, Direction.FLAT)).astype(np.int8)
    confidence = np.where(long, pl, np.where(short, ps, 0.0))
    return direction, np.clip(confidence, 0.0, 1.0)


def vote_of(name: str, p_long: np.ndarray, p_short: np.ndarray, threshold: float) -> Vote:
    """The ML vote of one row from its two probabilities (one-element arrays), by ``decide``."""
    direction, confidence = decide(p_long, p_short, threshold)
    reason = f"P(take-profit first) long {p_long[0]:.3f}, short {p_short[0]:.3f} (threshold {threshold:g})"
    return Vote(name, Direction(int(direction[0])), float(confidence[0]), reason, VoterKind.ML)


class MLVoter:
    """``Voter`` and ``VectorVoter`` over a fitted ``{"long": model, "short": model}`` (``predict_proba``).

    ``remember`` (backtests): ``vote_arrays`` keeps each row's probabilities, keyed by the row's exact input bytes,
    and ``vote`` on a ``Features`` whose inputs are byte-identical reuses them instead of calling the model for one
    row (the engine asks ``signal_at`` for every candidate of every scan). Up to ``KNOWN_ROWS`` rows are kept."""

    name: str = "ml"

    def __init__(self, estimators: dict[str, Any], timeframes: Sequence[str], threshold: float, *,
                 name: str | None = None, description: str = "", remember: bool = False) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the ML threshold must be in (0, 1), got {threshold}")
        if not {"long", "short"} <= set(estimators):
            raise ValueError("the ML voter needs a long and a short model")
        self.estimators = estimators
        self.timeframes = tuple(timeframes)
        self.threshold = threshold
        self.description = description
        self._prepared: dict[str, tuple[Features, np.ndarray, np.ndarray]] = {}
        self.remember = remember
        self._known: dict[bytes, tuple[float, float]] = {}
        if name is not None:
            self.name = name

    def probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(take-profit first) per row, long and short. OpenMP is held to one thread: for one row its start-up
        costs more than the work (measured on the shared 2-core box: 68 ms per call with the default threads,
        2 ms with one). scikit-learn's input and parameter checks are skipped: the fitted models are valid and the
        inputs are finite or NaN by construction (``_derive``); on one row they were ~27 % of the call's CPU time
        (14.5 → 10.5 ms for the calibrated ensemble), with the same probabilities."""
        from sklearn import config_context

        with _one_thread(), config_context(assume_finite=True, skip_parameter_validation=True):
            return (self.estimators["long"].predict_proba(X)[:, 1].astype(np.float64),
                    self.estimators["short"].predict_proba(X)[:, 1].astype(np.float64))

    def prepare(self, scan: Mapping[str, Features]) -> None:
        """The probabilities of a whole scan in one model call, kept for the ``vote`` calls on these very
        ``Features`` objects (another object for the symbol → computed alone). Same rounding and rule as ever."""
        self._prepared = {}
        if not scan:
            return
        symbols = list(scan)
        p_long, p_short = self.probabilities(np.vstack([row_from_features(scan[s], self.timeframes)
                                                        for s in symbols]))
        self._prepared = {s: (scan[s], p_long[k:k + 1], p_short[k:k + 1]) for k, s in enumerate(symbols)}

    def vote(self, symbol: str, features: Features) -> Vote:
        prepared = self._prepared.get(symbol)
        if prepared is not None and prepared[0] is features:
            p_long, p_short = prepared[1], prepared[2]
        else:
            row = row_from_features(features, self.timeframes)
            known = self._known.get(row.tobytes())
            if known is not None:
                p_long, p_short = np.array([known[0]]), np.array([known[1]])
            else:
                p_long, p_short = self.probabilities(row)
        return vote_of(self.name, p_long, p_short, self.threshold)

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        X = matrix_from_columns(columns, self.timeframes)
        if len(X) == 0:
            return np.zeros(0, dtype=np.int8), np.zeros(0)
        p_long, p_short = self.probabilities(X)
        if self.remember:
            if len(self._known) + len(X) > KNOWN_ROWS:
                self._known.clear()
            self._known.update(zip((r.tobytes() for r in X), zip(p_long.tolist(), p_short.tolist(), strict=True),
                                   strict=True))
        return decide(p_long, p_short, self.threshold)


def load_ml_voter(path: Path, timeframes: Sequence[str], threshold: float) -> MLVoter:
    """The voter for the model at ``path``; ``ModelMismatch`` (saying what to do) when this code cannot use it."""
    from strategies.model_store import ModelMismatch, load_model

    model = load_model(path, feature_names(timeframes))
    if model.meta.kind != MODEL_KIND:
        raise ModelMismatch(f"{path} is a {model.meta.kind} model; the ML voter needs {MODEL_KIND}: retrain with "
                            "`python main.py train`")
    return MLVoter(model.estimators, timeframes, threshold,
                   description=f"{path.name}, trained {model.meta.train_start[:10]} → {model.meta.train_end[:10]}")
