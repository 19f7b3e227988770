"""How often each local voter takes a side: non-FLAT votes per symbol-day on the real data.

For every symbol and voter, over [--start, --end): the 5m scans in which the symbol is scanned (the signal table's
valid rows: the live scan's windows, features and validation), the scans in which the voter votes LONG or SHORT,
and the onsets (a LONG or SHORT vote whose previous scan was not the same side), each per symbol-day. The votes
are the voters' own (``vote_arrays``), before any consensus. Default settings otherwise (5m/15m/1h/4h, 300 candles).

Run from the repository root:  .venv/bin/python bench/voter_votes.py [--data DIR] [--symbols A,B] [--start D]
[--end D]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.signals import day, read  # noqa: E402
from strategies.consensus import Consensus  # noqa: E402
from strategies.panel import VOTER_NAMES, build_voters  # noqa: E402
from strategies.signal_table import SignalConfig, build_symbol_signals  # noqa: E402

ROWS_PER_DAY = 288


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "binance-futures"))
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,DOGEUSDT,LTCUSDT")
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2025-07-01", help="exclusive")
    args = parser.parse_args()
    start_ms, end_ms = day(args.start), day(args.end)
    voters = build_voters(VOTER_NAMES)
    consensus = Consensus(voters)
    totals = {v.name: np.zeros(4, dtype=np.int64) for v in voters}  # scans, votes, long votes, onsets
    agreeing = np.zeros(len(voters) + 1, dtype=np.int64)
    panel_votes = 0
    print(f"{'symbol':<9} {'days':>7} " + " ".join(f"{v.name:>24}" for v in voters))
    for symbol in args.symbols.split(","):
        table = build_symbol_signals(read(Path(args.data), symbol, start_ms, end_ms), consensus, SignalConfig(),
                                     keep_features=True)
        rows = np.flatnonzero(table.valid)
        cells = []
        long_n = np.zeros(len(rows), dtype=np.int64)
        short_n = np.zeros(len(rows), dtype=np.int64)
        for voter in voters:
            direction = voter.vote_arrays(table)[0][rows]
            long_n += direction > 0
            short_n += direction < 0
            consecutive = np.concatenate(([False], np.diff(rows) == 1))
            previous = np.concatenate(([0], direction[:-1]))
            onsets = int(np.count_nonzero((direction != 0) & ~(consecutive & (previous == direction))))
            counts = np.array([len(rows), np.count_nonzero(direction), np.count_nonzero(direction > 0), onsets])
            totals[voter.name] += counts
            cells.append(_cell(counts))
        print(f"{symbol:<9} {len(rows) / ROWS_PER_DAY:>7.1f} " + " ".join(f"{c:>24}" for c in cells), flush=True)
        same_side = np.where(long_n > short_n, long_n, short_n) * (long_n != short_n)
        agreeing += np.bincount(same_side, minlength=len(voters) + 1)
        panel_votes += int(np.count_nonzero(table.direction[rows]))
    print(f"{'all':<9} {totals[voters[0].name][0] / ROWS_PER_DAY:>7.1f} "
          + " ".join(f"{_cell(totals[v.name]):>24}" for v in voters))
    print("cell: non-FLAT scans per symbol-day (LONG share) / onsets per symbol-day")
    days = totals[voters[0].name][0] / ROWS_PER_DAY
    print("scans per symbol-day with k voters on the majority side (no majority: 0): "
          + ", ".join(f"k={k}: {n / days:.2f}" for k, n in enumerate(agreeing)))
    print(f"the four-voter consensus at the default gates (score >= 0.6): {panel_votes / days:.3f} LONG/SHORT "
          f"scans per symbol-day")


def _cell(counts: np.ndarray) -> str:
    scans, votes, longs, onsets = (int(x) for x in counts)
    days = scans / ROWS_PER_DAY
    share = longs / votes if votes else 0.0
    return f"{votes / days:.2f} ({share:.0%} L) / {onsets / days:.2f}"


if __name__ == "__main__":
    main()
