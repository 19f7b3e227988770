"""The ML voter on the bundled real data: a small model trained in a fixture on the live scan's own features.

- ``vote`` (one live ``Features``) equals ``vote_arrays`` (the signal table's columns): same direction, confidence
  and probabilities to 1e-9, and the signal table's row arrays equal ``signal_at`` (the engine's two paths);
- without a model file the voter is not in the panel; a model trained on other features or of another kind is
  refused with a message that says to retrain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app.ml_panel import ml_voter_from_settings
from app.runtime import build_consensus
from core.clock import ManualClock
from core.enums import VoterKind
from engine.exchange.historical import HistoricalMarket
from settings import Settings
from strategies.consensus import Consensus
from strategies.labels import BarrierParams
from strategies.ml import SIDES, fit_calibrated
from strategies.ml_dataset import assemble, table_labels, table_rows
from strategies.ml_voter import MODEL_KIND, MLVoter, feature_names, load_ml_voter, matrix_from_columns
from strategies.model_store import ModelMeta, ModelMismatch, save_model
from strategies.signal_table import SignalConfig, build_symbol_signals
from strategies.technical import TrendMomentumVoter
from strategies.types import Direction
from tests.helpers_market import SAMPLE_DIR

LABEL = BarrierParams(horizon=144)
CFG = SignalConfig()
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module")
def market() -> HistoricalMarket:
    return HistoricalMarket(SAMPLE_DIR, ManualClock(datetime(2025, 1, 1, tzinfo=UTC)), list(SYMBOLS))


@pytest.fixture(scope="module")
def tables(market):
    return {s: build_symbol_signals(market.base_klines(s), Consensus([]), CFG, keep_features=True) for s in SYMBOLS}


@pytest.fixture(scope="module")
def estimators(market, tables):
    """Two months of two symbols, every hour: ~2,600 rows, a few seconds to fit."""
    end = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)
    parts = {s: table_rows(t, table_labels(t, market.base_klines(s), LABEL), 12, hi_ms=end)
             for s, t in tables.items()}
    data = assemble(parts, CFG.timeframes)
    return {side: fit_calibrated(data.X, data.y[side]) for side in SIDES}


def save(path: Path, estimators, *, features: list[str], kind: str = MODEL_KIND) -> Path:
    meta = ModelMeta(kind=kind, features=features, label={"horizon": LABEL.horizon}, symbols=list(SYMBOLS),
                     train_start="2025-01-01T00:00:00Z", train_end="2025-03-01T00:00:00Z",
                     created_at="2025-03-01T00:00:00Z")
    return save_model(path, estimators, meta)


def test_vote_equals_vote_arrays_on_real_rows(tables, estimators):
    voter = MLVoter(estimators, CFG.timeframes, threshold=0.3)
    table = tables["ETHUSDT"]
    rows = np.flatnonzero(table.valid)[::97][:150]
    direction, confidence = voter.vote_arrays(table.columns_at(rows))
    batch_long, batch_short = voter.probabilities(matrix_from_columns(table.columns_at(rows), CFG.timeframes))
    for k, i in enumerate(rows):
        features = table.features_at(int(i))
        vote = voter.vote("ETHUSDT", features)
        assert vote.direction == Direction(int(direction[k])) and vote.voter == "ml" and vote.kind is VoterKind.ML
        assert vote.confidence == pytest.approx(float(confidence[k]), abs=1e-9)
        p_long, p_short = voter.probabilities(np.vstack([matrix_from_columns(table.columns_at(rows[k:k + 1]),
                                                                             CFG.timeframes)]))
        assert abs(p_long[0] - batch_long[k]) <= 1e-9 and abs(p_short[0] - batch_short[k]) <= 1e-9
    assert direction.any() and (direction == 0).any(), "150 rows at threshold 0.3: some votes, some abstentions"


def test_signal_table_rows_equal_the_live_decision_with_the_ml_voter(market, estimators):
    """The engine ranks on the table's arrays and trades ``signal_at`` (the live ``Consensus.decide``)."""
    panel = Consensus([TrendMomentumVoter(), MLVoter(estimators, CFG.timeframes, threshold=0.3)], threshold=0.4)
    table = build_symbol_signals(market.base_klines("BTCUSDT"), panel, CFG)
    rows = np.flatnonzero(table.valid)[::211][:120]
    for i in rows:
        signal = table.signal_at(int(i))
        assert signal is not None and int(signal.direction) == int(table.direction[i])
        assert signal.score == pytest.approx(float(table.score[i]), abs=1e-9)
    assert np.count_nonzero(table.direction[rows]) > 0


