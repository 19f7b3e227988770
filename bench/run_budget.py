"""Resource budget of ``main.py run``: start-up time and memory over 500 scan and monitor cycles.

Drives the real ``main.py run`` process in paper mode against the local fake Binance server
(tests/fakes/binance_server.py) with a 50-symbol universe (the 3 bundled real series and 47 clones of them),
scanning and monitoring every second. It counts cycles by scraping the bot's own Prometheus endpoint and
samples the process RSS from /proc. Prints:

- start-up: from process spawn to the end of the first scan (and that scan's own duration);
- the RSS curve, one sample every 25 scan cycles, with its first-half / second-half growth.

Targets (issue 11): start-up to first scan < 5 s; RSS < 250 MB and flat.

Run from the repository root:  .venv/bin/python bench/run_budget.py [--cycles 500] [--symbols 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from settings import Settings  # noqa: E402
from tests.fakes.binance_server import FakeBinanceFutures  # noqa: E402

BUNDLED = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
TARGET_STARTUP_S = 5.0
TARGET_RSS_MB = 250.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (load-independent, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_line(log_file: Path, marker: str) -> tuple[float, str]:
    """Wall time (epoch seconds) and text of the first line of the bot's log containing ``marker``."""
    for line in log_file.read_text().splitlines():
        if marker in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            return stamp.timestamp(), line
    raise RuntimeError(f"{marker!r} not found in {log_file}")


def counts(url: str) -> dict[str, float]:
    """Finished runs per job and the last scan's duration, from the bot's metrics; {} while it is not up."""
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vigil_job_duration_seconds_count":
                out[s.labels["job"]] = s.value
            elif s.name == "vigil_job_last_duration_seconds" and s.labels.get("job") == "scan":
                out["scan_seconds"] = s.value
    return out


async def bench(cycles: int, n_symbols: int, workdir: Path) -> int:
    clones = {f"C{i:03d}USDT": BUNDLED[i % 3] for i in range(n_symbols - len(BUNDLED))}
    symbols = [*BUNDLED, *clones]
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with FakeBinanceFutures(clones=clones) as fake:
        env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
        env.update({"PYTHONPATH": str(ROOT), "DATA_DIR": str(workdir), "BINANCE_BASE_URL": fake.base_url,
                    "SYMBOLS": ",".join(symbols), "SCAN_INTERVAL_SECONDS": "1", "SCAN_DELAY_SECONDS": "0",
                    "MONITOR_INTERVAL_SECONDS": "1", "METRICS_PORT": str(port), "LOG_LEVEL": "INFO",
                    "PAPER_TRIGGER_INTERVAL": "5m", "BACKUP_TIME_UTC": "off"})
        started, spawned = time.monotonic(), time.time()
        with (workdir / "stdout.log").open("ab") as out:
            proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "main.py"), "run", env=env,
                                                        cwd=workdir, stdout=out, stderr=out)
        cpu = 0.0
        curve: list[tuple[int, int, float, float]] = []
        next_sample = 0
        try:
            while True:
                if proc.returncode is not None:
                    print(f"main.py run exited with {proc.returncode}; see {workdir / 'stdout.log'}")
                    return 1
                seen = await asyncio.to_thread(counts, url)
                scans, monitors = int(seen.get("scan", 0)), int(seen.get("monitor", 0))
                if scans >= next_sample and scans >= 1:
                    curve.append((scans, monitors, time.monotonic() - started, rss_mb(proc.pid)))
                    next_sample = (scans // 25 + 1) * 25
                if scans >= cycles and monitors >= cycles:
                    cpu = cpu_seconds(proc.pid)
                    break
                await asyncio.sleep(0.5)
        finally:
            if proc.returncode is None:
                proc.terminate()
            code = await asyncio.wait_for(proc.wait(), 60)
    log_file = workdir / "logs" / "vigil.log"
    begun = first_line(log_file, "Vigil starting")[0] - spawned
    ready = first_line(log_file, "scheduler started")[0] - spawned
    fetched_at, line = first_line(log_file, "engine.market: snapshot:")
    fetch_seconds = float(line.rsplit(",", 1)[1].split()[0])
    scan_start = fetched_at - fetch_seconds - spawned
    print(f"main.py run, paper mode, {n_symbols} symbols, scan and monitor every 1 s, {cycles} cycles; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"start-up (wall, from spawn): imports and settings {begun:.2f} s; engine ready, scheduler running "
          f"{ready:.2f} s; first scan started {scan_start:.2f} s (target < {TARGET_STARTUP_S:.0f} s -> "
          f"{'OK' if scan_start < TARGET_STARTUP_S else 'OVER'}); its {n_symbols}-symbol history fetched in "
          f"{fetch_seconds:.2f} s")
    print(f"CPU time of the bot over the run: {cpu:.1f} s")
    report(curve, fake.weight_charged, code)
    return 0


def report(curve: list[tuple[int, int, float, float]], weight: int, code: int) -> None:
    print(f"{'scans':>6} {'monitors':>8} {'elapsed s':>9} {'RSS MB':>7}")
    for scans, monitors, elapsed, rss in curve:
        print(f"{scans:>6} {monitors:>8} {elapsed:>9.1f} {rss:>7.1f}")
    values = [rss for *_, rss in curve]
    half = len(values) // 2
    early, late = values[:half] or values, values[half:]
    growth = max(late) - max(early)
    print(f"RSS peak {max(values):.1f} MB (target < {TARGET_RSS_MB:.0f}) -> "
          f"{'OK' if max(values) < TARGET_RSS_MB else 'OVER'}; second-half peak minus first-half peak "
          f"{growth:+.1f} MB")
    print(f"fake exchange weight charged: {weight}; main.py run exit code {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=500, help="scan and monitor cycles to run (default 500)")
    parser.add_argument("--symbols", type=int, default=50, help="universe size (default 50, at least 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        return asyncio.run(bench(args.cycles, max(3, args.symbols), Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
