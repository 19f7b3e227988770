"""``python main.py train``: walk-forward evaluation of the ML model on recorded data, then the model itself.

1. Load 5m candles and funding of the symbols for ``[--start, --end)`` from the data folder.
2. Build the dataset: the live scan's own features (``strategies.ml_dataset``: the signal tables' exact-live feature
   columns, mapped to the ML voter's inputs by ``strategies.ml_voter``) and triple-barrier labels from Vigil's own
   stop and take-profit settings. The saved model is the one ``MLVoter`` loads (kind ``live-features-v1``).
3. Walk forward: consecutive test windows, each predicted by a model trained only on the past (purged, embargoed);
   print per fold and overall: Brier score against the base rate, hit rate and P&L in R of acting above the
   threshold, a calibration table.
4. Train the model that will be used on the latest window and save it with its metadata (features, window, the
   out-of-sample figures, library versions) to ``--out`` (default ``DATA_DIR/models/vigil-ml.joblib``).

Training is CPU-heavy: run it on another machine if the VPS is small and copy the two model files over; with
``--dask-scheduler`` the folds run on an existing Dask cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from app.configs import barrier_params
from engine.exchange.types import KlineBatch
from engine.progress import ProgressBar
from settings import Settings
from strategies.labels import BarrierParams
from strategies.ml import (
    DAY_MS,
    Dataset,
    SideEvaluation,
    evaluate,
    evaluation_json,
    fit_calibrated,
    ms_to_iso,
    run_fold,
    run_walk_forward,
    walk_forward_folds,
)
from strategies.ml_dataset import build_live_dataset
from strategies.ml_voter import MODEL_KIND
from strategies.model_store import MODEL_FILE, ModelMeta, save_model
from strategies.signal_table import SignalConfig

log = logging.getLogger(__name__)

EXIT_CONFIG = 2


def _day(text: str, flag: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{flag} must be a day like 2024-01-31, got {text!r}") from None


def load_history(data_dir: Path, symbols: list[str], start: datetime, end: datetime
                 ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    candles, funding = {}, {}
    for symbol in symbols:
        path = data_dir / f"{symbol}-5m.csv.gz"
        if not path.is_file():
            raise ValueError(f"no 5m candles for {symbol} in {data_dir} (expected {path.name}); "
                             "fetch them with `python main.py download`")
        d = pd.read_csv(path, usecols=["open_time", "open", "high", "low", "close", "volume"])
        d = d[(d["open_time"] >= lo) & (d["open_time"] < hi)].drop_duplicates("open_time").reset_index(drop=True)
        if len(d) < 2_000:
            raise ValueError(f"{symbol}: only {len(d)} candles between {start:%Y-%m-%d} and {end:%Y-%m-%d}; "
                             "a model needs weeks of data")
        candles[symbol] = d
        fpath = data_dir / f"{symbol}-funding.csv.gz"
        if fpath.is_file():
            funding[symbol] = pd.read_csv(fpath)
    return candles, funding


def histories(candles: dict[str, pd.DataFrame]) -> dict[str, KlineBatch]:
    """The 5m frames as the batches the signal tables are built from."""
    return {s: KlineBatch(s, "5m", d["open_time"].to_numpy(np.int64),
                          *(d[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")))
            for s, d in candles.items()}


def render_side(e: SideEvaluation) -> str:
    return (f"{e.side:5} predictions {e.predictions:7,}  base rate {e.base_rate:6.3f}  Brier {e.brier:.4f} "
            f"(base {e.brier_base:.4f})  acted {e.acted:6,}  hit rate {e.hit_rate:6.3f}  P&L {e.pnl_r:+9.1f} R")


def main(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        symbols = list(dict.fromkeys(s.strip().upper() for s in args.symbols.split(",") if s.strip()))
        start, end = _day(args.start, "--start"), _day(args.end, "--end")
        if end <= start:
            raise ValueError("--end must be after --start")
        if args.train_days <= 0 or args.test_days <= 0 or args.stride < 1 or not 0 < args.threshold < 1:
            raise ValueError("--train-days and --test-days must be > 0, --stride >= 1, 0 < --threshold < 1")
        data_dir = args.data_dir or settings.market_data_dir
        candles, funding = load_history(data_dir, symbols, start, end)
    except (ValueError, OSError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    label = barrier_params(settings, args.horizon_hours)
    bar = ProgressBar(len(symbols), "symbols")
    cfg = SignalConfig.from_settings(settings)
    data = build_live_dataset(histories(candles), cfg, label, stride=args.stride,
                              progress=lambda s: (bar.set_label(f"features {s}"), bar.advance(1)))
    bar.close()
    del candles, funding
    folds = walk_forward_folds(data.open_ms, train_days=args.train_days, test_days=args.test_days,
                               horizon_candles=label.horizon)
    if not folds:
        print(f"vigil: the data is too short for one fold of {args.train_days:g} training days and "
              f"{args.test_days:g} test days", file=sys.stderr)
        return EXIT_CONFIG
    print(f"dataset: {len(data):,} rows × {len(data.names)} features, {len(data.symbols)} symbols, "
          f"{ms_to_iso(int(data.open_ms[0]))} → {ms_to_iso(int(data.open_ms[-1]))}; {len(folds)} folds")
    try:
        if args.jobs == 1 and not args.dask_scheduler:   # in this process: one bar step per fold
            bar = ProgressBar(len(folds), "folds")
            results = []
            for fold in folds:
                bar.set_label(f"fold {ms_to_iso(fold.test_start_ms)[:10]}")
                results.append(run_fold(data, fold))
                bar.advance(1)
            bar.close()
        else:
            results = run_walk_forward(data, folds, jobs=args.jobs, dask_scheduler=args.dask_scheduler)
    except (OSError, ValueError) as exc:
        print(f"vigil: walk-forward failed: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    per_fold = []
    for result in results:
        one = evaluate(data, [result], threshold=args.threshold)
        per_fold.append({"test_start": ms_to_iso(result.test_start_ms), "test_end": ms_to_iso(result.test_end_ms),
                         "train_rows": result.train_rows, **evaluation_json(one)})
        print(f"fold {ms_to_iso(result.test_start_ms)[:10]} → {ms_to_iso(result.test_end_ms)[:10]}  "
              f"train {result.train_rows:,} rows")
        for e in one.values():
            print("  " + render_side(e))
    overall = evaluate(data, results, threshold=args.threshold)
    print("out of sample, all folds:")
    for e in overall.values():
        print("  " + render_side(e))
        print("  calibration (predicted → observed, rows): " + ", ".join(
            f"{p:.2f}→{o:.2f} ({n})" for p, o, n in e.calibration))
    model_path = args.out or settings.models_dir / MODEL_FILE
    final = _final_training_rows(data, args.train_days)
    bar = ProgressBar(2, "final model")
    estimators = {}
    for side in ("long", "short"):
        bar.set_label(f"final model, {side}")
        estimators[side] = fit_calibrated(data.X[final], data.y[side][final])
        bar.advance(1)
    bar.close()
    meta = ModelMeta(
        kind=MODEL_KIND, features=list(data.names), label=_label_json(label), symbols=list(data.symbols),
        train_start=ms_to_iso(int(data.open_ms[final][0])), train_end=ms_to_iso(int(data.open_ms[final][-1])),
        created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        metrics={"threshold": args.threshold, "out_of_sample": evaluation_json(overall), "folds": per_fold,
                 "signal_config": {"timeframes": list(cfg.timeframes), "history": cfg.history, "stop": cfg.stop}})
    save_model(model_path, estimators, meta)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {model_path} (trained on {meta.train_start[:10]} → {meta.train_end[:10]}); "
          f"{time.perf_counter() - started:.1f} s, peak RSS {peak_mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"folds": per_fold, "overall": evaluation_json(overall),
                                         "peak_rss_mb": round(peak_mb, 1)}, indent=2, default=_json_default))
    return 0


def _final_training_rows(data: Dataset, train_days: float) -> np.ndarray:
    """The newest ``train_days`` of rows whose labels are resolved (they all are: unresolved rows have no label)."""
    last = int(data.open_ms[-1])
    return np.flatnonzero(data.open_ms >= last - int(train_days * DAY_MS))


def _label_json(label: BarrierParams) -> dict[str, float]:
    return {k: getattr(label, k) for k in label.__slots__}


def _json_default(value: object) -> object:
    if isinstance(value, Decimal | np.floating):
        return float(value)
    raise TypeError(type(value).__name__)
