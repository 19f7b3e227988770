"""Consensus gates: the minimum number of agreeing voters and the agreement share, next to the score threshold;
``combine`` and ``combine_arrays`` give the same decisions and scores."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.consensus import Consensus
from strategies.technical import TrendMomentumVoter
from strategies.types import Direction, Vote

L, S, F = Direction.LONG, Direction.SHORT, Direction.FLAT
NAMES = ("a", "b", "c", "d")


def panel(weights: dict[str, float] | None = None, **gates: float) -> Consensus:
    return Consensus([TrendMomentumVoter(name=n) for n in NAMES], weights, **gates)  # type: ignore[arg-type]


def votes(*spec: tuple[Direction, float]) -> list[Vote]:
    return [Vote(name, d, c) for name, (d, c) in zip(NAMES, spec, strict=True)]


def both(consensus: Consensus, vs: list[Vote]) -> tuple[Direction, float]:
    """``combine`` and, checked equal to it, ``combine_arrays`` on the same votes as a one-row array."""
    scalar = consensus.combine(vs)
    arrays = [(v.voter, np.array([int(v.direction)], dtype=np.int8), np.array([v.confidence])) for v in vs]
    direction, score = consensus.combine_arrays(arrays, 1)
    assert (int(scalar[0]), scalar[1]) == (direction[0], score[0])
    return scalar


STRONG_PAIR = votes((L, 1.0), (L, 1.0), (F, 0.0), (F, 0.0))          # score 0.5, 2 agree, agreement 0.5
SPLIT = votes((L, 1.0), (L, 1.0), (L, 0.9), (S, 1.0))                # score 0.725, 3 agree, agreement 0.75


def test_min_agree_counts_voters_on_the_majority_side():
    assert both(panel(threshold=0.5), STRONG_PAIR) == (L, 0.5)
    assert both(panel(threshold=0.5, min_agree=2), STRONG_PAIR) == (L, 0.5)
    assert both(panel(threshold=0.5, min_agree=3), STRONG_PAIR) == (F, 0.5)  # the score is kept
    assert both(panel(threshold=0.5, min_agree=3), SPLIT)[0] is L


def test_a_voter_of_zero_weight_does_not_count_as_agreeing():
    weights = {"b": 0.0}
    assert both(panel(weights, threshold=0.5, min_agree=2), STRONG_PAIR)[0] is F
    assert both(panel(weights, threshold=0.3, min_agree=1), STRONG_PAIR) == (L, 1 / 3)


def test_min_agreement_is_the_majority_share_of_the_answering_weight():
    assert both(panel(threshold=0.5, min_agreement=0.5), STRONG_PAIR) == (L, 0.5)    # exactly on it passes
    assert both(panel(threshold=0.5, min_agreement=0.51), STRONG_PAIR) == (F, 0.5)
    assert both(panel(threshold=0.7, min_agreement=0.75), SPLIT) == (L, 0.725)
    assert both(panel(threshold=0.7, min_agreement=0.8), SPLIT) == (F, 0.725)
    # weights move the share: "d" (SHORT) weighs 2 → LONG has 3 of 5
    assert both(panel({"d": 2.0}, threshold=0.3, min_agreement=0.6), SPLIT) == (L, pytest.approx(2.9 / 5))
    assert both(panel({"d": 2.0}, threshold=0.3, min_agreement=0.61), SPLIT)[0] is F
    assert both(panel({"d": 3.0}, threshold=0.3), SPLIT) == (F, 0.0)  # 3 against 3: no majority at all


def test_every_gate_must_pass():
    gates = dict(threshold=0.7, min_agree=3, min_agreement=0.75)
    assert both(panel(**gates), SPLIT)[0] is L
    assert both(panel(**{**gates, "threshold": 0.73}), SPLIT)[0] is F
    assert both(panel(**{**gates, "min_agree": 4}), SPLIT)[0] is F
    assert both(panel(**{**gates, "min_agreement": 0.76}), SPLIT)[0] is F


def test_bad_gates_are_refused():
    for gates in (dict(min_agree=0), dict(min_agreement=-0.1), dict(min_agreement=1.5)):
        with pytest.raises(ValueError):
            panel(**gates)


def test_neutral_gates_change_nothing_and_arrays_equal_combine_on_random_votes():
    rng = np.random.default_rng(9)
    n = 2000
    dirs = [rng.integers(-1, 2, n).astype(np.int8) for _ in NAMES]
    confs = [np.where(d != 0, rng.choice([0.2, 0.5, 0.65, 0.8, 1.0], n), 0.0) for d in dirs]
    arrays = list(zip(NAMES, dirs, confs, strict=True))
    weights = {"a": 1.0, "b": 0.5, "c": 0.0, "d": 2.0}
    plain = panel(weights, threshold=0.3)
    neutral = panel(weights, threshold=0.3, min_agree=1, min_agreement=0.0)
    np.testing.assert_array_equal(plain.combine_arrays(arrays, n)[0], neutral.combine_arrays(arrays, n)[0])
    decided = set()
    for gates in (dict(min_agree=2), dict(min_agreement=0.55), dict(min_agree=3, min_agreement=0.6)):
        gated = panel(weights, threshold=0.3, **gates)
        direction, score = gated.combine_arrays(arrays, n)
        for k in range(n):
            row = [Vote(name, Direction(int(d[k])), float(c[k])) for name, d, c in arrays]
            want = gated.combine(row)
            assert (int(want[0]), want[1]) == (direction[k], score[k]), (gates, k)
            assert plain.combine(row)[1] == want[1]  # gates never change the score
        decided |= {int(x) for x in direction}
        assert np.count_nonzero(direction) < np.count_nonzero(plain.combine_arrays(arrays, n)[0])
    assert decided == {-1, 0, 1}