def test_no_model_file_means_no_ml_voter(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert ml_voter_from_settings(settings) is None
    assert [v.name for v in build_consensus(settings).voters] == list(settings.voters)


def test_a_model_in_place_joins_the_panel(tmp_path: Path, estimators):
    settings = Settings(_env_file=None, data_dir=tmp_path, ml_threshold=0.55)
    save(settings.ml_model_file, estimators, features=feature_names(CFG.timeframes))
    voters = build_consensus(settings).voters
    assert [v.name for v in voters] == [*settings.voters, "ml"] and voters[-1].threshold == 0.55


def test_a_model_trained_on_other_features_is_refused(tmp_path: Path, estimators):
    path = save(tmp_path / "m.joblib", estimators, features=feature_names(CFG.timeframes))
    with pytest.raises(ModelMismatch, match="retrain"):
        load_ml_voter(path, ("5m", "15m", "1h"), 0.5)          # TIMEFRAMES changed since training
    settings = Settings(_env_file=None, data_dir=tmp_path, ml_model_path=path, timeframes="5m,1h")
    with pytest.raises(ModelMismatch, match="does not match this code's features"):
        build_consensus(settings)
    old = save(tmp_path / "old.joblib", estimators, features=feature_names(CFG.timeframes), kind="ensemble-v1")
    with pytest.raises(ModelMismatch, match="ensemble-v1"):
        load_ml_voter(old, CFG.timeframes, 0.5)


def test_voter_abstains_below_its_threshold(tables, estimators):
    table = tables["BTCUSDT"]
    rows = np.flatnonzero(table.valid)[::50]
    high = MLVoter(estimators, CFG.timeframes, threshold=0.999)
    direction, confidence = high.vote_arrays(table.columns_at(rows))
    assert not direction.any() and not confidence.any()


def test_a_prepared_scan_votes_as_symbol_by_symbol(tables, estimators):
    """``Consensus.prepare`` (the live scan) batches the model call; the votes are those of ``vote`` alone."""
    voter = MLVoter(estimators, CFG.timeframes, threshold=0.3)
    scan = {f"S{k}USDT": tables["BTCUSDT"].features_at(int(i))
            for k, i in enumerate(np.flatnonzero(tables["BTCUSDT"].valid)[::301][:40])}
    alone = {s: voter.vote(s, f) for s, f in scan.items()}
    Consensus([voter]).prepare(scan)
    assert voter._prepared.keys() == scan.keys()
    for s, f in scan.items():
        v = voter.vote(s, f)
        assert v.direction == alone[s].direction and v.confidence == pytest.approx(alone[s].confidence, abs=1e-9)


def test_a_remembering_voter_answers_vote_from_its_batch(tables, estimators):
    """Backtests: ``vote`` on a row ``vote_arrays`` computed returns the batch's probabilities exactly."""
    voter = MLVoter(estimators, CFG.timeframes, threshold=0.3, remember=True)
    table = tables["ETHUSDT"]
    rows = np.flatnonzero(table.valid)[::89][:60]
    direction, confidence = voter.vote_arrays(table.columns_at(rows))
    assert len(voter._known) == len(rows)
    for k, i in enumerate(rows):
        vote = voter.vote("ETHUSDT", table.features_at(int(i)))
        assert int(vote.direction) == int(direction[k]) and vote.confidence == float(confidence[k])


def test_a_plain_backtest_and_the_demo_leave_the_ml_voter_out(tmp_path: Path, estimators):
    """A model file may have been trained on the very history a backtest replays: a plain backtest (both engines,
    and so the demo) runs the local panel alone, and ``backtest --walk-forward`` is how the ML voter is judged."""
    from app.backtest import backtest_consensus, run_fast_backtest

    settings = Settings(_env_file=None, data_dir=tmp_path, voters="trend_momentum")   # a rule that trades here
    save(settings.ml_model_file, estimators, features=feature_names(CFG.timeframes))
    assert [v.name for v in build_consensus(settings).voters] == [*settings.voters, "ml"]   # the live panel
    assert [v.name for v in backtest_consensus(settings).voters] == list(settings.voters)   # a backtest's
    start, end = datetime(2025, 3, 24, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC)
    with_model = run_fast_backtest(settings, SAMPLE_DIR, list(SYMBOLS), start, end)
    without = run_fast_backtest(Settings(_env_file=None, data_dir=tmp_path / "none", voters="trend_momentum"),
                                SAMPLE_DIR, list(SYMBOLS), start, end)
    assert with_model.trades == without.trades and len(without.trades) > 0
