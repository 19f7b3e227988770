"""The fast engine's view of a scan: the same ranking as the live scan, and no signal across a missing candle."""

from __future__ import annotations

import numpy as np

from app.runtime import build_consensus
from engine.backtest.signals import ScanView, scan_indices
from engine.exchange.types import KlineBatch
from strategies.consensus import rank
from strategies.scanner import SymbolContext
from strategies.signal_table import SignalConfig, build_symbol_signals
from strategies.types import Direction, Signal
from tests.test_signal_parity import SAMPLE, read_history
from tests.trading_fixtures import make_settings

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


def test_with_signal_tables_a_missing_newest_candle_is_tolerated_as_the_live_scan_does() -> None:
    """On real candles with one 5m candle removed, the scan right after the missing candle keeps the previous row
    (live validation accepts one candle of lag); with two removed, the second scan leaves the symbol out."""
    settings = make_settings()
    full = read_history(SAMPLE, "BTCUSDT")
    keep = np.ones(len(full), dtype=bool)
    one, two = 8_000, 12_000
    keep[[one, two, two + 1]] = False
    history = KlineBatch("BTCUSDT", "5m", full.open_time[keep], full.open[keep], full.high[keep], full.low[keep],
                         full.close[keep], full.volume[keep])
    table = build_symbol_signals(history, build_consensus(settings), SignalConfig.from_settings(settings))
    times = {"BTCUSDT": table.open_ms}
    t0 = int(full.open_time[0])
    scans = np.array([t0 + (k + 1) * STEP + 5_000 for k in (one - 1, one, two - 1, two, two + 1, two + 2)])
    rows = scan_indices(times, ["BTCUSDT"], scans, {"BTCUSDT": table})["BTCUSDT"]
    before_one = table.index_of(t0 + (one - 1) * STEP)
    assert table.valid[before_one]
    assert rows[0] == before_one and rows[1] == before_one           # one candle missing: the previous row
    before_two = table.index_of(t0 + (two - 1) * STEP)
    assert rows[2] == before_two and rows[3] == before_two           # first of two missing: still tolerated
    assert rows[4] == -1                                             # two behind: left out
    assert rows[5] in (-1, table.index_of(t0 + (two + 2) * STEP))    # back once its windows are valid again
    without = scan_indices(times, ["BTCUSDT"], scans)["BTCUSDT"]
    assert without[1] == -1                                          # the plain rule would have dropped it
