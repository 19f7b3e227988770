"""Promotion installs a model pair atomically: the replaced pair is kept for rollback, and a process killed between
the two renames (a real crash, ``os._exit`` in a child) leaves a pair that loads and belongs together."""

from __future__ import annotations

import os
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


def save_crashing_after(rename: int, target: Path) -> int:
    """``save_model`` a new pair in a forked child that dies (``os._exit``, no clean-up) right after its ``rename``-th
    rename; returns the child's exit code."""
    estimators = constant_model(0.6)
    pid = os.fork()
    if pid == 0:  # the child: write, die mid-way
        try:
            real, done = os.replace, []

            def replace_then_die(src: str | Path, dst: str | Path) -> None:
                real(src, dst)
                done.append(dst)
                if len(done) == rename:
                    os._exit(9)

            os.replace = replace_then_die  # type: ignore[assignment]
            save_pair(target, estimators, FEATURES, train_end="2025-03-01T00:00:00Z", created="new")
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def loaded_by_the_bot(target: Path) -> str | None:
    """What the bot's loader finds: the created_at of a pair that loads and belongs together, or None (no model)."""
    voter = ml_voter_from_settings(Settings(_env_file=None, ml_model_path=target))
    if voter is None:
        return None
    created = read_meta(target).created_at
    assert p_long(target) == pytest.approx({"old": 0.3, "new": 0.6}[created])  # the model matches its metadata
    assert not staged_path(target).exists() and not meta_path(staged_path(target)).exists()
    return created


# save_model over a model in use renames 6 files: staged model, staged metadata, previous model, previous metadata,
# then the model and its metadata; over no model, 4 (no previous pair).
@pytest.mark.parametrize(("rename", "expected"), [(1, "old"), (2, "old"), (3, "old"), (4, "old"), (5, "new")])
def test_save_model_killed_after_any_rename_leaves_the_old_pair_or_the_new_one(tmp_path: Path, rename: int,
                                                                               expected: str) -> None:
    target = tmp_path / "models" / "vigil-ml.joblib"
    save_pair(target, constant_model(0.3), FEATURES, train_end="2025-02-01T00:00:00Z", created="old")
    assert save_crashing_after(rename, target) == 9
    assert loaded_by_the_bot(target) == expected


@pytest.mark.parametrize(("rename", "expected"), [(1, None), (2, None), (3, "new")])
def test_save_model_of_a_first_model_killed_after_any_rename_leaves_no_model_or_the_new_one(
        tmp_path: Path, rename: int, expected: str | None) -> None:
    target = tmp_path / "models" / "vigil-ml.joblib"
    assert save_crashing_after(rename, target) == 9
    assert loaded_by_the_bot(target) == expected
    if expected is None:
        assert not target.exists() and not meta_path(target).exists()


def test_save_model_not_killed_installs_the_new_pair_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "models" / "vigil-ml.joblib"
    save_pair(target, constant_model(0.3), FEATURES, train_end="2025-02-01T00:00:00Z", created="old")
    assert save_crashing_after(7, target) == 0  # 6 renames: the child finishes
    assert loaded_by_the_bot(target) == "new"
    assert read_meta(previous_path(target)).created_at == "old" and p_long(previous_path(target)) == pytest.approx(0.3)
