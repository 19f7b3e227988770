"""Pieces the technical voters share: timeframe roles, clipping, and the "indicators defined" check, each in a
scalar form (``vote``) and an array form (``vote_arrays``) that compute the same floats.

Roles come from the timeframes present, shortest first (``Features.timeframes``):

- 4 or more timeframes (default 5m, 15m, 1h, 4h): entry = 1st, momentum = 2nd, trend = the rest;
- 3: entry = 1st, momentum = 2nd, trend = 3rd;  2: entry = momentum = 1st, trend = 2nd;  1: all roles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

import numpy as np

from strategies.features import TimeframeFeatures
from strategies.types import Direction, Vote
from strategies.voters import FeatureColumns


@dataclass(frozen=True, slots=True)
class Roles:
    entry: str
    momentum: str
    trend: tuple[str, ...]

    def of(self, role: str) -> str:
        """The timeframe of role ``entry`` or ``momentum``."""
        if role == "entry":
            return self.entry
        if role == "momentum":
            return self.momentum
        raise ValueError(f"unknown timeframe role {role!r}; use entry or momentum")


def assign_roles(timeframes: tuple[str, ...]) -> Roles:
    """Entry, momentum and trend timeframes from the ones present (ordered shortest first)."""
    if isinstance(timeframes, tuple):
        return _roles(timeframes)  # every voter asks on every scan: the (frozen) answer is kept per tuple
    return _roles.__wrapped__(tuple(timeframes))


@lru_cache(maxsize=32)
def _roles(timeframes: tuple[str, ...]) -> Roles:
    if not timeframes:
        raise ValueError("no timeframes")
    if len(timeframes) == 1:
        return Roles(timeframes[0], timeframes[0], (timeframes[0],))
    if len(timeframes) == 2:
        return Roles(timeframes[0], timeframes[0], (timeframes[1],))
    return Roles(timeframes[0], timeframes[1], tuple(timeframes[2:]))


def clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def clip_arr(x: np.ndarray) -> np.ndarray:
    return np.minimum(1.0, np.maximum(0.0, x))


def usable(f: TimeframeFeatures, names: Iterable[str]) -> bool:
    """The named indicators are all defined and the ATR is positive."""
    getter = _getter(names) if isinstance(names, tuple) else None
    if getter is None:
        return all(math.isfinite(getattr(f, n)) for n in names) and f.atr > 0
    # the voters ask this of every timeframe of every symbol on every scan: one C-level pass over the values
    return all(map(math.isfinite, getter(f))) and f.atr > 0


@lru_cache(maxsize=64)
def _getter(names: tuple[str, ...]) -> Callable[[TimeframeFeatures], tuple[float, ...]] | None:
    """The values of ``names`` as a tuple, in one call (None for an empty or one-name tuple: attrgetter then does
    not answer a tuple)."""
    return attrgetter(*names) if len(names) > 1 else None


def usable_arr(columns: FeatureColumns, timeframes: Iterable[str], names: Iterable[str]) -> np.ndarray:
    """``usable`` of each candle, for every one of ``timeframes``."""
    tfs = tuple(dict.fromkeys(timeframes))
    names = tuple(names)
    ok = np.ones(len(columns.column(tfs[0], "close")), dtype=bool)
    for tf in tfs:
        ok &= columns.column(tf, "atr") > 0
        for name in names:
            ok &= np.isfinite(columns.column(tf, name))
    return ok


def check_unit(name: str, value: float) -> None:
    """A voter parameter that must lie in [0, 1] (a base confidence)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def check_positive(**values: float) -> None:
    """Voter parameters that must be > 0."""
    bad = [f"{k}={v}" for k, v in values.items() if not v > 0]
    if bad:
        raise ValueError(f"must be positive: {', '.join(bad)}")


def confidence(base: float, strength: float) -> float:
    """``base + (1 - base) * strength``, clipped to [0, 1] (``strength`` in [0, 1])."""
    return clip(base + (1.0 - base) * strength)


def confidence_arr(base: float, strength: np.ndarray) -> np.ndarray:
    return clip_arr(base + (1.0 - base) * strength)


def check_role(role: str) -> None:
    """The signal-timeframe role of a voter parameter: ``entry`` or ``momentum``."""
    if role not in ("entry", "momentum"):
        raise ValueError(f"timeframe must be entry or momentum, got {role!r}")


class RuleVoter:
    """Base of the rule voters: ``params`` (``default_params`` when not given), a ``name`` a panel may override
    per instance (two of the same rule with other parameters), and the FLAT vote with its reason."""

    name: str = ""
    default_params: object = None

    def __init__(self, params: object = None, *, name: str | None = None) -> None:
        self.params = self.default_params if params is None else params
        if name is not None:
            self.name = name

    def flat(self, reason: str) -> Vote:
        return Vote(self.name, Direction.FLAT, 0.0, reason)
