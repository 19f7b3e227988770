"""strategies.consensus: majority, weighting, threshold, failing voters, ranking."""

from __future__ import annotations

import pytest

from strategies.consensus import Consensus, rank
from strategies.features import Features, compute_features
from strategies.technical import TrendMomentumVoter
from strategies.types import Direction, Signal, Vote
from tests.helpers_market import feats, sample_klines, window

L, S, F = Direction.LONG, Direction.SHORT, Direction.FLAT


class Fixed:
    """A voter with a fixed opinion."""

    def __init__(self, name: str, direction: Direction, confidence: float) -> None:
        self.name = name
        self._vote = Vote(name, direction, confidence, "fixed")

    def vote(self, symbol: str, features: Features) -> Vote:
        return self._vote


class Broken:
    name = "broken"

    def vote(self, symbol: str, features: Features) -> Vote:
        raise RuntimeError("model file missing")


def decide(*voters: object, weights: dict | None = None, threshold: float = 0.6, extra: tuple = ()) -> Signal:
    return Consensus(list(voters), weights, threshold).decide("TESTUSDT", feats(1), extra)  # type: ignore[arg-type]


def test_single_voter_passes_its_confidence_through():
    s = decide(Fixed("a", L, 0.8))
    assert (s.direction, s.score) == (L, pytest.approx(0.8))
    assert s.symbol == "TESTUSDT"
    assert [v.voter for v in s.votes] == ["a"]


def test_below_threshold_is_flat_and_keeps_the_score():
    s = decide(Fixed("a", S, 0.55))
    assert s.direction is F and s.score == pytest.approx(0.55)
    assert decide(Fixed("a", S, 0.6)).direction is S  # the threshold itself is enough


def test_flat_voters_dilute_the_score():
    s = decide(Fixed("a", L, 0.9), Fixed("b", F, 0.0))
    assert s.score == pytest.approx(0.45) and s.direction is F
    s = decide(Fixed("a", L, 0.9), Fixed("b", L, 0.7), Fixed("c", F, 0.0), threshold=0.5)
    assert s.direction is L and s.score == pytest.approx(1.6 / 3)


def test_opposite_votes_of_equal_weight_are_flat():
    s = decide(Fixed("a", L, 0.9), Fixed("b", S, 0.9))
    assert s.direction is F and s.score == 0.0


def test_majority_wins_and_dissent_lowers_the_score():
    s = decide(Fixed("a", S, 0.9), Fixed("b", S, 0.9), Fixed("c", L, 1.0))
    assert s.direction is S and s.score == pytest.approx(0.6)
    s = decide(Fixed("a", S, 0.8), Fixed("b", S, 0.8), Fixed("c", L, 1.0))
    assert s.direction is F and s.score == pytest.approx(1.6 / 3)


def test_weights_decide_the_majority_and_the_score():
    voters = (Fixed("tech", L, 0.9), Fixed("ml", S, 0.7))
    s = decide(*voters, weights={"tech": 2.0, "ml": 1.0})
    assert s.direction is L and s.score == pytest.approx(1.8 / 3)
    s = decide(*voters, weights={"tech": 1.0, "ml": 3.0}, threshold=0.5)
    assert s.direction is S and s.score == pytest.approx(2.1 / 4)
    s = decide(Fixed("tech", L, 0.9), Fixed("shadow", S, 1.0), weights={"shadow": 0.0})
    assert s.direction is L and s.score == pytest.approx(0.9)  # weight 0: recorded, not counted


def test_nobody_has_an_opinion():
    s = decide(Fixed("a", F, 0.0), Fixed("b", F, 0.0))
    assert s.direction is F and s.score == 0.0


def test_failing_voter_is_left_out_of_the_denominator():
    s = decide(Fixed("a", L, 0.8), Broken())
    assert s.direction is L and s.score == pytest.approx(0.8)
    assert [v.voter for v in s.votes] == ["a"]
    assert decide(Broken()).direction is F


def test_extra_votes_from_async_voters_count():
    s = decide(Fixed("tech", L, 0.8), extra=(Vote("llm", L, 0.6, "looks bullish"),))
    assert s.direction is L and s.score == pytest.approx(0.7)
    assert [v.voter for v in s.votes] == ["tech", "llm"]


def test_price_and_atr_come_from_the_entry_timeframe():
    frames = {tf: window(sample_klines("ETHUSDT", tf), 1_743_000_000_000, 300) for tf in ("1h", "5m", "15m", "4h")}
    f = compute_features(frames)
    s = Consensus([TrendMomentumVoter()]).decide("ETHUSDT", f)
    assert s.price == frames["5m"].close[-1]
    assert s.atr == f["5m"].atr and 0 < s.atr < s.price
    assert s.votes[0].voter == "trend_momentum"


def test_construction_is_checked():
    with pytest.raises(ValueError):
        Consensus([Fixed("a", L, 1)], threshold=0.0)
    with pytest.raises(ValueError):
        Consensus([Fixed("a", L, 1)], weights={"a": -1.0})
    with pytest.raises(ValueError):
        Consensus([Fixed("a", L, 1), Fixed("a", S, 1)])


def _sig(symbol: str, direction: Direction, score: float) -> Signal:
    return Signal(symbol, direction, score, 100.0, 1.0)


def test_rank_keeps_non_flat_best_first():
    ranked = rank([_sig("A", L, 0.7), _sig("B", F, 0.9), _sig("C", S, 0.8), _sig("D", L, 0.7), _sig("E", S, 0.95)])
    assert [s.symbol for s in ranked] == ["E", "C", "A", "D"]
    assert rank([]) == []
