"""The local voters by name: what ``VOTERS`` in the settings may list."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from strategies.breakout import BreakoutVoter
from strategies.mean_reversion import MeanReversionVoter
from strategies.technical import TrendMomentumVoter
from strategies.trend_following import TrendFollowingVoter
from strategies.voters import VectorVoter

#: Every local technical voter, by its ``name``, with its default parameters.
VOTER_FACTORIES: dict[str, Callable[[], VectorVoter]] = {
    TrendMomentumVoter.name: TrendMomentumVoter,
    TrendFollowingVoter.name: TrendFollowingVoter,
    MeanReversionVoter.name: MeanReversionVoter,
    BreakoutVoter.name: BreakoutVoter,
}

VOTER_NAMES: tuple[str, ...] = tuple(VOTER_FACTORIES)


class UnknownVoter(ValueError):
    """A voter name that is not one of ``VOTER_NAMES``."""


def check_voter_names(names: Iterable[str]) -> list[str]:
    """The names, checked: ``UnknownVoter`` (one line naming the valid ones) for an unknown or repeated name, or
    none at all."""
    names = list(names)
    unknown = [n for n in names if n not in VOTER_FACTORIES]
    if unknown:
        raise UnknownVoter(f"unknown voter(s) {', '.join(unknown)}; valid voters: {', '.join(VOTER_NAMES)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UnknownVoter(f"voter(s) listed twice: {', '.join(repeated)}")
    if not names:
        raise UnknownVoter(f"no voter listed; valid voters: {', '.join(VOTER_NAMES)}")
    return names


def build_voters(names: Iterable[str]) -> list[VectorVoter]:
    """The panel's local voters, in the order given, with their default parameters."""
    return [VOTER_FACTORIES[n]() for n in check_voter_names(names)]
