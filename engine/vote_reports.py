"""What ``/why SYMBOL`` and ``/model`` answer, as frozen values built from the vote book and the model file.

- ``why``: the latest scan's votes of a symbol from the trader's memory (every evaluated symbol, FLAT ones too);
  otherwise the latest stored scan of it (with each vote's outcome when resolved); otherwise a sentence that
  says whether the symbol exists and why it has no votes.
- ``model_report``: the model file's metadata (training window, out-of-sample figures), or why there is none;
  the live hit rate of the last N resolved ML votes against the out-of-sample one; each voter's learned weight,
  hit rate and resolved-vote count per regime.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.enums import VoterKind
from engine.trading.vote_log import VoteLog
from storage.votes import VoteRepository
from strategies.types import Direction
from strategies.weights import ResolvedVote, WeightParams, learn_weights

if TYPE_CHECKING:
    from strategies.model_store import ModelMeta

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")


class UnknownSymbol(Exception):
    """No votes to show for that symbol; ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class VoteView:
    voter: str
    direction: str          # LONG / SHORT / FLAT
    confidence: float
    reason: str
    outcome: str | None = None   # tp / sl / timeout / void, when stored and resolved


@dataclass(frozen=True, slots=True)
class WhyReport:
    symbol: str
    source: str             # "last scan" (memory) or "stored" (the votes table)
    scan_time: datetime
    votes: tuple[VoteView, ...]
    consensus: str
    score: float
    threshold: float | None
    regime: str | None
    price: float
    decision: str
    trade_id: int | None


@dataclass(frozen=True, slots=True)
class SkillView:
    voter: str
    regime: str
    weight: float           # learned over the newest ``window`` decided votes (the prior below ``min_votes``)
    brier: float
    window_votes: int
    resolved: int           # every decided vote kept (retention)
    hit_rate: float


@dataclass(frozen=True, slots=True)
class ModelReport:
    path: Path
    meta: ModelMeta | None
    problem: str            # why there is no usable model ("" when there is one)
    panel: tuple[str, ...]  # the voters of the live consensus
    oos_hit_rate: float | None
    oos_acted: int
    oos: dict[str, dict[str, Any]]
    live_window: int
    live_votes: int
    live_hit_rate: float | None
    skills: tuple[SkillView, ...]
    learned_weights: bool
    min_votes: int


def why_from_memory(log: VoteLog | None, symbol: str) -> WhyReport | None:
    if log is None or symbol not in log.latest:
        return None
    s = log.latest[symbol]
    return WhyReport(symbol, "last scan", s.scan_time,
                     tuple(VoteView(v.voter, v.direction.name, v.confidence, v.reason) for v in s.votes),
                     s.consensus.name, s.score, s.threshold, s.regime, s.price, s.decision, s.trade_id)


async def why_from_table(repo: VoteRepository, symbol: str) -> WhyReport | None:
    stored = await repo.latest(symbol)
    if not stored:
        return None
    first = stored[0].row
    return WhyReport(symbol, "stored", first.scan_time,
                     tuple(VoteView(s.row.voter, Direction(s.row.direction).name, s.row.confidence, s.row.reason,
                                    s.outcome) for s in stored),
                     Direction(first.consensus).name, first.score, None, first.regime, first.price, first.decision,
                     first.trade_id)


def normalise_symbol(text: str) -> str:
    symbol = text.strip().upper()
    if not SYMBOL_PATTERN.match(symbol):
        raise UnknownSymbol(f"{text!r} is not a symbol; write it like BTCUSDT")
    return symbol


async def skills_report(repo: VoteRepository, params: WeightParams) -> tuple[SkillView, ...]:
    rows = await repo.recent_per_voter_regime(params.window)
    skills = learn_weights((ResolvedVote(r.voter, r.regime or "", r.confidence, r.won) for r in rows), params)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for voter, regime, n, wins in await repo.resolved_counts():
        counts[(voter, regime)] = [n, wins]
    out = []
    for key, skill in sorted(skills.items()):
        n, wins = counts.get(key, [skill.votes, 0])
        out.append(SkillView(skill.voter, skill.regime, skill.weight, skill.brier, skill.votes, n,
                             wins / n if n else 0.0))
    return tuple(out)


def out_of_sample(meta: ModelMeta) -> tuple[dict[str, dict[str, Any]], float | None, int]:
    """Per side figures and the hit rate over both sides (weighted by the predictions it acted on)."""
    oos = meta.metrics.get("out_of_sample", {}) if isinstance(meta.metrics, dict) else {}
    sides = {side: v for side, v in oos.items() if isinstance(v, dict)}
    acted = sum(int(v.get("acted", 0)) for v in sides.values())
    hits = sum(float(v.get("hit_rate", 0.0)) * int(v.get("acted", 0)) for v in sides.values())
    return sides, (hits / acted if acted else None), acted


def read_model_meta(models_dir: Path) -> tuple[Path, ModelMeta | None, str]:
    """The model file, its metadata and why it cannot be used ("" when it can; its features are checked when it is
    loaded). Imports the model store (scikit-learn, joblib) only when asked."""
    from strategies.model_store import MODEL_FILE, ModelMismatch, check_compatible, read_meta

    path = models_dir / MODEL_FILE
    if not path.is_file():
        return path, None, "no model: the ML voter abstains"
    try:
        meta = read_meta(path)
    except ModelMismatch as exc:
        return path, None, f"model refused, the ML voter abstains: {exc}"
    try:
        check_compatible(meta, meta.features, path)  # the format and the library versions
    except ModelMismatch as exc:
        return path, meta, f"model refused, the ML voter abstains: {exc}"
    return path, meta, ""


async def model_report(models_dir: Path, repo: VoteRepository, panel: tuple[str, ...], *, live_window: int,
                       params: WeightParams, learned_weights: bool) -> ModelReport:
    path, meta, problem = await asyncio.to_thread(read_model_meta, models_dir)
    sides, oos_hit, acted = out_of_sample(meta) if meta is not None else ({}, None, 0)
    live = await repo.resolved(kind=VoterKind.ML, limit=live_window)
    live_hit = sum(r.won for r in live) / len(live) if live else None
    return ModelReport(path, meta, problem, panel, oos_hit, acted, sides, live_window, len(live), live_hit,
                       await skills_report(repo, params), learned_weights, params.min_votes)
