"""``python main.py retrain``: train a candidate on recent data, judge it against the model in use, promote or keep.

1. Finish a model swap a crash interrupted (``strategies.model_swap``), read the model in use (if any).
2. Load ``train-days + holdout-days`` of 5m candles up to ``--end`` from the data folder (``download`` fills it;
   ``--refresh`` fetches what it lacks first) and build the ML voter's dataset exactly as ``train`` does.
3. Fit the candidate on the ``train-days`` before ``holdout start - horizon - embargo`` (purged, so no training
   label reaches into the holdout).
4. Judge both on the rows after both models' training ends (+ horizon + embargo): ``strategies.promotion``.
5. Promote: write the candidate as ``MODEL.candidate.*``, then ``install`` it (old pair → ``MODEL.previous.*``);
   or keep the model in use. The promoted model is the one judged (not refitted on the holdout).

Prints one summary line (the last line of stdout) and exits 0 promoted, 3 kept, 2 bad input, 1 failed. The bot runs
it as a separate low-priority process and swaps a promoted model into its panel between scans.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from app.configs import barrier_params
from app.train import _day, _label_json, histories, load_history
from settings import Settings
from strategies.ml import DAY_MS, SIDES, FoldResult, evaluate, evaluation_json, fit_calibrated, ms_to_iso
from strategies.ml_dataset import build_live_dataset
from strategies.ml_voter import MODEL_KIND, feature_names
from strategies.model_store import ModelMeta, ModelMismatch, StoredModel, load_model, save_model
from strategies.model_swap import finish_interrupted, previous_path, rollback
from strategies.promotion import PromotionDecision, PromotionRules, decide, judging_window_start
from strategies.signal_table import SignalConfig

log = logging.getLogger(__name__)

EXIT_PROMOTED, EXIT_FAILED, EXIT_CONFIG, EXIT_KEPT = 0, 1, 2, 3
EMBARGO_DAYS = 1.0
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def current_model(path: Path, timeframes: tuple[str, ...]) -> tuple[StoredModel | None, str]:
    """The model in use and, when there is none this code can judge, why."""
    if not path.is_file():
        return None, "no model in use"
    try:
        model = load_model(path, feature_names(timeframes))
    except ModelMismatch as exc:
        return None, f"the model in use cannot be used ({exc})"
    if model.meta.kind != MODEL_KIND:
        return None, f"the model in use is a {model.meta.kind} model"
    return model, ""


def main(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    path: Path = args.model or settings.ml_model_file
    if args.rollback:
        try:
            rollback(path)
        except FileNotFoundError as exc:
            print(f"retrain: {exc}")
            return EXIT_CONFIG
        print(f"retrain: rolled back: {path} is now the previous model (the replaced one is {previous_path(path)})")
        return EXIT_PROMOTED
    try:
        return _retrain(settings, args, path, started)
    except (ValueError, OSError) as exc:
        print(f"retrain: failed: {exc}; the model in use is unchanged")
        return EXIT_FAILED


def _retrain(settings: Settings, args: argparse.Namespace, path: Path, started: float) -> int:
    if path.parent.is_dir():
        finish_interrupted(path)
    cfg = SignalConfig.from_settings(settings)
    current, why_none = current_model(path, tuple(cfg.timeframes))
    train_days = args.train_days or settings.retrain_train_days
    holdout_days = args.holdout_days or settings.retrain_holdout_days
    rules = PromotionRules(threshold=settings.ml_threshold, min_rows=args.min_rows or settings.retrain_min_rows)
    try:
        end = _day(args.end, "--end") if args.end else datetime.now(UTC).replace(
            hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        symbols = ([s.strip().upper() for s in args.symbols.split(",") if s.strip()] if args.symbols else
                   list(settings.symbols) or (current.meta.symbols if current else []) or list(DEFAULT_SYMBOLS))
        label = barrier_params(settings, args.horizon_hours)
        purge_days = label.horizon * 300_000 / DAY_MS + EMBARGO_DAYS
        start = end - timedelta(days=train_days + purge_days + holdout_days)
        data_dir = args.data_dir or settings.market_data_dir
        if args.refresh:
            refresh(settings, symbols, start, min(end, datetime.now(UTC)), data_dir)
        candles, _funding = load_history(data_dir, symbols, start, end)
    except ValueError as exc:
        print(f"retrain: {exc}")
        return EXIT_CONFIG
    data = build_live_dataset(histories(candles), cfg, label, stride=args.stride)
    del candles
    last_ms = int(data.open_ms[-1])
    holdout_start = last_ms - int(holdout_days * DAY_MS)
    train_hi = holdout_start - int(purge_days * DAY_MS)
    train = np.flatnonzero((data.open_ms < train_hi) & (data.open_ms >= train_hi - int(train_days * DAY_MS)))
    if len(train) < 1_000:
        print(f"retrain: only {len(train)} training rows before the holdout; give more --train-days or data")
        return EXIT_CONFIG
    estimators = {side: fit_calibrated(data.X[train], data.y[side][train]) for side in SIDES}
    train_ends = [int(data.open_ms[train[-1]])] + ([_iso_ms(current.meta.train_end)] if current else [])
    window_lo = judging_window_start(train_ends, label.horizon, EMBARGO_DAYS)
    rows = np.flatnonzero(data.open_ms >= window_lo)
    X = data.X[rows]
    y = {side: data.y[side][rows] for side in SIDES}
    proba = {side: estimators[side].predict_proba(X)[:, 1] for side in SIDES}
    current_proba = ({side: current.estimators[side].predict_proba(X)[:, 1] for side in SIDES}
                     if current is not None and len(rows) else None)
    window = (window_lo, last_ms + 300_000)
    decision = decide(proba, current_proba, y, rules, window=window)
    if current is None and decision.promote:
        decision = _with_reason(decision, f"{decision.reason} ({why_none})")
    if decision.promote:
        oos = evaluate(data, [FoldResult(window_lo, window[1], len(train), rows,
                                         {s: p.astype(np.float32) for s, p in proba.items()})],
                       threshold=rules.threshold)
        meta = ModelMeta(
            kind=MODEL_KIND, features=list(data.names), label=_label_json(label), symbols=list(data.symbols),
            train_start=ms_to_iso(int(data.open_ms[train[0]])), train_end=ms_to_iso(int(data.open_ms[train[-1]])),
            created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            metrics={"threshold": rules.threshold, "out_of_sample": evaluation_json(oos),
                     "retrain": decision_json(decision),
                     "signal_config": {"timeframes": list(cfg.timeframes), "history": cfg.history, "stop": cfg.stop}})
        save_model(path, estimators, meta)  # staged as MODEL.candidate.*, then installed (model_swap)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"retrain: {decision.reason}; window {ms_to_iso(window[0])[:16]} → {ms_to_iso(window[1])[:16]}, "
          f"{time.perf_counter() - started:.0f} s, peak RSS {peak_mb:.0f} MB")
    return EXIT_PROMOTED if decision.promote else EXIT_KEPT


def refresh(settings: Settings, symbols: list[str], start: datetime, end: datetime, data_dir: Path) -> None:
    """Fetch what ``data_dir`` lacks of ``[start, end)`` (``python main.py download``'s resumable fetch)."""
    import asyncio

    from engine.datasets.download import DownloadError, DownloadRequest, download
    from engine.exchange.errors import ExchangeError

    try:
        asyncio.run(download(DownloadRequest(tuple(symbols), start, end, data_dir), base_url=settings.binance_base_url,
                             weight_budget_pct=settings.binance_weight_budget_pct))
    except (DownloadError, ExchangeError) as exc:
        raise ValueError(f"--refresh could not fetch the data ({exc}); run `python main.py download` to see why"
                         ) from exc


def _with_reason(decision: PromotionDecision, reason: str) -> PromotionDecision:
    from dataclasses import replace

    return replace(decision, reason=reason)


def decision_json(decision: PromotionDecision) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(decision)


def entry(settings: Settings, args: argparse.Namespace) -> int:
    """``main`` with warnings-only logging and line-buffered output (the bot reads the child's last line)."""
    from app.logs import configure_logging

    configure_logging("WARNING")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    return main(settings, args)
