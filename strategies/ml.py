"""The ML voter's model: a calibrated ensemble trained walk-forward on triple-barrier labels.

- **Data.** One row per symbol and sampled 5m candle (every ``stride``-th: neighbouring rows say the same thing),
  the feature frame (``strategies.feature_frame``) as inputs, the long and short triple-barrier labels
  (``strategies.labels``) as targets, with the stop-timeframe ATR that Vigil would size the stop with.
- **Model.** Per side, a soft-voting ensemble of HistGradientBoosting, RandomForest and LogisticRegression, fitted
  on the older 80 % of its training window and calibrated (sigmoid) on the newer 20 %, so the probability it
  reports is the one it earned on data it did not fit.
- **Walk-forward.** Test windows follow each other; each is predicted by a model trained only on rows whose
  label horizon ended before the test window (purging) minus an embargo. Folds run in parallel through joblib:
  local processes by default, an existing Dask cluster with ``dask_scheduler``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from strategies.feature_frame import FIVE_MIN_MS, FrameParams, add_funding, feature_names, run_ids, symbol_features
from strategies.labels import BarrierParams, Labels, triple_barrier

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
SIDES = ("long", "short")
CONTEXT_TREND, CONTEXT_VOL = "1h_ema_trend", "1h_realised_vol"  # BTC context and breadth come from these


@dataclass(frozen=True, slots=True)
class Dataset:
    X: np.ndarray              # float32 (rows, features); NaN where a feature is not known yet
    names: list[str]
    open_ms: np.ndarray        # int64, sorted
    symbol: np.ndarray         # int16 index into ``symbols``
    symbols: list[str]
    y: dict[str, np.ndarray]   # side → 1.0 / 0.0 / NaN
    outcome: dict[str, np.ndarray]  # side → net R of acting on that side at that row

    def __len__(self) -> int:
        return len(self.open_ms)

    def rows(self, mask: np.ndarray) -> Dataset:
        return Dataset(self.X[mask], self.names, self.open_ms[mask], self.symbol[mask], self.symbols,
                       {s: v[mask] for s, v in self.y.items()}, {s: v[mask] for s, v in self.outcome.items()})


def build_dataset(candles: Mapping[str, pd.DataFrame], funding: Mapping[str, pd.DataFrame] | None = None, *,
                  label: BarrierParams = BarrierParams(), frame: FrameParams = FrameParams(), stop_tf: str = "1h",
                  stride: int = 3, btc: str = "BTCUSDT", progress: Callable[[str], None] | None = None) -> Dataset:
    """Features and labels of several symbols, rows sorted by time. ``candles[symbol]`` is a 5m OHLCV frame.

    Memory: one symbol's full-resolution feature frame exists at a time; only the sampled rows (float32) and the two
    columns the cross-section needs are kept, so a year of 6 symbols fits the 1 GB VPS. The values equal
    ``feature_frame.build_features`` at those rows.
    """
    kept: dict[str, tuple[pd.DataFrame, np.ndarray, Labels]] = {}
    context: dict[str, pd.DataFrame] = {}
    for symbol in sorted(candles):
        if progress:
            progress(symbol)
        c = candles[symbol].sort_values("open_time").reset_index(drop=True)
        f = symbol_features(c, frame)
        if funding is not None and symbol in funding:
            f = add_funding(f, funding[symbol])
        open_ms = c["open_time"].to_numpy(np.int64)
        seg_end = _segment_ends_from_runs(run_ids(open_ms, FIVE_MIN_MS))
        labels = triple_barrier(c["high"].to_numpy(), c["low"].to_numpy(), c["close"].to_numpy(),
                                f[f"{stop_tf}_atr"].to_numpy(np.float64), label, segment_end=seg_end)
        keep = np.zeros(len(c), dtype=bool)
        keep[::stride] = True
        keep &= ~np.isnan(labels.long)
        names = feature_names(f)
        kept[symbol] = (f.loc[keep, names].astype(np.float32), open_ms[keep],
                        Labels(*(a[keep] for a in (labels.long, labels.short, labels.long_outcome,
                                                   labels.short_outcome))))
        context[symbol] = f[[CONTEXT_TREND, CONTEXT_VOL]]
        del f
    breadth = pd.concat({s: (ctx[CONTEXT_TREND] > 0).astype(float).where(ctx[CONTEXT_TREND].notna())
                         for s, ctx in context.items()}, axis=1).mean(axis=1)
    names = sorted(set.intersection(*(set(k[0].columns) for k in kept.values())))
    parts = []
    for code, (_, (features, open_ms, labels)) in enumerate(sorted(kept.items())):
        features = features[names].copy()
        if btc in context:
            btc_ctx = context[btc].reindex(open_ms)
            features["btc_trend"] = btc_ctx[CONTEXT_TREND].to_numpy(np.float32)
            features["btc_vol"] = btc_ctx[CONTEXT_VOL].to_numpy(np.float32)
        features["breadth"] = breadth.reindex(open_ms).to_numpy(np.float32)
        parts.append((features, open_ms, np.full(len(open_ms), code, np.int16), labels))
    all_names = list(parts[0][0].columns)
    X = np.concatenate([p[0][all_names].to_numpy(np.float32) for p in parts])
    open_ms = np.concatenate([p[1] for p in parts])
    sym = np.concatenate([p[2] for p in parts])
    order = np.argsort(open_ms, kind="stable")
    y = {side: np.concatenate([getattr(p[3], side) for p in parts])[order] for side in SIDES}
    outcome = {side: np.concatenate([getattr(p[3], f"{side}_outcome") for p in parts])[order] for side in SIDES}
    return Dataset(X[order], all_names, open_ms[order], sym[order], sorted(kept), y, outcome)


def _segment_ends_from_runs(runs: np.ndarray) -> np.ndarray:
    n = len(runs)
    last = np.append(np.flatnonzero(np.diff(runs) != 0), n - 1)
    return last[runs].astype(np.int64)


def make_ensemble(seed: int = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, VotingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hgb = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200,
                                         l2_regularization=1.0, random_state=seed)
    rf = make_pipeline(SimpleImputer(strategy="median"),
                       RandomForestClassifier(n_estimators=40, max_depth=8, min_samples_leaf=100, max_features=0.3,
                                              max_samples=0.25, n_jobs=1, random_state=seed))
    lr = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
    return VotingClassifier([("hgb", hgb), ("rf", rf), ("lr", lr)], voting="soft")


def fit_calibrated(X: np.ndarray, y: np.ndarray, *, seed: int = 0, calibration_share: float = 0.2) -> Any:
    """Fit on the older part, calibrate on the newer part (rows must be in time order)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from threadpoolctl import threadpool_limits

    split = int(len(y) * (1.0 - calibration_share))
    if split < 100 or len(y) - split < 50 or len(np.unique(y[:split])) < 2 or len(np.unique(y[split:])) < 2:
        raise ValueError(f"not enough labelled rows of both classes to train ({len(y)} rows)")
    with threadpool_limits(1):  # one thread: OpenMP on a shared 2-core box oversubscribes (measured 3 s → 64 s)
        model = make_ensemble(seed).fit(X[:split], y[:split])
        # ensemble=False: one sigmoid over the frozen model's out-of-fold outputs, not five calibrated copies each
        # calling the whole ensemble again (5× the inference cost for the same frozen model)
        return CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid", ensemble=False).fit(X[split:],
                                                                                                 y[split:])


