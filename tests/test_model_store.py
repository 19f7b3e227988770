"""The model store writes a joblib file plus JSON metadata and refuses, with one clear message, a model whose
features, library versions, format or contents do not match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from strategies.model_store import ModelMeta, ModelMismatch, load_model, meta_path, save_model

FEATURES = ["5m_rsi", "1h_ema_trend", "funding_rate"]


def fitted() -> dict[str, LogisticRegression]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, len(FEATURES)))
    return {side: LogisticRegression().fit(x, (x[:, i] > 0).astype(int)) for i, side in enumerate(("long", "short"))}


def meta(**overrides) -> ModelMeta:
    base = dict(kind="ensemble-v1", features=list(FEATURES), label={"horizon": 48}, symbols=["BTCUSDT"],
                train_start="2024-01-01T00:00:00Z", train_end="2024-12-31T00:00:00Z",
                created_at="2025-01-01T00:00:00Z", metrics={"brier_long": 0.2})
    base.update(overrides)
    return ModelMeta(**base)


def test_round_trip(tmp_path: Path):
    path = save_model(tmp_path / "models" / "vigil.joblib", fitted(), meta())
    model = load_model(path, FEATURES)
    assert model.meta.features == FEATURES and model.meta.metrics == {"brier_long": 0.2}
    assert json.loads(meta_path(path).read_text())["versions"]["scikit-learn"]
    x = np.zeros((1, 3))
    assert model.estimators["long"].predict_proba(x).shape == (1, 2)


@pytest.mark.parametrize(("expected", "words"), [
    (["5m_rsi", "1h_ema_trend"], "it has that this code does not compute"),
    ([*FEATURES, "breadth"], "features it lacks"),
    (list(reversed(FEATURES)), "another order"),
])
def test_a_model_with_other_features_is_refused(tmp_path: Path, expected, words):
    path = save_model(tmp_path / "m.joblib", fitted(), meta())
    with pytest.raises(ModelMismatch, match=words) as info:
        load_model(path, expected)
    assert "python main.py train" in str(info.value)


def test_a_model_from_another_library_version_is_refused(tmp_path: Path):
    path = save_model(tmp_path / "m.joblib", fitted(), meta(versions={"scikit-learn": "0.24.2", "numpy": "1.19.0"}))
    with pytest.raises(ModelMismatch, match=r"scikit-learn 0\.24\.2"):
        load_model(path, FEATURES)


def test_missing_or_broken_files_are_refused(tmp_path: Path):
    with pytest.raises(ModelMismatch, match="no model"):
        load_model(tmp_path / "absent.joblib", FEATURES)
    path = save_model(tmp_path / "m.joblib", fitted(), meta())
    meta_path(path).write_text("{not json")
    with pytest.raises(ModelMismatch, match="not valid model metadata"):
        load_model(path, FEATURES)
    meta_path(path).unlink()
    with pytest.raises(ModelMismatch, match="metadata file"):
        load_model(path, FEATURES)
    other = save_model(tmp_path / "o.joblib", {"long": fitted()["long"]}, meta())
    with pytest.raises(ModelMismatch, match="long and a short"):
        load_model(other, FEATURES)
    garbage = tmp_path / "g.joblib"
    save_model(garbage, fitted(), meta())
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(ModelMismatch, match="could not be read"):
        load_model(garbage, FEATURES)
