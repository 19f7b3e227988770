"""The arguments of ``python main.py backtest`` (light: building the parser imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path

STRATEGIES = ("default", "ema-cross")
ENGINES = ("fast", "replay")
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument("--start", required=True, help="first day, UTC (YYYY-MM-DD)")
    parser.add_argument("--end", required=True, help="end day, UTC, EXCLUSIVE: candles before its 00:00 (YYYY-MM-DD)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="default: Vigil's live decision code; ema-cross: the freqtrade cross-check rule")
    parser.add_argument("--engine", choices=ENGINES, default="fast",
                        help="fast (default) or replay (the full live trader over the paper exchange; slow)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder with SYMBOL-5m.csv.gz and SYMBOL-funding.csv.gz (default: data/sample)")
    parser.add_argument("--exchange-info", type=Path, default=None,
                        help="raw exchangeInfo JSON ({\"symbols\": [...]}) with the symbol rules (default: "
                             "exchange_info.json in --data-dir, else ../exchangeinfo/binance_usdm_markets.json)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help='write {"trades": [...], "metrics": {...}} to FILE')
    parser.add_argument("--report", type=Path, default=None, metavar="DIR",
                        help="write backtest.png (equity vs buy-and-hold, drawdown, monthly returns) into DIR")
    parser.add_argument("--operator-reset-after", type=float, default=None, metavar="DAYS",
                        help="simulate an operator who resets the drawdown breaker DAYS after it trips "
                             "(default: nobody does, entries stay halted to the end)")
    wf = parser.add_argument_group("walk-forward (the ML voter retrained on the past, as the live bot)")
    wf.add_argument("--walk-forward", action="store_true",
                    help="fast engine, default strategy: every --retrain-days retrain the ML voter on the data before "
                         "the fold (purged and embargoed by the label horizon) and swap it in, in one continuous run; "
                         "report per fold, per voter (every vote and onsets, calibration, P&L alone) and the ablations "
                         "(--json gets \"voters\" and \"ablation\" objects)")
    wf.add_argument("--retrain-days", type=float, default=None, metavar="DAYS",
                    help="fold length: the model is retrained this often (default: RETRAIN_DAYS, 7)")
    wf.add_argument("--train-days", type=float, default=90, metavar="DAYS",
                    help="history each fold's model is trained on (default 90)")
    wf.add_argument("--horizon-hours", type=float, default=24,
                    help="label horizon: the take-profit must be hit within it (default 24)")
    wf.add_argument("--train-stride", type=int, default=12, metavar="N",
                    help="train on every N-th 5m candle (default 12: hourly rows; neighbours say the same thing)")
    from engine.sweeps.cli import add_sweep_arguments

    add_sweep_arguments(parser, default_metric="sharpe")
