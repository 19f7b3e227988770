"""Pure pieces of the signal evaluation (``bench/evaluate.py``): what a vote earned, how well its confidence is
calibrated, the declared grid of panel configurations and the walk-forward choice among them.

- A *vote* is one row (a 5m scan) on which a voter or a panel configuration says LONG or SHORT; an *onset* is a
  vote whose previous row (the contiguous row before it) was not on the same side.
- Its *outcome* is the triple-barrier label of its side (``strategies.labels``: 1 when the take-profit is hit before
  the stop, after costs) and its *net R* the label's outcome (R after the round-trip cost).
- Brier score = mean((confidence − outcome)²) over the labelled votes.
- The walk-forward (``select``) chooses, for a fold starting at ``fold_start``, the candidate with the largest
  total net R of its onsets over the rows whose label horizon ended at or before ``fold_start`` (purged), among
  those with at least ``min_onsets`` of them; "do not trade" (worth 0) is always a candidate, so nothing is
  chosen when every candidate lost in-sample.

Voters are names with ``(direction int8, confidence)`` arrays: any voter with arrays (a further voter such as
``ml``) is one more name.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from strategies.consensus import Consensus

FIVE_MIN_MS = 300_000
#: The name of the candidate that does not trade.
FLAT = "do not trade"


# --------------------------------------------------------------------------------------------------
# votes and their outcomes
# --------------------------------------------------------------------------------------------------

def onsets(direction: np.ndarray, contiguous: np.ndarray | None = None) -> np.ndarray:
    """Rows that start a vote: non-FLAT and not the same side as the previous row. ``contiguous[i]`` says row
    ``i - 1`` is the scan right before row ``i`` (no gap, both scanned); without it every row follows the last."""
    d = np.asarray(direction)
    previous = np.concatenate(([0], d[:-1]))
    linked = np.ones(len(d), dtype=bool) if contiguous is None else np.asarray(contiguous, dtype=bool)
    return (d != 0) & ~(linked & (previous == d))


def side_outcome(direction: np.ndarray, long_value: np.ndarray, short_value: np.ndarray) -> np.ndarray:
    """Per row, the long or the short value for the row's side (NaN where FLAT)."""
    d = np.asarray(direction)
    return np.where(d > 0, long_value, np.where(d < 0, short_value, np.nan))


@dataclass(frozen=True, slots=True)
class SignalStats:
    votes: int             # rows counted (non-FLAT and labelled)
    hits: int              # of which the take-profit came first
    brier: float           # NaN without votes
    mean_r: float          # mean net R after costs (NaN without votes)
    total_r: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.votes if self.votes else float("nan")


def signal_stats(confidence: np.ndarray, hit: np.ndarray, r: np.ndarray, mask: np.ndarray) -> SignalStats:
    """Stats of the rows in ``mask`` that carry a label (``hit`` 0/1, NaN = no label)."""
    m = np.asarray(mask, dtype=bool) & np.isfinite(hit) & np.isfinite(r)
    n = int(m.sum())
    if n == 0:
        return SignalStats(0, 0, float("nan"), float("nan"), 0.0)
    h, c, rr = hit[m], np.clip(confidence[m], 0.0, 1.0), r[m]
    return SignalStats(n, int(h.sum()), float(np.mean((c - h) ** 2)), float(rr.mean()), float(rr.sum()))


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    lo: float
    hi: float
    count: int
    mean_confidence: float
    hit_rate: float


def calibration(confidence: np.ndarray, hit: np.ndarray, edges: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
                ) -> list[CalibrationBin]:
    """Confidence bins ``[lo, hi)`` (the last one closed) of the labelled rows: count, mean confidence, hit rate.
    Empty bins are kept (count 0, NaN means)."""
    ok = np.isfinite(hit) & np.isfinite(confidence)
    c, h = np.clip(confidence[ok], 0.0, 1.0), hit[ok]
    out = []
    for k, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = k == len(edges) - 2
        m = (c >= lo) & ((c <= hi) if last else (c < hi))
        n = int(m.sum())
        out.append(CalibrationBin(lo, hi, n, float(c[m].mean()) if n else float("nan"),
                                  float(h[m].mean()) if n else float("nan")))
    return out


# --------------------------------------------------------------------------------------------------
# panel configurations
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PanelConfig:
    """A panel (voter names) and its gates: score threshold and minimum agreeing voters."""

    voters: tuple[str, ...]
    threshold: float
    min_agree: int = 1

    @property
    def name(self) -> str:
        panel = "+".join(self.voters)
        return f"{panel} ≥{self.threshold:g}" + (f" k≥{self.min_agree}" if self.min_agree > 1 else "")


class _Named:
    """What ``Consensus`` needs of a voter to combine its arrays: its name."""

    def __init__(self, name: str) -> None:
        self.name = name


