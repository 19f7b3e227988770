"""The ``Voter`` protocol: one opinion per symbol per scan.

A voter is pure computation over ``Features`` (technical rules, a scikit-learn model). Voters that need
I/O (an LLM) implement ``AsyncVoter``; the scanner gathers their votes concurrently and hands them to
``Consensus.decide(..., extra_votes=...)``, so a slow or failing LLM never blocks the synchronous panel.

A voter the fast backtest can use also implements ``VectorVoter.vote_arrays``: the same rule over
``FeatureColumns`` (one array per timeframe and feature, one value per candle), returning every candle's
direction and confidence at once. The signal parity test holds the two forms equal.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from strategies.features import Features
from strategies.types import Vote


@runtime_checkable
class Voter(Protocol):
    """``vote`` returns a ``Vote`` whose ``voter`` is ``name``; FLAT when it has no opinion."""

    name: str

    def vote(self, symbol: str, features: Features) -> Vote:
        ...


@runtime_checkable
class AsyncVoter(Protocol):
    """A voter that needs I/O. It must time out on its own and return FLAT (or raise) rather than hang."""

    name: str

    async def vote(self, symbol: str, features: Features) -> Vote:
        ...


class FeatureColumns(Protocol):
    """Per-candle feature arrays: ``column(tf, name)`` is ``TimeframeFeatures.<name>`` of timeframe ``tf`` at
    every candle (NaN where undefined); ``timeframes`` is ordered from the shortest interval."""

    timeframes: tuple[str, ...]

    def column(self, timeframe: str, name: str) -> np.ndarray:
        ...


@runtime_checkable
class VectorVoter(Protocol):
    """A ``Voter`` with a vectorised twin: ``vote_arrays`` returns ``(direction int8, confidence float64)``
    per candle, equal to what ``vote`` returns on each candle's ``Features``."""

    name: str

    def vote(self, symbol: str, features: Features) -> Vote:
        ...

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        ...
