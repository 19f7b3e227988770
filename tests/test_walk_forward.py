"""``backtest --walk-forward`` on the bundled real data: every fold's ML model saw only rows whose label horizon had
closed before the fold start minus the embargo; per-fold and per-voter figures reach the JSON."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.backtest import run_fast_backtest
from app.runtime import build_consensus
from app.walk_forward import (
    CONSENSUS,
    FORMER,
    WITHOUT_ML,
    WalkForwardOptions,
    WalkForwardResult,
    fold_bounds,
    run_walk_forward_backtest,
    training_rows,
)
from core.clock import ManualClock, to_ms
from core.enums import VoterKind
from engine.backtest.results import TradeResult
from engine.exchange.historical import HistoricalMarket
from main import main
from settings import Settings
from strategies.consensus import Consensus
from strategies.labels import BarrierParams
from strategies.ml import DAY_MS
from strategies.ml_dataset import assemble, table_labels, table_rows
from strategies.ml_voter import MLVoter
from strategies.scheduled_panel import RecordedMLVoter, ScheduledConsensus
from strategies.signal_table import BASE_MS, SignalConfig, build_signal_tables, build_symbol_signals, with_consensus
from strategies.types import Direction
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


#: the former panel (trend-momentum at 0.6) trades on the sample's two weeks; the default panel does not
RULE = {"voters": ["trend_momentum"], "entry_threshold": 0.6, "ml_threshold": 0.3}


@pytest.fixture(scope="module")
def daily() -> WalkForwardResult:
    """Daily folds over two weeks of the sample, at 16:00 (the sample's trades are a few hours long and open in
    the afternoon): many fold boundaries for trades to cross."""
    start = START + timedelta(hours=16)
    return run_walk_forward_backtest(Settings(_env_file=None, **RULE), SAMPLE_DIR, ["BTCUSDT", "ETHUSDT"], start,
                                     start + timedelta(days=13), dataclasses.replace(OPTIONS, retrain_days=1))


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
    assert set(wf.ablation) == {WITHOUT_ML, FORMER}
    ml = wf.voters["ml"]
    assert ml.votes >= ml.rows.votes > ml.onsets.votes > 0      # onsets: the first row of each run of votes
    assert 0.0 <= ml.rows.brier <= 1.0 and 0.0 <= ml.onsets.brier <= 1.0
    assert sum(b.count for b in ml.calibration) == ml.rows.votes


@pytest.mark.slow
def test_a_trade_open_across_a_fold_boundary_is_not_closed_there(daily: WalkForwardResult):
    boundaries = [f.start for f in daily.folds[1:]]
    trades = daily.result.trades
    across = [t for t in trades if any(t.opened_at < b < t.closed_at for b in boundaries)]
    assert across, "no trade crossed a fold boundary on the sample: the test shows nothing"
    assert all(t.exit_reason != "end_of_data" for t in trades if t.closed_at < daily.result.end - timedelta(hours=1))
    assert sum(f.trades for f in daily.folds) == len(trades)                     # each trade in the fold it opened
    for a, b in itertools.pairwise(daily.folds):
        assert b.start_equity == a.end_equity


@pytest.mark.slow
def test_one_fold_is_a_plain_backtest_with_that_model():
    settings = Settings(_env_file=None, **RULE)
    models: dict[int, MLVoter] = {}
    wf = run_walk_forward_backtest(settings, SAMPLE_DIR, ["BTCUSDT", "ETHUSDT"], START, END,
                                   dataclasses.replace(OPTIONS, retrain_days=14),
                                   model_sink=lambda k, voter: models.setdefault(k, voter))
    assert len(wf.folds) == 1 and list(models) == [0]
    model = models[0]
    panel = Consensus([*build_consensus(settings, ml=False).voters,
                       MLVoter(model.estimators, model.timeframes, model.threshold)],
                      threshold=settings.entry_threshold)

    def signals(s: Settings, market: HistoricalMarket, symbols: list[str], start: datetime, end: datetime) -> dict:
        tables = build_signal_tables({x: market.base_klines(x) for x in symbols}, panel, SignalConfig.from_settings(s),
                                     keep_features=True)
        return {x: with_consensus(t, panel, to_ms(start), to_ms(end)) for x, t in tables.items()}

    plain = run_fast_backtest(settings, SAMPLE_DIR, ["BTCUSDT", "ETHUSDT"], START, END, signals=signals)

    def key(t: TradeResult) -> tuple:
        return t.symbol, t.side, t.opened_at, t.closed_at, t.exit_reason, t.net_pnl

    assert len(plain.trades) > 5
    assert [key(t) for t in wf.result.trades] == [key(t) for t in plain.trades]
    assert wf.result.end_equity == plain.end_equity


def test_the_scheduled_panel_asks_the_ml_voter_only_where_a_model_covers_the_row():
    market = HistoricalMarket(SAMPLE_DIR, ManualClock(START), ["BTCUSDT"])
    technical = build_consensus(Settings(_env_file=None, **RULE), ml=False)
    table = build_symbol_signals(market.base_klines("BTCUSDT"), technical, SignalConfig(), keep_features=True)
    rows = np.flatnonzero(table.valid)[-400:]
    n = len(table)
    p_long, p_short = np.full(n, np.nan), np.full(n, np.nan)
    p_long[rows], p_short[rows] = 0.9, 0.05
    covered = np.zeros(n, dtype=bool)
    covered[rows[:200]] = True
    recorded = RecordedMLVoter({"BTCUSDT": table.open_ms}, {"BTCUSDT": p_long}, {"BTCUSDT": p_short}, 0.5)
    full = Consensus([*technical.voters, recorded], threshold=0.6)
    panel = ScheduledConsensus(full, technical, {"BTCUSDT": table.open_ms}, {"BTCUSDT": covered})
    for i in (rows[0], rows[199]):
        votes = {v.voter: v for v in panel.decide("BTCUSDT", table.features_at(int(i))).votes}
        assert votes["ml"].direction is Direction.LONG and votes["ml"].confidence == pytest.approx(0.9)
        assert votes["ml"].kind is VoterKind.ML  # as the live ML voter's votes: the vote book tells them apart
    for i in (rows[200], rows[-1]):
        assert "ml" not in {v.voter for v in panel.decide("BTCUSDT", table.features_at(int(i))).votes}


def test_walk_forward_refuses_other_engines_in_one_line(capsys):
    code = main(["backtest", "--walk-forward", "--engine", "replay", "--symbols", "BTCUSDT", "--start", "2025-03-01",
                 "--end", "2025-03-08"])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_walk_forward_refuses_learned_weights_it_does_not_model(capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LEARNED_WEIGHTS", "true")
    code = main(["backtest", "--walk-forward", "--symbols", "BTCUSDT", "--start", "2025-03-01", "--end", "2025-03-08"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "LEARNED_WEIGHTS" in err


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
        assert {"votes", "hit_rate", "brier", "rows", "onsets", "calibration", "alone"} <= set(v), name
    assert set(doc["ablation"]) == {WITHOUT_ML, FORMER}
    assert doc["metrics"] and isinstance(doc["trades"], list)
