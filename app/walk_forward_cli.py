"""``backtest --walk-forward``: validate its options, run ``app.walk_forward``, print per fold and per voter, write
the JSON (the usual report plus ``walk_forward.folds`` and ``voters``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import TextIO

from app.backtest_cli import BacktestInputError, ProgressBar, Request, closes_in_window, load_window
from app.walk_forward import CONSENSUS, WalkForwardOptions, WalkForwardResult, run_walk_forward_backtest
from engine.backtest.data import load_rules
from settings import Settings


def options_from(settings: Settings, req: Request, args: argparse.Namespace) -> WalkForwardOptions:
    if req.strategy != "default" or req.engine != "fast":
        raise BacktestInputError("--walk-forward runs the default strategy on the fast engine "
                                 "(drop --strategy/--engine)")
    if getattr(args, "sweep", None):
        raise BacktestInputError("--walk-forward and --sweep do not combine; run them separately")
    retrain = args.retrain_days if args.retrain_days is not None else settings.retrain_days
    if retrain <= 0 or args.train_days <= 0 or args.horizon_hours <= 0 or args.train_stride < 1:
        raise BacktestInputError("--retrain-days, --train-days and --horizon-hours must be > 0, --train-stride >= 1")
    return WalkForwardOptions(retrain_days=retrain, train_days=args.train_days, horizon_hours=args.horizon_hours,
                              stride=args.train_stride)


def render_folds(wf: WalkForwardResult) -> list[str]:
    lines = ["walk-forward folds (window, ML model trained on, trades, net P&L):"]
    for f in wf.folds:
        model = "no model (too little history)" if f.window is None else (
            f"model on {f.window.rows:,} rows to {f.to_json()['model']['label_end'][:16]}")
        lines.append(f"  {f.start:%Y-%m-%d} → {f.end:%Y-%m-%d}  {model:44}  trades {f.trades:4}  "
                     f"net {f.net_pnl:+.2f} USDT")
    lines.append("voters (every valid 5m row of the folds; hit rate and Brier against the triple-barrier outcome of "
                 "the side voted; P&L acting on it alone):")
    for name, score in wf.voters.items():
        s = score.to_json()
        hit = "   n/a" if s["hit_rate"] is None else f"{s['hit_rate']:6.3f}"
        brier = "   n/a" if s["brier"] is None else f"{s['brier']:6.4f}"
        alone = "(the panel)" if name == CONSENSUS else "alone"
        lines.append(f"  {name:16} votes {score.votes:7,}  hit rate {hit}  Brier {brier}  {alone}: "
                     f"{score.trades} trades, net {score.net_pnl:+.2f} USDT")
    return lines


def run_walk_forward_command(settings: Settings, req: Request, args: argparse.Namespace, out: TextIO,
                             err: TextIO) -> int:
    from engine.backtest.metrics import compute_metrics
    from engine.backtest.report import render_summary, report_json, write_report_dir

    options = options_from(settings, req, args)
    load_rules(req.data_dir, req.symbols, req.exchange_info)
    candles = load_window(req)
    wall = time.perf_counter()
    bar = ProgressBar("walk-forward", stream=err)
    wf = run_walk_forward_backtest(settings, req.data_dir, req.symbols, req.start, req.end, options,
                                   exchange_info=req.exchange_info, operator_reset_after=req.operator_reset_after,
                                   progress=lambda done, total, _label: bar(done, total))
    result = wf.result

    result = dataclasses.replace(result, wall_seconds=time.perf_counter() - wall)
    metrics = compute_metrics(result, closes=closes_in_window(candles, req.start, req.end))
    print(render_summary(result, metrics), file=out)
    print("\n".join(render_folds(wf)), file=out)
    if req.json_path is not None:
        doc = report_json(result, metrics)
        doc["walk_forward"] = {"retrain_days": options.retrain_days, "train_days": options.train_days,
                               "horizon_hours": options.horizon_hours, "train_stride": options.stride,
                               "folds": [f.to_json() for f in wf.folds]}
        doc["voters"] = wf.voters_json()
        req.json_path.parent.mkdir(parents=True, exist_ok=True)
        req.json_path.write_text(json.dumps(doc, indent=1))
        print(f"JSON report: {req.json_path}", file=out)
    if req.report_dir is not None:
        print(f"chart: {write_report_dir(req.report_dir, result, metrics)}", file=out)
    return 0
