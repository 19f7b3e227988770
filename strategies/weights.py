"""Voter weights learned from each voter's recent calibrated accuracy, per regime.

Every resolved vote is a forecast (the probability the voter gave that its side's take-profit comes before the
stop) and an outcome (1 if it did). A voter's skill is its Brier score against the climatology of the same window
(always forecasting the observed base rate): ``skill = 1 − Brier / Brier_base``. The weight is that skill, floored
at 0 (a voter no better than the base rate gets no say), over the last ``window`` resolved votes of that regime.
With fewer than ``min_votes`` resolved votes in a regime, the voter keeps the prior weight (1.0): the panel starts
as an equal vote and earns its weights.

Pure computation over plain values; the votes and outcomes are stored by ``storage`` and read back into
``ResolvedVote`` values.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResolvedVote:
    voter: str
    regime: str
    probability: float      # the voter's confidence that its side wins (0–1)
    won: bool


@dataclass(frozen=True, slots=True)
class VoterSkill:
    voter: str
    regime: str
    votes: int
    brier: float
    brier_base: float
    weight: float


@dataclass(frozen=True, slots=True)
class WeightParams:
    window: int = 200
    min_votes: int = 30
    prior: float = 1.0
    floor: float = 0.0


def squared_error(probability: float, won: bool) -> float:
    """One vote's Brier term."""
    d = probability - (1.0 if won else 0.0)
    return d * d


def brier(probabilities: Iterable[float], outcomes: Iterable[bool]) -> float:
    """The mean squared error; the sum is exactly rounded (``math.fsum``), so it does not depend on the order of
    the votes (the backtest keeps the same sum exactly as an integer, ``engine.backtest.learned_weights``)."""
    terms = [squared_error(p, o) for p, o in zip(probabilities, outcomes, strict=True)]
    return math.fsum(terms) / len(terms) if terms else float("nan")


def skill_of(voter: str, regime: str, n: int, brier_score: float, wins: int,
             p: WeightParams = WeightParams()) -> VoterSkill:
    """The weight of ``n`` resolved votes with that Brier score and ``wins`` wins: the one formula (the live vote
    book and the backtest both call it)."""
    base_rate = wins / n
    b_base = base_rate * (1 - base_rate)          # Brier of always forecasting the base rate
    if n < p.min_votes:
        weight = p.prior
    elif b_base <= 0:
        weight = p.prior if brier_score == 0 else p.floor  # every outcome the same: perfect forecasts keep the prior
    else:
        weight = max(p.floor, 1.0 - brier_score / b_base)
    return VoterSkill(voter, regime, n, brier_score, b_base, weight)


def learn_weights(votes: Iterable[ResolvedVote], p: WeightParams = WeightParams()) -> dict[tuple[str, str], VoterSkill]:
    """``(voter, regime) → skill and weight`` from resolved votes given oldest first."""
    recent: dict[tuple[str, str], deque[ResolvedVote]] = defaultdict(lambda: deque(maxlen=p.window))
    for vote in votes:
        recent[(vote.voter, vote.regime)].append(vote)
    return {key: skill_of(key[0], key[1], len(window), brier((v.probability for v in window),
                                                             (v.won for v in window)),
                          sum(v.won for v in window), p)
            for key, window in recent.items()}


def weights_for(regime: str | None, skills: Mapping[tuple[str, str], VoterSkill], voters: Iterable[str],
                p: WeightParams = WeightParams()) -> dict[str, float]:
    """The weight of each voter in ``regime`` (the prior where nothing was learned yet, or the regime is unknown)."""
    out = {}
    for voter in voters:
        skill = skills.get((voter, regime)) if regime is not None else None
        out[voter] = skill.weight if skill is not None else p.prior
    return out
