"""The arguments of ``python main.py retrain`` (light: building the parser imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", default=None, help="comma-separated symbols (default: SYMBOLS)")
    parser.add_argument("--end", default=None,
                        help="day after the last one, UTC (YYYY-MM-DD, exclusive; default: tomorrow, i.e. up to now)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with SYMBOL-5m.csv.gz (default: DATA_DIR/binance-futures; "
                             "keep it fresh with `python main.py download`)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the model in use, replaced on promotion (default: ML_MODEL_PATH or "
                             "DATA_DIR/models/vigil-ml.joblib)")
    parser.add_argument("--train-days", type=float, default=None,
                        help="the candidate's training window (default RETRAIN_TRAIN_DAYS)")
    parser.add_argument("--holdout-days", type=float, default=None,
                        help="newest days held out of the candidate's training to judge both models "
                             "(default RETRAIN_HOLDOUT_DAYS)")
    parser.add_argument("--horizon-hours", type=float, default=24,
                        help="label horizon: the take-profit must be hit within it (default 24)")
    parser.add_argument("--stride", type=int, default=3, help="use every n-th 5m candle (default 3)")
    parser.add_argument("--min-rows", type=int, default=None,
                        help="labelled predictions the judging window needs (default RETRAIN_MIN_ROWS)")
    parser.add_argument("--refresh", action="store_true",
                        help="first fetch what the data folder lacks of the window from Binance (as `download` "
                             "does: resumable, public data, no keys needed)")
    parser.add_argument("--rollback", action="store_true",
                        help="only swap the model in use with the previous one (MODEL.previous.joblib) and exit")
