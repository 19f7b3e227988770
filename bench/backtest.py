"""Backtest benchmark: wall time, candles per second and peak RSS of ``python main.py backtest``, each case in a
fresh subprocess (so peak RSS is the case's own, data loading and imports included).

    .venv/bin/python bench/backtest.py [--cases a,b,b2,c,bd,b2d,cd] [--data ../shared/data/binance-futures] [--reps 1]

Cases (issue 8):
  a  --strategy ema-cross on BTCUSDT, ETHUSDT, LTCUSDT, 2023-01-01 → 2024-05-14 (freqtrade: 48.9 s, 752 MB;
     target < 4.9 s and < 190 MB)
  b  the default pipeline with the fast engine on BTCUSDT, ETHUSDT, SOLUSDT, 2023-01-01 → 2025-06-30 (target
     < 30 s and < 400 MB)
  b2 case b with ``--operator-reset-after 1``: trading goes on after each drawdown halt (case b halts for good at
     the first one, as the default does), so the whole period is walked with positions
  c  --engine replay on the demo window (data/sample, BTC/ETH/SOL, 2025-03-24 + 21 days; baseline 560 candles/s)

Cases bd, b2d and cd are b, b2 and c with the shipped default panel. Every other case runs the former default
panel (``VOTERS=trend_momentum``, ``ENTRY_THRESHOLD=0.6``), the workload the timings were first published on; the
walk-forward's default panel trades about ten times less.

"wall" is measured inside the child from its first line (imports, data loading, run, metrics, summary);
"process" is the parent's view of the whole subprocess, interpreter start included; "cpu" is the child's user +
system CPU time (the steadier figure when other work shares the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "binance-futures"
SAMPLE = ROOT / "data" / "sample"

CASES: dict[str, tuple[str, list[str]]] = {
    "a": ("ema-cross BTC/ETH/LTC 2023-01-01→2024-05-14",
          ["--strategy", "ema-cross", "--symbols", "BTCUSDT,ETHUSDT,LTCUSDT", "--start", "2023-01-01",
           "--end", "2024-05-14"]),
    "b": ("default, fast engine, BTC/ETH/SOL 2023-01-01→2025-06-30",
          ["--strategy", "default", "--engine", "fast", "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--start",
           "2023-01-01", "--end", "2025-06-30"]),
    "b2": ("default, fast engine, BTC/ETH/SOL 2023-01-01→2025-06-30, drawdown halts reset after a day",
           ["--strategy", "default", "--engine", "fast", "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--start",
            "2023-01-01", "--end", "2025-06-30", "--operator-reset-after", "1"]),
    "c": ("default, replay engine, demo window (sample data)",
          ["--strategy", "default", "--engine", "replay", "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--start",
           "2025-03-24", "--end", "2025-04-14"]),
}
#: the same workloads with the shipped default panel (``VOTERS`` and ``ENTRY_THRESHOLD`` as in settings.py)
SHIPPED = {"bd": "b", "b2d": "b2", "cd": "c"}
CASES.update({new: (CASES[old][0].replace("default,", "shipped default panel,", 1), CASES[old][1])
              for new, old in SHIPPED.items()})


def child(case: str, data_dir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import main

    name, args = CASES[case]
    if case in ("c", "cd"):
        data_dir = SAMPLE
    if case not in SHIPPED:
        # the workload the published timings were measured on: the former default rule (trend_momentum alone at
        # 0.6), which trades ~10x as often as the walk-forward's default panel (docs/evaluation.md)
        os.environ.update(VOTERS="trend_momentum", ENTRY_THRESHOLD="0.6")
    json_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"vigil-bench-backtest-{os.getpid()}.json"
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
        code = main.main(["--env-file", "/nonexistent", "backtest", "--data-dir", str(data_dir), *args,
                          "--json", str(json_path)])
    wall = time.perf_counter() - T0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime
    metrics = json.loads(json_path.read_text())["metrics"] if code == 0 else {}
    json_path.unlink(missing_ok=True)
    print(json.dumps({"case": case, "name": name, "code": code, "wall": wall, "cpu": cpu, "peak_mb": peak_mb,
                      "candles": metrics.get("candles"), "trades": metrics.get("trades"),
                      "net_pnl": metrics.get("net_pnl"), "engine": metrics.get("engine")}))


def parent(cases: list[str], data_dir: Path, reps: int) -> None:
    print(f"{'case':<4} {'what':<58} {'wall s':>7} {'cpu s':>6} {'process s':>9} {'candles':>9} {'candles/s':>10} "
          f"{'peak MB':>8} {'trades':>6}")
    for case in cases:
        runs = []
        for _ in range(reps):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", case, "--data", str(data_dir)],
                                  capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - started
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{case:<4} failed: {proc.stderr.strip().splitlines()[-1:] or proc.stdout[-300:]}")
                break
            row = json.loads(lines[-1])
            row["process"] = elapsed
            runs.append(row)
        if not runs:
            continue
        if "skipped" in runs[0]:
            print(f"{case:<4} skipped: {runs[0]['skipped']}")
            continue
        wall = statistics.median(r["wall"] for r in runs)
        process = statistics.median(r["process"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        row = runs[0]
        rate = row["candles"] / wall if row["candles"] else 0.0
        print(f"{case:<4} {row['name']:<58} {wall:>7.2f} {cpu:>6.2f} {process:>9.2f} {row['candles']:>9,} "
              f"{rate:>10,.0f} {peak:>8.0f} {row['trades']:>6}  ({row['engine']} engine, exit {row['code']}, net "
              f"{row['net_pnl']:+.2f}, median of {len(runs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="a,b,b2,c")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
    else:
        parent([c.strip() for c in args.cases.split(",") if c.strip()], args.data, args.reps)


if __name__ == "__main__":
    main()
