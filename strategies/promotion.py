"""Whether a retrained model replaces the one in use: a pure decision on one shared out-of-sample window.

The window (``judging_window``): the rows whose candle opens at or after
``max(candidate train end, current train end) + label horizon + embargo``. Both models were fitted *and* calibrated
only on rows up to their ``train_end`` (``fit_calibrated`` calibrates on the newest part of its training rows), and
a row's label looks ``horizon`` candles ahead, so no row of the window, nor any label it carries, was seen by either
model. ``retrain`` holds the newest ``--holdout-days`` back from the candidate's training to make this window.

The rule (``decide``): both sides' predictions pooled; promote only if
- the window has at least ``min_rows`` labelled predictions, and
- the candidate's Brier score is lower than the current model's (by ``min_brier_gain``, default 0), and
- its hit rate at the threshold is not lower than the current one's, when both acted on at least ``min_acted`` rows.
With no usable current model, the bar is the base rate's Brier score (always predicting the window's win share).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FIVE_MIN_MS = 300_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class PromotionRules:
    threshold: float = 0.5        # probability needed to act (the hit rate is measured there)
    min_rows: int = 200           # labelled predictions in the window, both sides together
    min_acted: int = 20           # acted-on predictions needed before hit rates are compared
    min_brier_gain: float = 0.0   # the candidate's Brier must be lower by more than this


@dataclass(frozen=True, slots=True)
class Score:
    predictions: int
    brier: float
    acted: int
    hit_rate: float | None        # None when it acted on nothing

    def line(self) -> str:
        hit = f"{self.hit_rate:.3f} on {self.acted}" if self.hit_rate is not None else "- (acted on none)"
        return f"Brier {self.brier:.4f}, hit rate {hit}"


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    promote: bool
    reason: str                   # one line, for the operator
    rows: int
    window_start_ms: int | None
    window_end_ms: int | None
    candidate: Score | None
    current: Score | None         # None: no usable current model (then ``baseline_brier`` was the bar)
    baseline_brier: float | None


def judging_window_start(train_ends_ms: list[int], horizon_candles: int, embargo_days: float = 1.0) -> int:
    """The first candle open time that neither model nor any of its labels has seen."""
    return max(train_ends_ms) + horizon_candles * FIVE_MIN_MS + int(embargo_days * DAY_MS) + FIVE_MIN_MS


def score(proba: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], threshold: float) -> Score:
    """Both sides pooled; rows with an unknown label (NaN) are left out."""
    p_all, y_all = [], []
    for side, p in proba.items():
        labels = np.asarray(y[side], dtype=np.float64)
        known = ~np.isnan(labels)
        p_all.append(np.asarray(p, dtype=np.float64)[known])
        y_all.append(labels[known])
    p_cat = np.concatenate(p_all) if p_all else np.zeros(0)
    y_cat = np.concatenate(y_all) if y_all else np.zeros(0)
    if not len(p_cat):
        return Score(0, float("nan"), 0, None)
    acted = p_cat >= threshold
    return Score(len(p_cat), float(np.mean((p_cat - y_cat) ** 2)), int(acted.sum()),
                 float(y_cat[acted].mean()) if acted.any() else None)


def decide(candidate: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray] | None,
           y: Mapping[str, np.ndarray], rules: PromotionRules = PromotionRules(), *,
           window: tuple[int, int] | None = None) -> PromotionDecision:
    """``candidate`` / ``current``: side → P(take-profit first) on the same window rows; ``y``: side → 1/0/NaN."""
    new = score(candidate, y, rules.threshold)
    old = score(current, y, rules.threshold) if current is not None else None
    labels = np.concatenate([np.asarray(y[s], dtype=np.float64) for s in candidate]) if candidate else np.zeros(0)
    labels = labels[~np.isnan(labels)]
    base = float(np.mean((labels.mean() - labels) ** 2)) if len(labels) else None
    start, end = window if window is not None else (None, None)

    def verdict(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, new.predictions, start, end, new, old, base)

    if new.predictions < rules.min_rows:
        return verdict(False, f"kept: only {new.predictions} labelled predictions in the latest window "
                              f"(needs {rules.min_rows}); the current model stays")
    if old is None:
        assert base is not None
        if new.brier < base - rules.min_brier_gain:
            return verdict(True, f"promoted: no usable current model; candidate {new.line()} beats the base rate's "
                                 f"Brier {base:.4f}")
        return verdict(False, f"kept: candidate Brier {new.brier:.4f} does not beat the base rate's {base:.4f}")
    if not new.brier < old.brier - rules.min_brier_gain:
        return verdict(False, f"kept: candidate Brier {new.brier:.4f} is not lower than the current {old.brier:.4f}")
    if (new.acted >= rules.min_acted and old.acted >= rules.min_acted and new.hit_rate is not None
            and old.hit_rate is not None and new.hit_rate < old.hit_rate):
        return verdict(False, f"kept: candidate Brier {new.brier:.4f} is lower but its hit rate {new.hit_rate:.3f} "
                              f"is below the current {old.hit_rate:.3f}")
    return verdict(True, f"promoted: candidate {new.line()} vs current {old.line()} on {new.predictions} predictions")
