"""Consensus of the voter panel for one symbol, and the ranking of candidates.

Rule (weights default to 1.0 per voter name):

- the majority direction is the non-FLAT direction with the larger total weight of voters behind it;
  equal weight on both sides (or nobody non-FLAT) means no majority → FLAT with score 0;
- ``score = sum(weight * confidence of voters agreeing with the majority) / sum(weight of all voters that
  answered)`` — FLAT and dissenting voters stay in the denominator, so abstention and dissent lower it;
- ``agreement = sum(weight of voters on the majority side) / sum(weight of all voters that answered)``;
- the signal is the majority direction if it passes three gates, else FLAT (score kept for diagnostics):
  ``score >= threshold``, at least ``min_agree`` voters of positive weight on the majority side, and
  ``agreement >= min_agreement``. At ``min_agree=1`` and ``min_agreement=0`` the last two never bind (a
  majority always has a voter of positive weight behind it), so only the score decides.

A voter that raises is logged and left out of the denominator (it did not answer); so is an async voter
(LLM) whose vote the scanner did not get in time: pass the votes you have as ``extra_votes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from strategies.features import Features
from strategies.types import Direction, Signal, Vote
from strategies.voters import Voter

logger = logging.getLogger(__name__)


class Consensus:
    def __init__(self, voters: Sequence[Voter], weights: Mapping[str, float] | None = None,
                 threshold: float = 0.6, *, min_agree: int = 1, min_agreement: float = 0.0) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if min_agree < 1:
            raise ValueError(f"min_agree must be at least 1, got {min_agree}")
        if not 0.0 <= min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement}")
        weights = dict(weights or {})
        bad = {k: w for k, w in weights.items() if not w >= 0}
        if bad:
            raise ValueError(f"voter weights must be >= 0: {bad}")
        names = [v.name for v in voters]
        if len(set(names)) != len(names):
            raise ValueError(f"voter names must be unique: {names}")
        self.voters = tuple(voters)
        self.weights = weights
        self.threshold = threshold
        self.min_agree = min_agree
        self.min_agreement = min_agreement

    def weight(self, voter: str, weights: Mapping[str, float] | None = None) -> float:
        return (self.weights if weights is None else weights).get(voter, 1.0)

    def weights_for_symbol(self, symbol: str) -> Mapping[str, float] | None:
        """The weights to combine ``symbol``'s votes with (``None``: the panel's fixed ``weights``)."""
        return None

    def prepare(self, features: Mapping[str, Features]) -> None:
        """Before a scan's ``decide`` calls: voters with a ``prepare`` (the ML voter) compute the whole scan at once
        (one model call for every symbol instead of one per symbol). Optional; ``decide`` is the same without it."""
        for voter in self.voters:
            prepare = getattr(voter, "prepare", None)
            if prepare is not None:
                try:
                    prepare(features)
                except Exception:
                    logger.exception("voter %s failed to prepare the scan; it will vote symbol by symbol", voter.name)

    def decide(self, symbol: str, features: Features, extra_votes: Iterable[Vote] = ()) -> Signal:
        """Ask every voter, add ``extra_votes`` (already gathered async votes) and combine."""
        votes: list[Vote] = []
        for voter in self.voters:
            try:
                votes.append(voter.vote(symbol, features))
            except Exception:
                logger.exception("voter %s failed on %s; counted as not answering", voter.name, symbol)
        votes.extend(extra_votes)
        direction, score = self.combine(votes, self.weights_for_symbol(symbol))
        entry = features.entry
        return Signal(symbol=symbol, direction=direction, score=score, price=entry.close, atr=entry.atr,
                      votes=tuple(votes))

    def combine(self, votes: Sequence[Vote], weights: Mapping[str, float] | None = None) -> tuple[Direction, float]:
        """Direction and score of a set of votes (see the module docstring); ``weights`` replace the panel's."""
        total = sum(self.weight(v.voter, weights) for v in votes)
        if total <= 0:
            return Direction.FLAT, 0.0
        side_weight = {d: sum(self.weight(v.voter, weights) for v in votes if v.direction == d)
                       for d in (Direction.LONG, Direction.SHORT)}
        if side_weight[Direction.LONG] == side_weight[Direction.SHORT]:
            return Direction.FLAT, 0.0
        majority = max(side_weight, key=side_weight.__getitem__)
        score = sum(self.weight(v.voter, weights) * v.confidence for v in votes if v.direction == majority) / total
        score = min(1.0, max(0.0, score))
        agreeing = sum(1 for v in votes if v.direction == majority and self.weight(v.voter, weights) > 0)
        passes = (score >= self.threshold and agreeing >= self.min_agree
                  and side_weight[majority] / total >= self.min_agreement)
        return (majority if passes else Direction.FLAT), score

    def combine_arrays(self, votes: Sequence[tuple[str, np.ndarray, np.ndarray]], size: int,
                       weights: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``combine`` for ``size`` candles at once: ``votes`` is ``(voter, direction int8, confidence)`` per
        voter, in panel order; ``weights`` (voter → weight per candle) replace the panel's weight of the voters they
        name (the backtest's learned weights). Returns ``(direction int8, score)`` with the same sums in the same
        order."""
        n = size
        w = {name: (weights[name] if weights is not None and name in weights else self.weight(name))
             for name, _, _ in votes}
        total = sum(w[name] for name, _, _ in votes)
        if np.ndim(total) == 0 and total <= 0:
            return np.zeros(n, dtype=np.int8), np.zeros(n)
        long_w = np.zeros(n)
        short_w = np.zeros(n)
        long_n = np.zeros(n, dtype=np.int64)
        short_n = np.zeros(n, dtype=np.int64)
        for name, direction, _ in votes:
            long_w = long_w + np.where(direction == Direction.LONG, w[name], 0.0)
            short_w = short_w + np.where(direction == Direction.SHORT, w[name], 0.0)
            positive = np.asarray(w[name]) > 0
            long_n += (direction == Direction.LONG) & positive
            short_n += (direction == Direction.SHORT) & positive
        is_long = long_w > short_w
        majority = np.where(is_long, Direction.LONG, Direction.SHORT).astype(np.int8)
        agree = np.zeros(n)
        for name, direction, confidence in votes:
            agree = agree + np.where(direction == majority, w[name] * confidence, 0.0)
        answered = np.asarray(total) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.minimum(1.0, np.maximum(0.0, agree / total))
            share = np.where(is_long, long_w, short_w) / total
        score = np.where((long_w == short_w) | ~answered, 0.0, score)
        passes = (answered & (long_w != short_w) & (score >= self.threshold)
                  & (np.where(is_long, long_n, short_n) >= self.min_agree) & (share >= self.min_agreement))
        return np.where(passes, majority, 0).astype(np.int8), score


class LearnedConsensus(Consensus):
    """The same rule with each symbol's weights from ``source(symbol)`` (the vote book's weights learned in that
    symbol's current regime, ``LEARNED_WEIGHTS=true``); a voter it does not name keeps weight 1.0. The replay runs it
    with the live vote book; the fast engine models the same weights (``engine.backtest.learned_weights``)."""

    def __init__(self, voters: Sequence[Voter], source: Callable[[str], Mapping[str, float]],
                 threshold: float = 0.6, *, min_agree: int = 1, min_agreement: float = 0.0) -> None:
        super().__init__(voters, threshold=threshold, min_agree=min_agree, min_agreement=min_agreement)
        self.source = source

    def weights_for_symbol(self, symbol: str) -> Mapping[str, float] | None:
        return self.source(symbol)


def rank(signals: Iterable[Signal]) -> list[Signal]:
    """Non-FLAT signals, best score first (ties by symbol, so the order is deterministic)."""
    return sorted((s for s in signals if s.direction is not Direction.FLAT), key=lambda s: (-s.score, s.symbol))
