"""``backtest --walk-forward`` on the bundled real data: every fold's ML model saw only rows whose label horizon had
closed before the fold start minus the embargo; per-fold and per-voter figures reach the JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app.walk_forward import (
    CONSENSUS,
    WalkForwardOptions,
    fold_bounds,
    run_walk_forward_backtest,
    training_rows,
)
from core.clock import ManualClock, to_ms
from engine.exchange.historical import HistoricalMarket
from main import main
from settings import Settings
from strategies.consensus import Consensus
from strategies.labels import BarrierParams
from strategies.ml import DAY_MS
from strategies.ml_dataset import assemble, table_labels, table_rows
from strategies.signal_table import BASE_MS, SignalConfig, build_symbol_signals
from tests.helpers_market import SAMPLE_DIR

START, END = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC)
OPTIONS = WalkForwardOptions(retrain_days=7, train_days=21, horizon_hours=12, stride=12)


def test_folds_cover_the_window_in_retrain_steps():
    folds = fold_bounds(START, datetime(2025, 3, 18, tzinfo=UTC), 7)
    assert [(a.day, b.day) for a, b in folds] == [(1, 8), (8, 15), (15, 18)]


def test_training_rows_end_their_label_horizon_before_the_fold_minus_the_embargo():
    market = HistoricalMarket(SAMPLE_DIR, ManualClock(START), ["BTCUSDT"])
    batch = market.base_klines("BTCUSDT")
    table = build_symbol_signals(batch, Consensus([]), SignalConfig(), keep_features=True)
    label = BarrierParams(horizon=144)
    data = assemble({"BTCUSDT": table_rows(table, table_labels(table, batch, label), 6)}, SignalConfig().timeframes)
    fold = to_ms(START)
    rows, cutoff = training_rows(data, fold, label, train_days=21)
    assert cutoff == fold - 144 * BASE_MS
    label_end = data.open_ms[rows] + (144 + 1) * BASE_MS
    assert len(rows) > 900 and label_end.max() <= cutoff
    assert data.open_ms[rows].min() >= cutoff - 21 * DAY_MS
    later = np.flatnonzero((data.open_ms < fold) & (data.open_ms > data.open_ms[rows].max()))
    assert later.size and (data.open_ms[later] + 145 * BASE_MS > cutoff).all()  # purged, not forgotten


@pytest.mark.slow
def test_walk_forward_models_train_only_on_the_past_and_every_voter_is_scored():
    wf = run_walk_forward_backtest(Settings(_env_file=None, ml_threshold=0.3), SAMPLE_DIR, ["BTCUSDT", "ETHUSDT"],
                                   START, END, OPTIONS)
    assert [(f.start, f.end) for f in wf.folds] == fold_bounds(START, END, 7)
    horizon_ms = 144 * BASE_MS
    for fold in wf.folds:
        w = fold.window
        assert w is not None and w.fold_start_ms == to_ms(fold.start)
        assert w.cutoff_ms == w.fold_start_ms - horizon_ms          # embargo: one label horizon
        assert w.label_end_ms == w.last_row_ms + horizon_ms + BASE_MS <= w.cutoff_ms
        assert w.first_row_ms >= w.cutoff_ms - 21 * DAY_MS and w.rows > 500
    assert sum(f.trades for f in wf.folds) == len(wf.result.trades)
    assert wf.folds[1].start_equity == wf.folds[0].end_equity       # the equity carries over
    assert set(wf.voters) == {*Settings(_env_file=None).voters, "ml", CONSENSUS}   # the panel's voters, ML, consensus
    ml = wf.voters["ml"]
    assert ml.votes > 0 and ml.labelled > 0 and 0.0 <= ml.brier_sum / ml.labelled <= 1.0


def test_walk_forward_refuses_other_engines_in_one_line(capsys):
    code = main(["backtest", "--walk-forward", "--engine", "replay", "--symbols", "BTCUSDT", "--start", "2025-03-01",
                 "--end", "2025-03-08"])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.slow
def test_walk_forward_cli_json_carries_folds_and_voters(tmp_path: Path, capsys):
    out = tmp_path / "wf.json"
    code = main(["backtest", "--walk-forward", "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-03-01",
                 "--end", "2025-03-08", "--train-days", "21", "--horizon-hours", "12", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "walk-forward folds" in printed
    doc = json.loads(out.read_text())
    assert [f["start"] for f in doc["walk_forward"]["folds"]] == ["2025-03-01T00:00:00Z"]
    assert doc["walk_forward"]["folds"][0]["model"]["rows"] > 0
    assert set(doc["voters"]) == {*Settings(_env_file=None).voters, "ml", CONSENSUS}
    for name, v in doc["voters"].items():
        assert {"votes", "hit_rate", "brier", "alone"} <= set(v), name
    assert doc["metrics"] and isinstance(doc["trades"], list)
