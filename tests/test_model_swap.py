"""Promotion installs a model pair atomically: the replaced pair is kept for rollback, and a process killed between
the two renames (a real crash, ``os._exit`` in a child) leaves a pair that loads and belongs together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.ml_panel import ml_voter_from_settings
from settings import Settings
from strategies.ml_voter import feature_names
from strategies.model_store import load_model, meta_path, read_meta
from strategies.model_swap import finish_interrupted, install, previous_path, rollback, staged_path
from tests.retrain_fixtures import CFG, constant_model, save_pair

FEATURES = feature_names(CFG.timeframes)
ROOT = Path(__file__).resolve().parents[1]


def p_long(path: Path) -> float:
    model = load_model(path, FEATURES)
    return float(model.estimators["long"].predict_proba(np.zeros((1, len(FEATURES))))[0, 1])


def pair(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "models" / "vigil-ml.joblib"
    save_pair(target, constant_model(0.3), FEATURES, train_end="2025-02-01T00:00:00Z", created="old")
    staged = save_pair(staged_path(target), constant_model(0.6), FEATURES, train_end="2025-03-01T00:00:00Z",
                       created="new")
    return target, staged


def test_install_replaces_the_pair_and_keeps_the_previous_one(tmp_path: Path) -> None:
    target, staged = pair(tmp_path)
    previous = install(staged, target)
    assert previous == previous_path(target) == tmp_path / "models" / "vigil-ml.previous.joblib"
    assert read_meta(target).created_at == "new" and p_long(target) == pytest.approx(0.6)
    assert read_meta(previous).created_at == "old" and p_long(previous) == pytest.approx(0.3)
    assert not staged.exists() and not meta_path(staged).exists()
    rollback(target)
    assert read_meta(target).created_at == "old" and p_long(target) == pytest.approx(0.3)
    assert read_meta(previous).created_at == "new" and p_long(previous) == pytest.approx(0.6)


def test_rollback_without_a_previous_model_says_so(tmp_path: Path) -> None:
    target, _ = pair(tmp_path)
    with pytest.raises(FileNotFoundError, match="no previous model"):
        rollback(target)


CRASH = """
import os, sys
from pathlib import Path
from strategies.model_swap import install, staged_path
target = Path(sys.argv[1])
install(staged_path(target), target, between=lambda: os._exit(9))
"""


def test_a_crash_between_the_two_renames_leaves_a_loadable_matching_pair(tmp_path: Path) -> None:
    target, _ = pair(tmp_path)
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(target)], cwd=ROOT, timeout=60)
    assert crashed.returncode == 9
    # the new model is in place, its metadata is still the staged file: the bot's loader completes the swap
    assert meta_path(staged_path(target)).is_file() and read_meta(target).created_at == "old"
    settings = Settings(_env_file=None, ml_model_path=target)
    voter = ml_voter_from_settings(settings)
    assert voter is not None
    assert read_meta(target).created_at == "new" and p_long(target) == pytest.approx(0.6)
    assert not meta_path(staged_path(target)).exists()


def test_a_crash_before_the_swap_leaves_the_old_pair_and_the_stale_candidate_is_cleared(tmp_path: Path) -> None:
    target, staged = pair(tmp_path)
    assert finish_interrupted(target) == "removed a staged model that was never installed"
    assert read_meta(target).created_at == "old" and p_long(target) == pytest.approx(0.3)
    assert not staged.exists() and finish_interrupted(target) == ""
