"""When the ML voter's live record calls for a retrain: a pure decision.

The bar is the model's out-of-sample hit rate (from its metadata) minus a declared margin (``RETRAIN_LIVE_MARGIN``,
default 0.05: a window of 200 resolved votes at a true 55 % hit rate has a standard error of 3.5 points, so a
smaller margin would fire on noise). It fires only on a full window of ``MODEL_LIVE_WINDOW`` resolved ML votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TriggerCheck:
    fire: bool
    live_hit: float | None
    bar: float | None
    resolved: int
    reason: str


def live_hit_check(wins: Sequence[bool], *, window: int, out_of_sample_hit: float | None,
                   margin: float) -> TriggerCheck:
    """``wins``: the newest resolved ML votes, won or not (at most ``window`` of them are used)."""
    recent = list(wins)[-window:]
    live = sum(recent) / len(recent) if recent else None
    if out_of_sample_hit is None:
        return TriggerCheck(False, live, None, len(recent), "the model has no out-of-sample hit rate")
    bar = out_of_sample_hit - margin
    if len(recent) < window:
        return TriggerCheck(False, live, bar, len(recent), f"only {len(recent)} of {window} ML votes resolved")
    assert live is not None
    if live < bar:
        return TriggerCheck(True, live, bar, len(recent),
                            f"live hit rate {live:.3f} over the last {len(recent)} ML votes is below "
                            f"{bar:.3f} (out of sample {out_of_sample_hit:.3f} − {margin:g})")
    return TriggerCheck(False, live, bar, len(recent), f"live hit rate {live:.3f} ≥ {bar:.3f}")
