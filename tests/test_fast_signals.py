"""The fast engine's view of a scan: the same ranking as the live scan, and no signal across a missing candle."""

from __future__ import annotations

import numpy as np

from engine.backtest.signals import ScanView, scan_indices
from strategies.consensus import rank
from strategies.scanner import SymbolContext
from strategies.types import Direction, Signal

STEP = 300_000


class Table:
    def __init__(self, symbol: str, directions: list[int], scores: list[float]) -> None:
        self.symbol = symbol
        self.direction = np.array(directions, dtype=np.int8)
        self.score = np.array(scores, dtype=np.float64)

    def signal_at(self, i: int) -> Signal | None:
        return Signal(self.symbol, Direction(int(self.direction[i])), float(self.score[i]), 100.0, 1.0)

    def context_at(self, i: int) -> SymbolContext | None:
        return SymbolContext(20.0, (1.0, 1.0 + i), (0.01 * i,))


def test_ranking_is_the_live_scans_rank_best_score_first_ties_by_symbol() -> None:
    rng = np.random.default_rng(7)
    symbols = [f"S{k}USDT" for k in range(8)]
    n = 50
    tables = {s: Table(s, list(rng.integers(-1, 2, n)), list(np.round(rng.random(n), 1))) for s in symbols}
    for i in range(n):
        view = ScanView(tables, dict.fromkeys(symbols, i))
        expected = rank(t.signal_at(i) for t in tables.values())
        assert [(s.symbol, s.direction, s.score) for s in view.ranked] == \
            [(s.symbol, s.direction, s.score) for s in expected]


def test_a_symbol_whose_newest_candle_is_missing_is_left_out_of_that_scan() -> None:
    times = {"AUSDT": np.arange(10, dtype=np.int64) * STEP,
             "BUSDT": np.array([0, 1, 2, 3, 5, 6, 7, 8, 9], dtype=np.int64) * STEP}  # candle 4 missing
    now = np.arange(1, 10, dtype=np.int64) * STEP + 5_000  # 5 s after each close
    index = scan_indices(times, ["AUSDT", "BUSDT"], now)
    assert list(index["AUSDT"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert list(index["BUSDT"]) == [0, 1, 2, 3, -1, 4, 5, 6, 7]
    tables = {"AUSDT": Table("AUSDT", [1] * 10, [0.5] * 10), "BUSDT": Table("BUSDT", [1] * 9, [0.9] * 9)}
    view = ScanView(tables, {"AUSDT": 4})
    assert [s.symbol for s in view.ranked] == ["AUSDT"]
    assert view.signal("BUSDT") is None and view.context("BUSDT") is None
    assert view.returns(["AUSDT", "BUSDT"]) == {"AUSDT": (0.04,)}
