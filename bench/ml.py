"""ML voter benchmark on the real data in ../shared/data/binance-futures. Three parts, each its own figure:

- ``train``: ``python main.py train`` on a year of 6 symbols (a child process): wall time and its peak RSS
  (the 1 GB VPS budget);
- ``scan``: one scan of 100 symbols with the shipped default panel plus the ML voter (what ``main.py run`` builds
  after ``train``): features + every local voter + the ML model's inference + consensus + ranking, CPU and wall
  time (target < 1 s); the model is the one ``train`` wrote;
- ``walk``: ``python main.py backtest --walk-forward`` on the same 6 symbol-years (a child process): wall time and
  peak RSS.

Run from the repository root:  .venv/bin/python bench/ml.py [--part train|scan|walk|all] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scan import bench_symbols, default_panel, load  # noqa: E402
from strategies.consensus import rank  # noqa: E402
from strategies.features import compute_features  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance-futures"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,DOGEUSDT"
START, END = "2024-07-01", "2025-07-01"
MODEL = Path(tempfile.gettempdir()) / "vigil-bench-ml" / "vigil-ml.joblib"


def child(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of ``python main.py ARGS`` in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"main.py {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, max(peak, before) / 1024, done.stdout


def part_train() -> None:
    wall, peak, out = child(["train", "--data-dir", str(DATA), "--symbols", SYMBOLS, "--start", START, "--end", END,
                             "--out", str(MODEL)])
    print(out.strip().splitlines()[-1])
    print(f"train, 6 symbols × 1 year ({START} → {END}): {wall:.0f} s wall, peak RSS {peak:.0f} MB")


def part_scan(reps: int) -> None:
    frames = bench_symbols(load(DATA), 100)
    panel = default_panel(MODEL)
    voter = panel.voters[-1]
    walls, cpus, unprepared = [], [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        feats = {s: compute_features(tfs) for s, tfs in frames.items()}
        panel.prepare(feats)                       # as evaluate_snapshot: the ML model once for the whole scan
        rank([panel.decide(s, f) for s, f in feats.items()])
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        voter.prepare({})
        w = time.perf_counter()
        for s, f in feats.items():                 # symbol by symbol, for comparison
            voter.vote(s, f)
        unprepared.append(time.perf_counter() - w)
    names = " + ".join(v.name for v in panel.voters)
    print(f"scan of 100 symbols, features + {names} (threshold {panel.threshold:g}) + consensus + rank: median wall "
          f"{statistics.median(walls) * 1000:.0f} ms, CPU {statistics.median(cpus) * 1000:.0f} ms; "
          f"the ML voter symbol by symbol instead of prepared: {statistics.median(unprepared) * 1000:.0f} ms "
          f"({reps} reps)")


def exchange_info() -> Path:
    """The 4 real exchangeInfo entries plus the 3 hand-written ones for BNB, XRP and DOGE, in one file."""
    folder = DATA.parent / "exchangeinfo"
    entries = [e for name in ("binance_usdm_markets.json", "binance_usdm_markets_alts.json")
               for e in json.loads((folder / name).read_text())["symbols"]]
    out = MODEL.parent / "exchange_info.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"symbols": entries}))
    return out


def part_walk() -> None:
    wall, peak, out = child(["backtest", "--walk-forward", "--data-dir", str(DATA), "--symbols", SYMBOLS,
                             "--start", START, "--end", END, "--exchange-info", str(exchange_info()),
                             "--json", str(MODEL.parent / "walk-forward.json")])
    lines = out.strip().splitlines()
    first = next((k for k, line in enumerate(lines) if line.startswith("Acting on it")), max(0, len(lines) - 12))
    print("\n".join(lines[first:]))
    print(f"backtest --walk-forward, 6 symbols × 1 year, retrain every 7 days, one continuous run per candidate "
          f"(the panel, each voter alone, the panel without ML, the former default): {wall:.0f} s wall, "
          f"peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("train", "scan", "walk", "all"), default="all")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.part in ("train", "all"):
        part_train()
    if args.part in ("scan", "all"):
        part_scan(args.reps)
    if args.part in ("walk", "all"):
        part_walk()


if __name__ == "__main__":
    main()