def panel_signal(config: PanelConfig, votes: Mapping[str, tuple[np.ndarray, np.ndarray]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The consensus ``(direction int8, score)`` of ``config`` on per-voter ``(direction, confidence)`` arrays, with
    the live rule (``Consensus.combine_arrays``, equal weights, no agreement-share gate)."""
    consensus = Consensus([_Named(n) for n in config.voters], threshold=config.threshold,  # type: ignore[misc]
                          min_agree=config.min_agree)
    size = len(next(iter(votes.values()))[0])
    return consensus.combine_arrays([(n, *votes[n]) for n in config.voters], size)


def declared_grid(panels: Iterable[Sequence[str]], thresholds: Sequence[float], min_agrees: Sequence[int]
                  ) -> list[PanelConfig]:
    """Every panel × threshold × min agreeing voters (a min above the panel's size is left out)."""
    return [PanelConfig(tuple(p), t, k) for p in panels for t in thresholds for k in min_agrees if k <= len(p)]


# --------------------------------------------------------------------------------------------------
# walk-forward
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fold:
    start_ms: int
    end_ms: int           # exclusive

    @property
    def name(self) -> str:
        t = datetime.fromtimestamp(self.start_ms / 1000, UTC)
        return f"{t.year}Q{(t.month - 1) // 3 + 1}"


def _ms(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def quarter_folds(first: datetime, end: datetime) -> list[Fold]:
    """Consecutive calendar quarters from the quarter starting at ``first`` (a quarter's first day) up to ``end``
    (the last fold is cut at ``end``)."""
    if first.day != 1 or first.month % 3 != 1:
        raise ValueError(f"folds start on a quarter's first day, got {first:%Y-%m-%d}")
    end_ms = calendar.timegm(end.utctimetuple()) * 1000
    y, m = first.year, first.month
    out: list[Fold] = []
    while _ms(y, m) < end_ms:
        ny, nm = (y + 1, 1) if m == 10 else (y, m + 3)
        out.append(Fold(_ms(y, m), min(_ms(ny, nm), end_ms)))
        y, m = ny, nm
    return out


@dataclass(frozen=True, slots=True)
class Events:
    """One candidate's onsets over all symbols: entry row open time, the time its label horizon ends, hit, net R."""

    time_ms: np.ndarray
    label_end_ms: np.ndarray
    hit: np.ndarray
    r: np.ndarray

    def window(self, mask: np.ndarray) -> SignalStats:
        return signal_stats(np.zeros(len(self.r)), self.hit, self.r, mask)

    def in_sample(self, fold_start_ms: int) -> np.ndarray:
        """Purged: the rows whose label horizon ended at or before the fold start."""
        return self.label_end_ms <= fold_start_ms

    def out_of_sample(self, fold: Fold) -> np.ndarray:
        return (self.time_ms >= fold.start_ms) & (self.time_ms < fold.end_ms)


@dataclass(frozen=True, slots=True)
class VoteRows:
    """The labelled votes of one candidate (a voter or a panel configuration): entry row open time, confidence,
    hit (take-profit first), net R, and whether the row is an onset."""

    time_ms: np.ndarray
    confidence: np.ndarray
    hit: np.ndarray
    r: np.ndarray
    onset: np.ndarray

    def stats(self, *, onsets_only: bool = False) -> SignalStats:
        mask = self.onset if onsets_only else np.ones(len(self.r), dtype=bool)
        return signal_stats(self.confidence, self.hit, self.r, mask)

    def events(self, horizon: int) -> Events:
        """The onsets; the label of the entry at the close of row ``i`` ends at the close of row ``i + horizon``."""
        t = self.time_ms[self.onset]
        return Events(t, t + (horizon + 1) * FIVE_MIN_MS, self.hit[self.onset], self.r[self.onset])


def vote_rows(open_ms: np.ndarray, direction: np.ndarray, confidence: np.ndarray, contiguous: np.ndarray,
              hit_long: np.ndarray, hit_short: np.ndarray, r_long: np.ndarray, r_short: np.ndarray) -> VoteRows:
    """One symbol's labelled non-FLAT rows of ``direction`` (a row without a label is left out; onsets are found
    before that, on every row)."""
    on = onsets(direction, contiguous)
    hit = side_outcome(direction, hit_long, hit_short)
    r = side_outcome(direction, r_long, r_short)
    keep = (np.asarray(direction) != 0) & np.isfinite(hit) & np.isfinite(r)
    return VoteRows(np.asarray(open_ms, dtype=np.int64)[keep], np.asarray(confidence, dtype=np.float64)[keep],
                    hit[keep], r[keep], on[keep])


def concat_rows(parts: Iterable[VoteRows]) -> VoteRows:
    parts = list(parts)
    fields = ("time_ms", "confidence", "hit", "r", "onset")
    if not parts:
        return VoteRows(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))
    return VoteRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


@dataclass(frozen=True, slots=True)
class Selection:
    fold: Fold
    chosen: str                             # a candidate's name, or FLAT
    in_sample: dict[str, SignalStats]       # every candidate's purged in-sample onsets
    last_label_end_ms: int                  # the latest label end among the in-sample rows used (≤ fold start)
    score: float                            # the chosen one's criterion (0 for FLAT)


def select(candidates: Mapping[str, Events], fold: Fold, *, min_onsets: int) -> Selection:
    """The candidate with the best total net R of its purged in-sample onsets (at least ``min_onsets``), or FLAT
    when none beats 0. Ties keep the first candidate in ``candidates`` order."""
    best, best_score = FLAT, 0.0
    stats: dict[str, SignalStats] = {}
    last = -1
    for name, ev in candidates.items():
        m = ev.in_sample(fold.start_ms)
        if m.any():
            last = max(last, int(ev.label_end_ms[m].max()))
        s = ev.window(m)
        stats[name] = s
        if s.votes >= min_onsets and s.total_r > best_score:
            best, best_score = name, s.total_r
    return Selection(fold, best, stats, last, best_score)
