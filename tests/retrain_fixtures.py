"""Tiny real ML models on the bundled sample for the retraining tests (seconds to build)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.train import histories, load_history
from strategies.labels import BarrierParams
from strategies.ml import Dataset
from strategies.ml_dataset import build_live_dataset
from strategies.ml_voter import MODEL_KIND
from strategies.model_store import ModelMeta, save_model
from strategies.signal_table import SignalConfig
from tests.helpers_market import SAMPLE_DIR

LABEL = BarrierParams(horizon=144)
CFG = SignalConfig()
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def sample_dataset(stride: int = 12) -> Dataset:
    candles, _ = load_history(SAMPLE_DIR, SYMBOLS, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))
    return build_live_dataset(histories(candles), CFG, LABEL, stride=stride)


def save_pair(path: Path, estimators: dict[str, Any], features: list[str], *, train_end: str,
              created: str = "2025-01-01T00:00:00Z", hit_rate: float = 0.5) -> Path:
    oos = {side: {"acted": 100, "hit_rate": hit_rate} for side in ("long", "short")}
    meta = ModelMeta(kind=MODEL_KIND, features=features, label={"horizon": LABEL.horizon}, symbols=SYMBOLS,
                     train_start="2025-01-01T00:00:00Z", train_end=train_end, created_at=created,
                     metrics={"out_of_sample": oos})
    return save_model(path, estimators, meta)


def constant_model(p_win: float) -> dict[str, Any]:
    """A real (if dull) scikit-learn classifier that always says ``p_win``: the prior of a made-up label set."""
    from sklearn.dummy import DummyClassifier

    n = 1_000
    y = (np.arange(n) < round(p_win * n)).astype(float)
    return {side: DummyClassifier(strategy="prior").fit(np.zeros((n, 1)), y) for side in ("long", "short")}
