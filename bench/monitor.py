"""Monitor-tick benchmark: CPU time of the exit logic for 20 open positions plus the circuit breakers
(evaluate on the account equity, and the /breakers state listing) — no network.

Run from the repository root:  .venv/bin/python bench/monitor.py [--positions 20] [--ticks 288]
                                                                 [--data data/sample]

Data: real Binance 5m candles (``data/sample`` by default: BTC, ETH, SOL; ``../shared/data/binance-futures``
works too). Position i trades symbol ``i % n``, long or short alternately, entered at a different 5m candle
from 2025-04-06 00:00 UTC on (the crash day), sized by ``engine.policy.risk.plan_entry`` with a 2 x ATR(1h) stop.
Each tick feeds every position the next real candle (mark = close, high/low since the last tick, ATR(1h)),
applies the actions, and replaces a closed position with a fresh one, so 20 stay open. The breakers run on
a real SQLite database in a temporary directory. CPU time is ``time.process_time`` (all threads, so the
aiosqlite worker is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.clock import ManualClock, from_ms  # noqa: E402
from engine.exchange.historical import HistoricalMarket  # noqa: E402
from engine.exchange.types import KlineBatch, PositionSide, SymbolRules  # noqa: E402
from engine.market import resample_klines  # noqa: E402
from engine.policy.exits import (  # noqa: E402
    CloseAll,
    ClosePartial,
    ExitConfig,
    MarketState,
    MoveStop,
    PositionState,
    evaluate_exits,
    observe,
)
from engine.policy.risk import RiskConfig, plan_entry  # noqa: E402
from engine.trading.breakers import AccountSnapshot, Breakers  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.repositories import StateRepository  # noqa: E402
from strategies.features import atr as atr_series  # noqa: E402

START = datetime(2025, 4, 6, tzinfo=UTC)
RISK = RiskConfig(risk_per_trade_pct=Decimal("1"), leverage=3, max_position_notional_pct=Decimal("100"),
                  stop_atr_mult=Decimal("2"), take_profit_atr_mult=Decimal("3"), min_stop_pct=Decimal("0.5"),
                  max_stop_pct=Decimal("5"), min_reward_risk=Decimal("1.5"))


@dataclass
class Series:
    rules: SymbolRules
    b5: KlineBatch
    atr_at: np.ndarray  # ATR(1h) known at each 5m candle's close (last closed hour)


def load(data_dir: Path, rules: dict[str, SymbolRules]) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for path in sorted(data_dir.glob("*-5m.csv.gz")):
        symbol = path.name.split("-")[0]
        if symbol not in rules:
            continue
        d = pd.read_csv(path)
        b5 = KlineBatch(symbol, "5m", d["open_time"].to_numpy(np.int64),
                        *(d[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")))
        h1 = resample_klines(b5, "1h")
        a = atr_series(h1.high, h1.low, h1.close)
        closed = np.searchsorted(h1.open_time + 3_600_000, b5.open_time + 300_000, side="right") - 1
        out[symbol] = Series(rules[symbol], b5, np.where(closed >= 0, a[np.maximum(closed, 0)], np.nan))
    return out


async def _rules(data_dir: Path) -> dict[str, SymbolRules]:
    return await HistoricalMarket(data_dir, ManualClock(START)).symbol_rules()


def dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def open_position(trade_id: int, s: Series, i: int, side: PositionSide) -> PositionState | None:
    price, atr = dec(s.b5.close[i]), dec(s.atr_at[i])
    plan = plan_entry(rules=s.rules, side=side, price=price, atr=atr, equity=Decimal(10_000),
                      available=Decimal(10_000), cfg=RISK)
    if not plan.ok:
        return None
    return PositionState.opened(trade_id=trade_id, symbol=s.rules.symbol, side=side, entry_price=price,
                                quantity=plan.quantity, stop_price=plan.stop_price,
                                opened_at=from_ms(int(s.b5.open_time[i]) + 300_000))


@dataclass
class Slot:
    series: Series
    index: int
    state: PositionState


def tick_exits(slots: list[Slot], cfg: ExitConfig, counts: dict[str, int], next_id: list[int]) -> None:
    for slot in slots:
        s, i = slot.series, slot.index
        market = MarketState(dec(s.b5.close[i]), dec(s.atr_at[i]), dec(s.b5.high[i]), dec(s.b5.low[i]))
        now = from_ms(int(s.b5.open_time[i]) + 300_000)
        actions = evaluate_exits(slot.state, market, cfg, now, rules=s.rules)
        state = observe(slot.state, market)
        # the exchange-side stop fires inside the candle (the bench stands in for the exchange here)
        stop_hit = s.b5.low[i] <= float(state.stop_price) if state.side is PositionSide.LONG else (
            s.b5.high[i] >= float(state.stop_price))
        closed = stop_hit
        for action in actions:
            if isinstance(action, MoveStop):
                state = state.with_stop(action.new_price)
                counts["stop moves"] += 1
            elif isinstance(action, ClosePartial):
                state = state.after_partial(action.quantity, action.step)
                counts["partials"] += 1
            elif isinstance(action, CloseAll):
                closed = True
                counts[f"close: {action.reason}"] = counts.get(f"close: {action.reason}", 0) + 1
        if stop_hit:
            counts["exchange stop hit"] += 1
        slot.index += 1
        if closed:
            next_id[0] += 1
            fresh = open_position(next_id[0], s, slot.index, state.side)
            state = fresh if fresh is not None else state
        slot.state = state


async def run(args: argparse.Namespace) -> None:
    data = load(Path(args.data), await _rules(Path(args.data)))
    first = {s: int(np.searchsorted(d.b5.open_time, int(START.timestamp() * 1000))) for s, d in data.items()}
    # symbols whose candles cover the whole run (every position may be re-opened further on)
    needed = 14 + 7 * args.positions + args.ticks + 1
    symbols = sorted(s for s in data if first[s] > 0 and first[s] + needed < len(data[s].b5))
    slots: list[Slot] = []
    for i in range(args.positions):
        s = data[symbols[i % len(symbols)]]
        idx = first[s.rules.symbol] + 13 + i * 7  # past the first hour so ATR(1h) exists; staggered entries
        state = open_position(i + 1, s, idx, PositionSide.LONG if i % 2 == 0 else PositionSide.SHORT)
        assert state is not None, f"could not size position {i}"
        slots.append(Slot(s, idx + 1, state))
    cfg = ExitConfig()
    counts = {"stop moves": 0, "partials": 0, "exchange stop hit": 0}
    next_id = [args.positions]
    exits_ms: list[float] = []
    breakers_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database(Path(tmp) / "bench.sqlite3").open()
        breakers = Breakers(StateRepository(db))
        equity = 10_000.0
        rng = np.random.default_rng(7)
        for t in range(args.ticks):
            now = START + timedelta(hours=2, minutes=5 * t)
            c0 = time.process_time()
            tick_exits(slots, cfg, counts, next_id)
            c1 = time.process_time()
            equity *= 1 + rng.normal(0, 0.0005)
            await breakers.evaluate(AccountSnapshot(dec(equity), btc_atr_ratio=1.0), now)
            await breakers.states(now)
            c2 = time.process_time()
            exits_ms.append((c1 - c0) * 1000)
            breakers_ms.append((c2 - c1) * 1000)
        await db.close()
    total = [a + b for a, b in zip(exits_ms, breakers_ms, strict=True)]
    print(f"monitor tick CPU, {args.positions} open positions, {args.ticks} ticks of real 5m data "
          f"({', '.join(symbols)} from {START:%Y-%m-%d}), no network")
    for name, xs in (("exits", exits_ms), ("breakers", breakers_ms), ("total", total)):
        print(f"  {name:9s} median {statistics.median(xs):6.2f} ms   p95 {np.percentile(xs, 95):6.2f} ms   "
              f"max {max(xs):6.2f} ms")
    print(f"  target < 20 ms per tick: {'met' if np.percentile(total, 95) < 20 else 'MISSED'} (p95)")
    print("  actions: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=288)
    parser.add_argument("--data", default=str(ROOT / "data" / "sample"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
