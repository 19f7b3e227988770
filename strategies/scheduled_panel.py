"""A panel whose ML model changes over time, for one continuous walk-forward backtest.

The walk-forward (``app.walk_forward``) retrains the ML voter before each fold and runs the fast engine once over
the whole span. Within that run, the Signal of a row (``SymbolSignals.signal_at``, which exit management reads and
the trade-opened votes carry) must come from the model of the fold the row belongs to:

- ``RecordedMLVoter`` replays the probabilities that fold's model predicted for the row (recorded per symbol and
  5m row open time when the fold was predicted) with the live decision rule (``strategies.ml_voter.decide``), so no
  model is kept in memory after its fold;
- ``ScheduledConsensus`` decides each row with one of two panels: ``on`` where a model covers the row, ``off``
  (the panel without the ML voter) where none does (a fold with too little history to train).

A row is found by the open time of the features' entry (5m) candle, which is the table row's ``open_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from core.enums import VoterKind
from strategies.consensus import Consensus
from strategies.features import Features
from strategies.ml_voter import vote_of
from strategies.types import Direction, Signal, Vote


def _row(open_ms: np.ndarray, t: int) -> int | None:
    i = int(np.searchsorted(open_ms, t))
    return i if i < len(open_ms) and int(open_ms[i]) == t else None


class RecordedMLVoter:
    """``vote`` from recorded ``p_long``/``p_short`` per symbol row (NaN: no prediction → FLAT)."""

    def __init__(self, open_ms: Mapping[str, np.ndarray], p_long: Mapping[str, np.ndarray],
                 p_short: Mapping[str, np.ndarray], threshold: float, *, name: str = "ml") -> None:
        self.name = name
        self.open_ms, self.p_long, self.p_short = open_ms, p_long, p_short
        self.threshold = threshold

    def vote(self, symbol: str, features: Features) -> Vote:
        i = _row(self.open_ms[symbol], features.entry.open_time)
        if i is None:
            return Vote(self.name, Direction.FLAT, 0.0, "no recorded prediction for this candle", VoterKind.ML)
        return vote_of(self.name, self.p_long[symbol][i:i + 1], self.p_short[symbol][i:i + 1], self.threshold)


class ScheduledConsensus(Consensus):
    """``on.decide`` on the rows where ``covered[symbol]`` is True, ``off.decide`` elsewhere."""

    def __init__(self, on: Consensus, off: Consensus, open_ms: Mapping[str, np.ndarray],
                 covered: Mapping[str, np.ndarray]) -> None:
        super().__init__(on.voters, on.weights, on.threshold, min_agree=on.min_agree, min_agreement=on.min_agreement)
        self.on, self.off = on, off
        self.open_ms, self.covered = open_ms, covered

    def panel_for(self, symbol: str, open_ms: int) -> Consensus:
        i = _row(self.open_ms[symbol], open_ms)
        return self.on if i is not None and bool(self.covered[symbol][i]) else self.off

    def decide(self, symbol: str, features: Features, extra_votes: Iterable[Vote] = ()) -> Signal:
        return self.panel_for(symbol, features.entry.open_time).decide(symbol, features, extra_votes)
