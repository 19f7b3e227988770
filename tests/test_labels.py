"""Triple-barrier labels on hand-built price paths: take-profit first, stop first, both in one candle, the vertical
barrier, costs that eat a small win, gaps and the end of the data."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.labels import BarrierParams, barrier_distances, segment_ends, triple_barrier

P = BarrierParams(horizon=4, stop_mult=1.0, tp_mult=2.0, min_stop_pct=0.01, max_stop_pct=50, min_reward_risk=1.0,
                  cost_pct=0.0)


def path(closes: list[float], highs: list[float] | None = None, lows: list[float] | None = None, atr: float = 1.0):
    c = np.array(closes, dtype=float)
    h = np.array(highs, dtype=float) if highs else c.copy()
    lo = np.array(lows, dtype=float) if lows else c.copy()
    return h, lo, c, np.full(len(c), atr)


def test_take_profit_before_the_stop_is_a_long_win_and_a_short_loss():
    # entry 100 at t=0; stop 99, tp 102 (long) / stop 101, tp 98 (short)
    labels = triple_barrier(*path([100, 100.5, 101.5, 102.2, 101, 100, 100, 100, 100]), P)
    assert labels.long[0] == 1 and labels.long_outcome[0] == pytest.approx(2.0)   # +2 ATR = +2 R
    assert labels.short[0] == 0 and labels.short_outcome[0] == pytest.approx(-1.0)  # short stopped at 101


def test_stop_first_is_a_loss():
    labels = triple_barrier(*path([100, 99.5, 98.9, 103, 103, 103, 103, 103, 103]), P)
    assert labels.long[0] == 0 and labels.long_outcome[0] == pytest.approx(-1.0)


def test_both_barriers_in_one_candle_count_as_the_stop():
    h, lo, c, a = path([100, 100, 100, 100, 100, 100, 100, 100], highs=[100, 102.5, 100, 100, 100, 100, 100, 100],
                       lows=[100, 98.5, 100, 100, 100, 100, 100, 100])
    labels = triple_barrier(h, lo, c, a, P)
    assert labels.long[0] == 0 and labels.long_outcome[0] == pytest.approx(-1.0)
    assert labels.short[0] == 0 and labels.short_outcome[0] == pytest.approx(-1.0)


def test_neither_barrier_ends_at_the_horizon_close():
    labels = triple_barrier(*path([100, 100.5, 100.8, 100.3, 100.6, 100, 100, 100]), P)
    assert labels.long[0] == 0 and labels.long_outcome[0] == pytest.approx(0.6)   # close at t+4 = 100.6
    assert labels.short_outcome[0] == pytest.approx(-0.6)


def test_costs_are_counted():
    costly = BarrierParams(horizon=4, stop_mult=1.0, tp_mult=2.0, min_stop_pct=0.01, max_stop_pct=50,
                           min_reward_risk=1.0, cost_pct=0.5)  # 0.5 % of 100 = 0.5 per round trip
    labels = triple_barrier(*path([100, 100.5, 101.5, 102.2, 101, 100, 100, 100, 100]), costly)
    assert labels.long[0] == 1 and labels.long_outcome[0] == pytest.approx(1.5)   # (2 − 0.5) / 1
    eaten = BarrierParams(horizon=4, stop_mult=1.0, tp_mult=2.0, min_stop_pct=0.01, max_stop_pct=50,
                          min_reward_risk=1.0, cost_pct=2.5)  # costs 2.5 > the 2.0 take-profit distance
    assert triple_barrier(*path([100, 100.5, 101.5, 102.2, 101, 100, 100, 100, 100]), eaten).long[0] == 0


def test_no_label_past_the_data_across_a_gap_or_without_atr():
    h, lo, c, a = path([100.0] * 10)
    a[2] = np.nan
    labels = triple_barrier(h, lo, c, a, P)
    assert np.isnan(labels.long[2])                      # ATR unknown
    assert np.isnan(labels.long[6]) and not np.isnan(labels.long[5])  # 6 + 4 > 9: runs past the data
    open_ms = np.array([0, 1, 2, 3, 4, 10, 11, 12, 13, 14]) * 300_000  # a gap after candle 4
    ends = segment_ends(open_ms, 300_000)
    assert ends.tolist() == [4, 4, 4, 4, 4, 9, 9, 9, 9, 9]
    gapped = triple_barrier(h, lo, c, a, P, segment_end=ends)
    assert np.isnan(gapped.long[1]) and not np.isnan(gapped.long[0]) and not np.isnan(gapped.long[5])


def test_distances_follow_the_entry_planner_clamps():
    p = BarrierParams(stop_mult=2.0, tp_mult=3.0, min_stop_pct=0.5, max_stop_pct=5.0, min_reward_risk=1.5)
    stop, take = barrier_distances(np.array([100.0, 100.0, 100.0]), np.array([0.1, 1.0, 10.0]), p)
    assert stop.tolist() == pytest.approx([0.5, 2.0, 5.0])            # clamped to 0.5 % … 5 %
    assert take.tolist() == pytest.approx([0.75, 3.0, 30.0])          # at least 1.5 × the stop


def test_chunked_labels_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(7)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, 5_000)))
    h, lo = c * (1 + rng.uniform(0, 0.002, c.size)), c * (1 - rng.uniform(0, 0.002, c.size))
    a = np.full(c.size, 0.3)
    whole = triple_barrier(h, lo, c, a, BarrierParams(horizon=24))
    monkeypatch.setattr("strategies.labels.CHUNK", 777)
    chunked = triple_barrier(h, lo, c, a, BarrierParams(horizon=24))
    np.testing.assert_array_equal(whole.long, chunked.long)
    np.testing.assert_array_equal(whole.short_outcome, chunked.short_outcome)