@dataclass(frozen=True, slots=True)
class Fold:
    test_start_ms: int
    test_end_ms: int
    train_idx: np.ndarray
    test_idx: np.ndarray


def walk_forward_folds(open_ms: np.ndarray, *, train_days: float, test_days: float, horizon_candles: int,
                       embargo_days: float = 1.0, start_ms: int | None = None, end_ms: int | None = None,
                       min_train_rows: int = 1_000) -> list[Fold]:
    """Consecutive test windows of ``test_days``; each trains on the ``train_days`` before it, minus the rows
    whose label could still be open at the test start (purging: ``horizon_candles``) and an embargo."""
    first, last = int(open_ms[0]), int(open_ms[-1]) + FIVE_MIN_MS
    test_start = start_ms if start_ms is not None else first + int(train_days * DAY_MS)
    end = min(end_ms, last) if end_ms is not None else last
    purge = horizon_candles * FIVE_MIN_MS + int(embargo_days * DAY_MS)
    folds = []
    while test_start < end:
        test_end = min(test_start + int(test_days * DAY_MS), end)
        train_hi = test_start - purge
        lo, hi = np.searchsorted(open_ms, [train_hi - int(train_days * DAY_MS), train_hi])
        t_lo, t_hi = np.searchsorted(open_ms, [test_start, test_end])
        if hi - lo >= min_train_rows and t_hi > t_lo:
            folds.append(Fold(test_start, test_end, np.arange(lo, hi), np.arange(t_lo, t_hi)))
        test_start = test_end
    return folds


