"""Values that cross from strategies/ to the engine: votes and the consensus signal for one symbol."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from core.enums import VoterKind


class Direction(IntEnum):
    SHORT = -1
    FLAT = 0
    LONG = 1


@dataclass(frozen=True, slots=True)
class Vote:
    """One voter's opinion on one symbol. ``confidence`` is in [0, 1]."""

    voter: str
    direction: Direction
    confidence: float
    reason: str = ""
    kind: VoterKind = VoterKind.RULE  # which kind of voter cast it (the vote book stores it)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    def describe(self, reason_chars: int = 120) -> str:
        """``voter SIDE 0.80 — reason`` (the reason cut to ``reason_chars``): how a trade remembers its votes."""
        text = f"{self.voter} {self.direction.name} {self.confidence:.2f}"
        reason = " ".join(self.reason.split())
        if len(reason) > reason_chars:
            reason = reason[:reason_chars - 1] + "…"
        return f"{text} — {reason}" if reason else text


@dataclass(frozen=True, slots=True)
class Signal:
    """Consensus for one symbol at one scan.

    ``score`` in [0, 1] ranks candidates; ``atr`` (price units, entry timeframe) and ``price`` (last close)
    feed stop and take-profit placement. Floats: this is analysis, not an order.
    """

    symbol: str
    direction: Direction
    score: float
    price: float
    atr: float
    votes: tuple[Vote, ...] = field(default_factory=tuple)

    @property
    def atr_pct(self) -> float:
        return self.atr / self.price * 100.0 if self.price else 0.0
