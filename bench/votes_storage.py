"""Vote book size: rows per day and bytes per row of the ``votes`` table, measured on real data.

1. Rows/day: the live scan's signals for every closed 5m candle of the chosen symbols and period (the vectorised
   signal tables, pinned to the live scan by the signal parity test), default panel (the TrendMomentum voter).
   A symbol-scan is recorded when a voter is not FLAT; with one voter that is a row with a non-zero score (a
   majority exists). Scaled to 100 symbols × 288 scans a day, plus the LLM rows of an optional LLM panel.
2. Bytes/row: rows with the real votes and reasons of those signals (``Consensus.decide`` at sampled rows, as the
   live scan writes them) inserted through ``VoteRepository`` into a real SQLite file made by the migrations,
   every non-FLAT vote then resolved (outcome, R, time written); bytes = used pages × page size / rows (indexes
   included).

Run from the repository root:  .venv/bin/python bench/votes_storage.py [--data DIR] [--symbols A,B] [--start D]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.signals import day, read  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.votes import PendingEntry, VoteRepository, VoteRow  # noqa: E402
from strategies.consensus import Consensus  # noqa: E402
from strategies.labels import BarrierParams  # noqa: E402
from strategies.outcomes import resolve_vote  # noqa: E402
from strategies.signal_table import SignalConfig, build_signal_tables  # noqa: E402
from strategies.technical import TrendMomentumVoter  # noqa: E402

SCANS_PER_DAY = 288
REGIMES = ("trending_up", "trending_down", "ranging", "volatile")


async def measure_bytes(samples: list[VoteRow], rows: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database(Path(tmp) / "votes.sqlite3").open()
        try:
            repo = VoteRepository(db)
            base = datetime(2025, 1, 1, tzinfo=UTC)
            batch: list[VoteRow] = []
            for i in range(rows):
                s = samples[i % len(samples)]
                t = base + timedelta(minutes=5 * (i // 40))
                batch.append(VoteRow(t, s.symbol, s.candle_ms + i, s.voter, s.direction, s.confidence, s.reason,
                                     s.consensus, s.score, REGIMES[i % 4], s.price, s.stop_atr, s.decision,
                                     s.trade_id))
                if len(batch) == 5_000:
                    await repo.record(batch)
                    batch = []
            await repo.record(batch)
            await db.execute("UPDATE votes SET outcome = 'sl', outcome_r = -1.07, resolved_at = ? WHERE direction != 0",
                             (base.isoformat(),))
            pending = await repo.pending(limit=10)
            assert not pending or isinstance(pending[0], PendingEntry)
            page_size = (await db.fetchone("PRAGMA page_size"))[0]
            pages = (await db.fetchone("PRAGMA page_count"))[0] - (await db.fetchone("PRAGMA freelist_count"))[0]
            return pages * page_size / rows, await repo.count()
        finally:
            await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "binance-futures")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,DOGEUSDT,LTCUSDT")
    parser.add_argument("--start", default="2025-01-01")
    parser.add_argument("--end", default="2025-04-01", help="exclusive")
    parser.add_argument("--rows", type=int, default=200_000, help="rows inserted to measure bytes/row")
    parser.add_argument("--retention-days", type=int, default=30)
    parser.add_argument("--llm-providers", type=int, default=0, help="LLM voters on the panel (LLM_TOP_N=3 each)")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no data folder {args.data}; pass --data DIR")
    started = time.perf_counter()
    histories = {s: read(args.data, s, day(args.start), day(args.end)) for s in args.symbols.split(",")}
    consensus = Consensus([TrendMomentumVoter()], threshold=0.6)
    tables = build_signal_tables(histories, consensus, SignalConfig())
    shares, samples = [], []
    rng = np.random.default_rng(0)
    for symbol, t in tables.items():
        valid = t.valid
        active = valid & (t.score > 0)
        if not valid.any():
            print(f"  {symbol}: no data in the period, left out")
            continue
        shares.append(active.sum() / valid.sum())
        print(f"  {symbol}: {int(valid.sum()):,} scans, a voter not FLAT in {int(active.sum()):,} "
              f"({shares[-1]:.1%})")
        for i in rng.choice(np.flatnonzero(active), size=min(200, int(active.sum())), replace=False):
            signal = t.signal_at(int(i))
            if signal is None:
                continue
            decision = (f"no trade: score {signal.score:.2f} below the threshold 0.60" if signal.direction == 0
                        else "not opened: already in a position")
            samples.extend(VoteRow(datetime.now(UTC), symbol, int(t.open_ms[i]), v.voter, int(v.direction),
                                   v.confidence, v.reason, int(signal.direction), signal.score, None, signal.price,
                                   signal.atr, decision) for v in signal.votes)
    share = float(np.mean(shares))
    per_day = SCANS_PER_DAY * 100 * share
    llm_rows = SCANS_PER_DAY * 3 * args.llm_providers
    print(f"signals: {time.perf_counter() - started:.1f} s; mean share of symbol-scans recorded {share:.1%}")
    print(f"rows/day at 100 symbols, default panel (1 voter): {per_day:,.0f}"
          + (f"; + {llm_rows:,} with {args.llm_providers} LLM provider(s)" if llm_rows else ""))
    reasons = [len(s.reason) for s in samples]
    print(f"reasons: {len(samples):,} sampled, mean {np.mean(reasons):.0f} chars, max {max(reasons)}")
    # the outcome job's CPU: one resolve_vote per pending entry on a cached 300-candle 5m window
    barrier = BarrierParams(horizon=288)
    batch = next(iter(histories.values()))
    n = min(2_000, len(batch) - 600)
    cpu = time.process_time()
    for i in range(n):
        j = 300 + i
        resolve_vote(1, float(batch.close[j]), float(batch.close[j]) * 0.006, int(batch.open_time[j]),
                     batch.open_time[j - 50:j + 250], batch.high[j - 50:j + 250], batch.low[j - 50:j + 250],
                     batch.close[j - 50:j + 250], barrier)
    per_call = (time.process_time() - cpu) / n
    pending = per_day + llm_rows   # at most one entry per non-FLAT row younger than the 24 h horizon
    print(f"resolve_vote: {per_call * 1e6:.0f} µs cpu per pending entry; ~{pending:,.0f} pending at 100 symbols → "
          f"{pending * per_call * 1000:.0f} ms cpu per outcome run (every 15 min)")
    bytes_per_row, count = asyncio.run(measure_bytes(samples, args.rows))
    total = (per_day + llm_rows) * args.retention_days
    print(f"bytes/row (indexes included, resolved): {bytes_per_row:.0f} over {count:,} rows")
    print(f"at VOTES_RETENTION_DAYS={args.retention_days}: {total:,.0f} rows ≈ {total * bytes_per_row / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
