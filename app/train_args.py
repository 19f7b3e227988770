"""The arguments of ``python main.py train`` (light: building the parser imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT", help="comma-separated symbols")
    parser.add_argument("--start", required=True, help="first day, UTC (YYYY-MM-DD)")
    parser.add_argument("--end", required=True, help="day after the last one, UTC (YYYY-MM-DD, exclusive)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with SYMBOL-5m.csv.gz and SYMBOL-funding.csv.gz "
                             "(default: DATA_DIR/binance-futures)")
    parser.add_argument("--out", type=Path, default=None, help="model file (default: DATA_DIR/models/vigil-ml.joblib)")
    parser.add_argument("--train-days", type=float, default=90, help="training window of each fold (default 90)")
    parser.add_argument("--test-days", type=float, default=30, help="test window of each fold (default 30)")
    parser.add_argument("--horizon-hours", type=float, default=24,
                        help="label horizon: the take-profit must be hit within it (default 24)")
    parser.add_argument("--stride", type=int, default=3, help="use every n-th 5m candle (default 3)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability needed to act (default 0.5)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained in parallel (default 1)")
    parser.add_argument("--dask-scheduler", default=None, help="send the folds to this Dask scheduler (tcp://...)")
    parser.add_argument("--json", type=Path, default=None, help="write the evaluation as JSON here")
