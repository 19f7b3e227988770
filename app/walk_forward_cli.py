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
from engine.backtest.metrics import Metrics
from settings import Settings


def options_from(settings: Settings, req: Request, args: argparse.Namespace) -> WalkForwardOptions:
    if req.strategy != "default" or req.engine != "fast":
        raise BacktestInputError("--walk-forward runs the default strategy on the fast engine "
                                 "(drop --strategy/--engine)")
    if getattr(args, "sweep", None):
        raise BacktestInputError("--walk-forward and --sweep do not combine; run them separately")
    if settings.learned_weights:
        raise BacktestInputError("--walk-forward does not model LEARNED_WEIGHTS=true (it would run with fixed "
                                 "weights); set LEARNED_WEIGHTS=false, or backtest the learned weights without "
                                 "--walk-forward")
    retrain = args.retrain_days if args.retrain_days is not None else settings.retrain_days
    if retrain <= 0 or args.train_days <= 0 or args.horizon_hours <= 0 or args.train_stride < 1:
        raise BacktestInputError("--retrain-days, --train-days and --horizon-hours must be > 0, --train-stride >= 1")
    return WalkForwardOptions(retrain_days=retrain, train_days=args.train_days, horizon_hours=args.horizon_hours,
                              stride=args.train_stride)


def _pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.1%}"


def _f(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or x != x:
        return "–"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def render_folds(wf: WalkForwardResult) -> list[str]:
    lines = ["walk-forward folds (one continuous run; per fold: the ML model's training rows, the trades that opened "
             "in the fold and their net P&L, the account equity at the fold's end):"]
    for f in wf.folds:
        model = "no model (too little history)" if f.window is None else (
            f"model on {f.window.rows:,} rows to {f.to_json()['model']['label_end'][:16]}")
        lines.append(f"  {f.start:%Y-%m-%d} → {f.end:%Y-%m-%d}  {model:44}  trades {f.trades:4}  "
                     f"net {f.net_pnl:+.2f} USDT  equity {f.end_equity:.2f}")
    return lines


def render_evaluation(wf: WalkForwardResult, metrics: dict[str, Metrics]) -> list[str]:
    """Signal quality (every vote row and onsets), calibration and the engine P&L of every candidate, as
    markdown tables; ``metrics`` are each candidate's run metrics (with buy-and-hold)."""
    out = ["", "Signal quality against the triple-barrier outcome of the side voted (every valid 5m row of the window; "
           "rows = every non-FLAT row, onsets = the first non-FLAT row of a run):", ""]
    rows = []
    for name, c in wf.candidates.items():
        for kind, s in (("rows", c.rows), ("onsets", c.onsets)):
            rows.append([name, kind, f"{s.votes:,}", _pct(s.hit_rate), _f(s.brier), _f(s.mean_r, 3, True),
                         _f(s.total_r, 0, True)])
    out += _table(["candidate", "count", "labelled", "hit rate", "Brier", "mean net R", "total net R"], rows)
    out += ["", "Calibration (every labelled vote row; for a panel its consensus score):", ""]
    rows = []
    for name, c in wf.candidates.items():
        for b in c.calibration:
            rows.append([name, f"{b.lo:.1f}–{b.hi:.1f}", f"{b.count:,}", _f(b.mean_confidence),
                         _pct(b.hit_rate)])
    out += _table(["candidate", "confidence", "rows", "mean confidence", "observed hit rate"], rows)
    out += ["", "Acting on it: one continuous fast-engine run each, after fees and funding:", ""]
    rows = []
    for name, m in metrics.items():
        rows.append([name, f"{m.trades:,}", f"{m.net_pnl:+,.2f}", f"{m.fees:,.2f}", f"{m.funding:+,.2f}",
                     _f(m.profit_factor, 2), f"{m.win_rate:.1f}%", f"{m.return_pct:+.1f} %",
                     f"{m.drawdown.pct:.1f} %", str(len(wf.candidates[name].run.halts))])
    out += _table(["candidate", "trades", "net P&L (USDT)", "fees", "funding", "profit factor", "win rate", "return",
                   "max drawdown", "drawdown halts"], rows)
    bh = metrics[CONSENSUS].buy_and_hold
    if bh is not None:
        out += ["", f"Buy-and-hold of the same symbols over the same window (equal weights, no fees): "
                f"{bh.return_pct:+.1f} %, max drawdown {bh.max_drawdown_pct:.1f} %."]
    return out


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
    closes = closes_in_window(candles, req.start, req.end)
    metrics = compute_metrics(result, closes=closes)
    print(render_summary(result, metrics), file=out)
    print("\n".join(render_folds(wf)), file=out)
    each = {name: compute_metrics(c.run, closes=closes, mc_runs=0) for name, c in wf.candidates.items()}
    print("\n".join(render_evaluation(wf, each)), file=out)
    if req.json_path is not None:
        doc = report_json(result, metrics)
        doc["walk_forward"] = {"retrain_days": options.retrain_days, "train_days": options.train_days,
                               "horizon_hours": options.horizon_hours, "train_stride": options.stride,
                               "folds": [f.to_json() for f in wf.folds]}
        doc["voters"] = wf.voters_json()
        doc["ablation"] = wf.ablation_json()
        req.json_path.parent.mkdir(parents=True, exist_ok=True)
        req.json_path.write_text(json.dumps(doc, indent=1))
        print(f"JSON report: {req.json_path}", file=out)
    if req.report_dir is not None:
        print(f"chart: {write_report_dir(req.report_dir, result, metrics)}", file=out)
    return 0
