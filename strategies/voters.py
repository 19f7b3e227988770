"""The ``Voter`` protocol: one opinion per symbol per scan.

A voter is pure computation over ``Features`` (technical rules, a scikit-learn model). Voters that need
I/O (an LLM) implement ``AsyncVoter``; the scanner gathers their votes concurrently and hands them to
``Consensus.decide(..., extra_votes=...)``, so a slow or failing LLM never blocks the synchronous panel.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
