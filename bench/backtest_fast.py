"""Fast backtest engine benchmark: wall time, candles per second and peak RSS, data loading included.

    python bench/backtest_fast.py [--symbols BTCUSDT,ETHUSDT,SOLUSDT] [--start 2023-01-01] [--end 2025-07-01]
                                  [--signals table|reference|ema] [--data-dir DIR]

``--signals``:
- ``table`` (default when ``strategies.signal_table`` exists): the vectorised signal table — the full default
  pipeline, the issue's target (< 30 s and < 400 MB on BTC/ETH/SOL 2023-01-01 → 2025-06-30, ~634k candles);
- ``reference``: the live scan at every scan time (exact, slow: use a short window);
- ``ema``: a stand-in vectorised EMA-cross table (NOT the default strategy) that measures the engine loop and
  data loading alone on the full history.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.backtest import reference_signals, run_fast_backtest
from engine.backtest.signals import SymbolSignals
from engine.exchange.historical import HistoricalMarket
from settings import Settings
from strategies.scanner import SymbolContext
from strategies.types import Direction, Signal

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-futures"


class EmaTable:
    """Stand-in table: long when EMA(12) > EMA(48) of the 5m close and the cross is fresh, short on the mirror."""

    def __init__(self, symbol: str, close: np.ndarray, high: np.ndarray, low: np.ndarray) -> None:
        fast, slow = _ema(close, 12), _ema(close, 48)
        above = fast > slow
        cross = np.zeros(len(close), dtype=bool)
        cross[1:] = above[1:] != above[:-1]
        self.direction = np.where(cross, np.where(above, 1, -1), 0).astype(np.int8)
        self.direction[:300] = 0
        self.score = np.where(self.direction != 0, 0.8, 0.0)
        tr = np.maximum(high - low, 0.0)
        self.atr = _ema(tr, 14) * 12 ** 0.5  # ~1h ATR from the 5m true range
        self.close = close
        self.symbol = symbol

    def signal_at(self, i: int) -> Signal | None:
        d = int(self.direction[i])
        return Signal(self.symbol, Direction(d), float(self.score[i]), float(self.close[i]), float(self.atr[i]))

    def context_at(self, i: int) -> SymbolContext | None:
        return None


def _ema(x: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(x).ewm(span=n, adjust=False).mean().to_numpy()


def ema_signals(settings: Settings, market: HistoricalMarket, symbols: list[str], start: datetime,
                end: datetime) -> Mapping[str, SymbolSignals]:
    out: dict[str, SymbolSignals] = {}
    for s in symbols:
        _, _, high, low, close, _, _ = market.history(s)
        out[s] = EmaTable(s, close, high, low)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT")
    p.add_argument("--start", default="2023-01-01")
    p.add_argument("--end", default="2025-07-01", help="exclusive")
    has_table = importlib.util.find_spec("strategies.signal_table") is not None
    p.add_argument("--signals", choices=["table", "reference", "ema"], default="table" if has_table else "ema")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--operator-reset-after-days", type=float, default=None,
                   help="simulate an operator resetting a drawdown halt (keeps the walk going to the end)")
    args = p.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if args.signals == "table":
        if not has_table:
            print("strategies.signal_table is not there yet: use --signals ema or reference", file=sys.stderr)
            return 2
        from strategies import signal_table  # type: ignore[attr-defined]

        factory = signal_table.fast_engine_signals  # the signals branch's entry point
    else:
        factory = reference_signals if args.signals == "reference" else ema_signals
    # the former default rule, the workload the published timings were measured on (docs/evaluation.md)
    settings = Settings(_env_file=None, trading_mode="paper", voters=["trend_momentum"],  # type: ignore[call-arg]
                        entry_threshold=0.6)
    started = time.perf_counter()
    reset = None if args.operator_reset_after_days is None else timedelta(days=args.operator_reset_after_days)
    result = run_fast_backtest(settings, args.data_dir, symbols, start, end, signals=factory,
                               operator_reset_after=reset)
    wall = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"signals {args.signals}: {','.join(symbols)} {args.start} → {args.end} (exclusive)")
    print(f"candles {result.candles:,}  trades {len(result.trades)}  open at end {result.open_at_end}  "
          f"equity {result.start_equity:.2f} → {result.end_equity:.2f}  halts {len(result.halts)}")
    print(f"wall {wall:.1f} s (engine loop {result.wall_seconds:.1f} s)  "
          f"{result.candles / wall:,.0f} candles/s  peak RSS {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
