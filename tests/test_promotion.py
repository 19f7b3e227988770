"""The promotion rule: a better candidate (lower Brier, hit rate not worse) replaces the model, a worse one does
not; judged on rows neither model saw. Hand-made probabilities and a real trained pair on the bundled sample."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.ml import SIDES, fit_calibrated
from strategies.promotion import FIVE_MIN_MS, PromotionRules, decide, judging_window_start, score
from tests.retrain_fixtures import LABEL, sample_dataset

RULES = PromotionRules(threshold=0.5, min_rows=100, min_acted=10)


def outcomes(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {side: (rng.random(n) < 0.4).astype(float) for side in SIDES}


def sharp(y: dict[str, np.ndarray], right: float) -> dict[str, np.ndarray]:
    """Probabilities near the truth (``right`` = how close to the label)."""
    return {s: np.where(v == 1, right, 1 - right) for s, v in y.items()}


def test_a_better_candidate_is_promoted_and_a_worse_one_kept() -> None:
    y = outcomes(400)
    good, poor = sharp(y, 0.8), sharp(y, 0.6)
    promoted = decide(good, poor, y, RULES)
    assert promoted.promote and promoted.rows == 800
    assert promoted.candidate is not None and promoted.current is not None
    assert promoted.candidate.brier == pytest.approx(0.04) and promoted.current.brier == pytest.approx(0.16)
    kept = decide(poor, good, y, RULES)
    assert not kept.promote and kept.reason.startswith("kept: candidate Brier 0.1600 is not lower")


def test_equal_is_not_better() -> None:
    y = outcomes(300)
    p = sharp(y, 0.7)
    assert not decide(p, p, y, RULES).promote


def test_a_lower_brier_with_a_worse_hit_rate_is_kept() -> None:
    y = {"long": np.array([1.0] * 60 + [0.0] * 140), "short": np.array([0.0] * 200)}
    # current: acts on 60 winners only (hit rate 1.0), a bit off elsewhere
    current = {"long": np.array([0.55] * 60 + [0.3] * 140), "short": np.full(200, 0.3)}
    # candidate: sharper on the losers (lower Brier) but acts on 20 losers too (hit rate 0.75)
    candidate = {"long": np.array([0.6] * 60 + [0.5] * 20 + [0.05] * 120), "short": np.full(200, 0.05)}
    a, b = score(candidate, y, 0.5), score(current, y, 0.5)
    assert a.brier < b.brier and a.hit_rate == pytest.approx(0.75) and b.hit_rate == 1.0
    d = decide(candidate, current, y, RULES)
    assert not d.promote and "hit rate" in d.reason


def test_too_few_rows_keeps_the_current_model_and_unknown_labels_do_not_count() -> None:
    y = outcomes(40)
    y["long"][:10] = np.nan
    d = decide(sharp(y, 0.9), sharp(y, 0.5), y, RULES)
    assert not d.promote and d.rows == 70


def test_without_a_current_model_the_bar_is_the_base_rate() -> None:
    y = outcomes(300)
    assert decide(sharp(y, 0.8), None, y, RULES).promote
    flat = {s: np.full(len(v), 0.9) for s, v in y.items()}
    d = decide(flat, None, y, RULES)
    assert not d.promote and d.baseline_brier is not None and d.current is None


def test_the_window_starts_after_both_training_ends_plus_the_label_horizon_and_embargo() -> None:
    start = judging_window_start([1_000 * FIVE_MIN_MS, 2_000 * FIVE_MIN_MS], horizon_candles=144, embargo_days=1.0)
    assert start == (2_000 + 144 + 288 + 1) * FIVE_MIN_MS


@pytest.fixture(scope="module")
def trained_pair() -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Two real calibrated ensembles fitted on the same 70 days: one on the labels, one on the labels inverted (it
    learnt the opposite of what happens); both judged on the rows after that + horizon + embargo."""
    data = sample_dataset()
    train_end = int(data.open_ms[0]) + 70 * 86_400_000
    train = np.flatnonzero(data.open_ms <= train_end)
    rows = np.flatnonzero(data.open_ms >= judging_window_start([int(data.open_ms[train[-1]])], LABEL.horizon))
    proba: dict[str, dict[str, np.ndarray]] = {"right": {}, "inverted": {}}
    for side in SIDES:
        y = data.y[side][train]
        for name, labels in (("right", y), ("inverted", 1.0 - y)):
            proba[name][side] = fit_calibrated(data.X[train], labels).predict_proba(data.X[rows])[:, 1]
    return proba, {s: data.y[s][rows] for s in SIDES}


def test_a_real_trained_pair_promotes_the_better_and_keeps_the_current_when_the_candidate_is_worse(
        trained_pair: tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    proba, y = trained_pair
    rules = PromotionRules(threshold=0.5, min_rows=300, min_acted=20)
    better = decide(proba["right"], proba["inverted"], y, rules)
    assert better.promote, better.reason
    assert better.rows >= 300 and better.candidate is not None and better.current is not None
    assert better.candidate.brier < better.current.brier
    worse = decide(proba["inverted"], proba["right"], y, rules)
    assert not worse.promote and worse.reason.startswith("kept:")
