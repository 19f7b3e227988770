"""The pure pieces of the evaluation (``strategies.evaluation``) on hand-made arrays."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from strategies.evaluation import (
    FIVE_MIN_MS,
    FLAT,
    Events,
    Fold,
    PanelConfig,
    calibration,
    concat_rows,
    declared_grid,
    onsets,
    panel_signal,
    quarter_folds,
    select,
    signal_stats,
    vote_rows,
)

NAN = float("nan")
DAY = 86_400_000


def test_stats_hit_rate_brier_and_r_on_labelled_rows() -> None:
    confidence = np.array([0.9, 0.6, 0.8, 0.5, 0.7])
    hit = np.array([1.0, 0.0, 0.0, NAN, 1.0])
    r = np.array([1.4, -1.1, -0.2, NAN, 1.5])
    s = signal_stats(confidence, hit, r, np.array([True, True, True, True, False]))
    assert (s.votes, s.hits) == (3, 1)                 # the unlabelled row and the masked row are left out
    assert s.hit_rate == pytest.approx(1 / 3)
    assert s.brier == pytest.approx(((0.9 - 1) ** 2 + 0.6 ** 2 + 0.8 ** 2) / 3)
    assert s.mean_r == pytest.approx((1.4 - 1.1 - 0.2) / 3)
    assert s.total_r == pytest.approx(0.1)
    empty = signal_stats(confidence, hit, r, np.zeros(5, dtype=bool))
    assert empty.votes == 0 and np.isnan(empty.hit_rate) and np.isnan(empty.brier) and empty.total_r == 0


def test_calibration_bins_count_mean_confidence_and_hit_rate() -> None:
    confidence = np.array([0.1, 0.55, 0.59, 0.6, 0.95, 1.0, 0.7])
    hit = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, NAN])
    bins = calibration(confidence, hit, edges=(0.0, 0.5, 0.6, 1.0))
    assert [(b.lo, b.hi, b.count) for b in bins] == [(0.0, 0.5, 1), (0.5, 0.6, 2), (0.6, 1.0, 3)]
    assert bins[1].mean_confidence == pytest.approx(0.57) and bins[1].hit_rate == pytest.approx(0.5)
    assert bins[2].mean_confidence == pytest.approx((0.6 + 0.95 + 1.0) / 3)   # 1.0 falls in the last, closed bin
    assert bins[2].hit_rate == pytest.approx(2 / 3)
    empty = calibration(np.array([0.9]), np.array([1.0]), edges=(0.0, 0.5, 1.0))[0]
    assert empty.count == 0 and np.isnan(empty.hit_rate)


def test_onsets_restart_after_a_gap_or_a_side_change() -> None:
    direction = np.array([0, 1, 1, -1, -1, 0, 1, 1, 1], dtype=np.int8)
    contiguous = np.array([False, True, True, True, True, True, True, False, True])
    assert onsets(direction, contiguous).tolist() == [False, True, False, True, False, False, True, True, False]


def test_vote_rows_take_the_label_of_the_side_and_keep_onsets_of_unlabelled_runs() -> None:
    t = np.arange(5, dtype=np.int64) * FIVE_MIN_MS
    direction = np.array([1, 1, -1, 0, -1], dtype=np.int8)
    rows = vote_rows(t, direction, np.array([0.7, 0.8, 0.9, 0.0, 0.6]), np.ones(5, dtype=bool),
                     hit_long=np.array([1.0, NAN, 1.0, 1.0, 1.0]), hit_short=np.array([0.0, 0.0, 0.0, 0.0, 1.0]),
                     r_long=np.array([1.5, NAN, 1.5, 1.5, 1.5]), r_short=np.array([-1.1, -1.1, -1.0, -1.1, 1.6]))
    assert rows.time_ms.tolist() == [0, 2 * FIVE_MIN_MS, 4 * FIVE_MIN_MS]   # row 1 (long, unlabelled) left out
    assert rows.hit.tolist() == [1.0, 0.0, 1.0] and rows.r.tolist() == [1.5, -1.0, 1.6]
    assert rows.onset.tolist() == [True, True, True]
    both = concat_rows([rows, rows])
    assert both.stats(onsets_only=True).votes == 6
    ev = rows.events(horizon=10)
    assert (ev.label_end_ms - ev.time_ms).tolist() == [11 * FIVE_MIN_MS] * 3


def test_panel_signal_is_the_live_rule_on_named_arrays() -> None:
    votes = {"a": (np.array([1, 1, -1, 0], dtype=np.int8), np.array([0.9, 0.7, 0.8, 0.0])),
             "b": (np.array([1, 0, 1, 0], dtype=np.int8), np.array([0.8, 0.0, 0.9, 0.0])),
             "ml": (np.array([1, -1, 0, 0], dtype=np.int8), np.array([0.7, 0.9, 0.0, 0.0]))}
    direction, score = panel_signal(PanelConfig(("a", "b", "ml"), 0.6), votes)
    assert direction.tolist() == [1, 0, 0, 0]                 # tie on row 1 and row 2 → FLAT
    assert score[0] == pytest.approx(0.8)
    alone, _ = panel_signal(PanelConfig(("a",), 0.75), votes)
    assert alone.tolist() == [1, 0, -1, 0]
    strict, _ = panel_signal(PanelConfig(("a", "b"), 0.4, min_agree=2), votes)
    assert strict.tolist() == [1, 0, 0, 0]


def test_declared_grid_leaves_out_a_min_above_the_panel() -> None:
    configs = declared_grid([("a",), ("a", "b")], (0.5, 0.7), (1, 2))
    assert [c.name for c in configs] == ["a ≥0.5", "a ≥0.7", "a+b ≥0.5", "a+b ≥0.5 k≥2", "a+b ≥0.7", "a+b ≥0.7 k≥2"]


def test_quarter_folds_are_calendar_quarters_cut_at_the_end() -> None:
    folds = quarter_folds(datetime(2023, 7, 1, tzinfo=UTC), datetime(2024, 2, 15, tzinfo=UTC))
    assert [f.name for f in folds] == ["2023Q3", "2023Q4", "2024Q1"]
    assert folds[0].end_ms == folds[1].start_ms == int(datetime(2023, 10, 1, tzinfo=UTC).timestamp() * 1000)
    assert folds[-1].end_ms == int(datetime(2024, 2, 15, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="quarter"):
        quarter_folds(datetime(2023, 8, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))


def _events(times: list[int], ends: list[int], r: list[float]) -> Events:
    return Events(np.array(times, dtype=np.int64), np.array(ends, dtype=np.int64),
                  (np.array(r) > 0).astype(float), np.array(r, dtype=float))


def test_selection_uses_only_rows_whose_label_ended_by_the_fold_start() -> None:
    fold = Fold(100 * DAY, 190 * DAY)
    # "late" wins only through rows whose label is still open at the fold start (or inside the fold)
    late = _events([10 * DAY, 99 * DAY, 120 * DAY], [11 * DAY, 101 * DAY, 121 * DAY], [-1.0, 50.0, 50.0])
    steady = _events([10 * DAY, 20 * DAY, 30 * DAY], [11 * DAY, 21 * DAY, 100 * DAY], [1.0, 1.0, 1.0])
    sel = select({"late": late, "steady": steady}, fold, min_onsets=1)
    assert sel.chosen == "steady" and sel.score == pytest.approx(3.0)
    assert sel.in_sample["late"].votes == 1 and sel.in_sample["late"].total_r == pytest.approx(-1.0)
    assert sel.in_sample["steady"].votes == 3
    assert sel.last_label_end_ms == 100 * DAY <= fold.start_ms      # the label ending at the fold start counts
    assert late.out_of_sample(fold).tolist() == [False, False, True]


def test_do_not_trade_wins_when_every_candidate_lost_in_sample_or_has_too_few_onsets() -> None:
    fold = Fold(100 * DAY, 190 * DAY)
    losing = _events([1 * DAY, 2 * DAY], [2 * DAY, 3 * DAY], [-1.0, 0.5])
    sparse = _events([1 * DAY], [2 * DAY], [5.0])
    sel = select({"losing": losing, "sparse": sparse}, fold, min_onsets=2)
    assert sel.chosen == FLAT and sel.score == 0.0
    assert sel.in_sample["losing"].total_r == pytest.approx(-0.5)
    assert select({"sparse": sparse}, fold, min_onsets=1).chosen == "sparse"
    nothing = select({"losing": losing}, Fold(0, 10 * DAY), min_onsets=1)
    assert nothing.chosen == FLAT and nothing.last_label_end_ms == -1 and nothing.in_sample["losing"].votes == 0
