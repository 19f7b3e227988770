"""The ML model on real data: walk-forward folds never train on a label that overlaps the test window, the
calibrated ensemble trains and predicts probabilities, the evaluation reports hit rate, Brier and calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from strategies.labels import BarrierParams
from strategies.ml import DAY_MS, build_dataset, evaluate, run_walk_forward, walk_forward_folds
from tests.helpers_market import SAMPLE_DIR, sample_frame

LABEL = BarrierParams(horizon=288)


@pytest.fixture(scope="module")
def data():
    candles = {s: sample_frame(s).iloc[:20_000].reset_index(drop=True) for s in ("BTCUSDT", "ETHUSDT")}
    funding = {s: pd.read_csv(SAMPLE_DIR / f"{s}-funding.csv.gz") for s in candles}
    return build_dataset(candles, funding, label=LABEL, stride=6)


def test_dataset_rows_are_in_time_order_and_labelled(data):
    assert np.all(np.diff(data.open_ms) >= 0) and data.symbols == ["BTCUSDT", "ETHUSDT"]
    assert data.X.dtype == np.float32 and data.X.shape == (len(data), len(data.names))
    assert set(np.unique(data.y["long"])) <= {0.0, 1.0} and 0.05 < data.y["long"].mean() < 0.95
    assert "1h_rsi" in data.names and "breadth" in data.names and not any(n.endswith("_atr") for n in data.names)


def test_folds_purge_and_embargo(data):
    folds = walk_forward_folds(data.open_ms, train_days=20, test_days=7, horizon_candles=288, embargo_days=1,
                               min_train_rows=200)
    assert len(folds) >= 3
    for fold in folds:
        last_train = data.open_ms[fold.train_idx].max()
        assert last_train + 288 * 300_000 + DAY_MS <= fold.test_start_ms     # label ended, embargo respected
        assert data.open_ms[fold.test_idx].min() >= fold.test_start_ms
        assert data.open_ms[fold.test_idx].max() < fold.test_end_ms
    starts = [f.test_start_ms for f in folds]
    assert starts == sorted(starts) and all(b.test_start_ms == a.test_end_ms for a, b in itertools.pairwise(folds))


@pytest.mark.slow
def test_walk_forward_predicts_calibrated_probabilities(data):
    folds = walk_forward_folds(data.open_ms, train_days=20, test_days=7, horizon_candles=288, min_train_rows=200)[:2]
    results = run_walk_forward(data, folds, jobs=2)
    assert [r.test_start_ms for r in results] == [f.test_start_ms for f in folds]
    for r in results:
        for side in ("long", "short"):
            assert r.proba[side].shape == r.test_idx.shape and np.all((r.proba[side] >= 0) & (r.proba[side] <= 1))
    serial = run_walk_forward(data, folds, jobs=1)
    np.testing.assert_array_equal(serial[0].proba["long"], results[0].proba["long"])   # seeded: same answer
    report = evaluate(data, results, threshold=0.0)
    long = report["long"]
    assert long.predictions == sum(len(r.test_idx) for r in results) == long.acted
    assert 0 <= long.brier <= 1 and sum(count for _, _, count in long.calibration) == long.predictions


def test_dataset_rows_equal_the_feature_frame(data):
    """The memory-saving assembly gives exactly the values of build_features at the sampled rows."""
    from strategies.feature_frame import build_features

    candles = {s: sample_frame(s).iloc[:20_000].reset_index(drop=True) for s in ("BTCUSDT", "ETHUSDT")}
    funding = {s: pd.read_csv(SAMPLE_DIR / f"{s}-funding.csv.gz") for s in candles}
    full = build_features(candles, funding)
    for code, symbol in enumerate(data.symbols):
        rows = data.symbol == code
        expected = full[symbol].loc[data.open_ms[rows], data.names].to_numpy(np.float32)
        np.testing.assert_array_equal(data.X[rows], expected)