@dataclass(frozen=True, slots=True)
class FoldResult:
    test_start_ms: int
    test_end_ms: int
    train_rows: int
    test_idx: np.ndarray
    proba: dict[str, np.ndarray]     # side → P(take-profit first) on the test rows


def run_fold(data: Dataset, fold: Fold, seed: int = 0) -> FoldResult:
    proba = {}
    for side in SIDES:
        y = data.y[side]
        model = fit_calibrated(data.X[fold.train_idx], y[fold.train_idx], seed=seed)
        proba[side] = model.predict_proba(data.X[fold.test_idx])[:, 1].astype(np.float32)
    return FoldResult(fold.test_start_ms, fold.test_end_ms, len(fold.train_idx), fold.test_idx, proba)


def run_walk_forward(data: Dataset, folds: Sequence[Fold], *, jobs: int = 1, dask_scheduler: str | None = None,
                     seed: int = 0) -> list[FoldResult]:
    """Every fold's out-of-sample predictions; folds in parallel (joblib processes, or a Dask cluster)."""
    from joblib import Parallel, delayed, parallel_backend

    backend: Any = nullcontext()
    if dask_scheduler:
        from distributed import Client  # research extra: pip install "dask[distributed]"

        client = Client(dask_scheduler)
        backend = parallel_backend("dask", scatter=[data])
        log.info("walk-forward on the Dask cluster at %s (%d workers)", dask_scheduler,
                 len(client.scheduler_info().get("workers", {})))
    with backend:
        return list(Parallel(n_jobs=jobs if not dask_scheduler else -1)(
            delayed(run_fold)(data, fold, seed) for fold in folds))


@dataclass(frozen=True, slots=True)
class SideEvaluation:
    side: str
    predictions: int
    base_rate: float                  # share of take-profit-first outcomes
    brier: float
    brier_base: float                 # Brier of always predicting the base rate of the training data
    acted: int                        # rows where P ≥ threshold
    hit_rate: float                   # share of wins among them
    pnl_r: float                      # sum of net R of acting on them
    calibration: list[tuple[float, float, int]]  # (mean predicted, observed frequency, count) per bin


def evaluate(data: Dataset, results: Sequence[FoldResult], *, threshold: float, bins: int = 10
             ) -> dict[str, SideEvaluation]:
    out = {}
    for side in SIDES:
        idx = np.concatenate([r.test_idx for r in results]) if results else np.zeros(0, dtype=np.int64)
        p = np.concatenate([r.proba[side] for r in results]).astype(np.float64) if results else np.zeros(0)
        y = data.y[side][idx]
        r = data.outcome[side][idx]
        acted = p >= threshold
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
        table = [(float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
                 for b in range(bins) if (which == b).any()]
        base = float(y.mean()) if len(y) else float("nan")
        out[side] = SideEvaluation(
            side, len(y), base, float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
            float(np.mean((base - y) ** 2)) if len(y) else float("nan"), int(acted.sum()),
            float(y[acted].mean()) if acted.any() else float("nan"), float(r[acted].sum()), table)
    return out


def evaluation_json(evaluations: Mapping[str, SideEvaluation]) -> dict[str, Any]:
    return {side: asdict(e) for side, e in evaluations.items()}


def ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
