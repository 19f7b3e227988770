"""The vote book: what the panel said at each scan, what came of it, and what the panel learns from that.

After every scan the trader hands its report and signals here:

- **record**: the votes of every symbol where at least one voter was not FLAT, and of every symbol a trade was
  opened on, go to the ``votes`` table with the consensus, the regime, the entry price and stop ATR, and why the
  symbol did or did not trade; the whole scan (FLAT symbols included) is also kept in memory for ``/why``;
- **resolve** (every ``resolve_every``): each pending entry is resolved by ``strategies.outcomes.resolve_vote``
  from the entry-timeframe candles the market cache already holds (no request); only an entry past its horizon
  whose candles are no longer cached (the symbol left the universe, the bot was down) costs a klines request for
  its symbol (1,000 candles from its oldest such entry, weight 5), at most ``max_fetch`` symbols per run; one
  still undecided ``give_up_after`` past its horizon is void;
- **learn**: after resolving, the weights per voter and regime (``strategies.weights``) are recomputed from the
  newest ``WeightParams.window`` decided votes of each;
- **prune** (once a UTC day): votes older than the retention are deleted.

A failure here is logged and never fails the scan: the trading decision was already taken.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from core.clock import Clock
from core.intervals import interval_ms
from engine.exchange.types import KlineBatch
from engine.market import MarketDataService
from storage.votes import PendingEntry, VoteRepository, VoteRow
from strategies.labels import BarrierParams
from strategies.outcomes import Outcome, Resolution, resolve_vote
from strategies.regime import regime_of_candles
from strategies.scanner import ScanResult
from strategies.types import Direction, Signal, Vote
from strategies.weights import ResolvedVote, VoterSkill, WeightParams, learn_weights, weights_for

if TYPE_CHECKING:
    from engine.trading.trader import ScanReport

log = logging.getLogger(__name__)

FETCH_LIMIT = 1000  # 5m candles per klines request for outcomes (3.5 days; Binance request weight 5)


@dataclass(frozen=True, slots=True)
class VoteLogConfig:
    barrier: BarrierParams                    # Vigil's stop / take-profit rule and the label horizon (candles)
    retention: timedelta = timedelta(days=30)
    entry_interval: str = "5m"                # the timeframe the price is read on and the horizon counts
    stop_timeframe: str | None = "1h"         # the regime is read on it
    resolve_every: timedelta = timedelta(minutes=15)
    max_fetch: int = 10                       # klines requests (one per symbol) per run for uncached entries
    give_up_after: timedelta = timedelta(days=1)
    max_pending: int = 20_000                 # entries looked at per run, oldest first
    weights: WeightParams = field(default_factory=WeightParams)


@dataclass(frozen=True, slots=True)
class SymbolVotes:
    """One symbol at one scan: every vote, the consensus and what the trader did with it."""

    symbol: str
    scan_time: datetime
    votes: tuple[Vote, ...]
    consensus: Direction
    score: float
    threshold: float
    regime: str | None
    price: float
    stop_atr: float
    decision: str
    trade_id: int | None = None
    outcomes: Mapping[str, str | None] = field(default_factory=dict)  # voter → outcome (stored votes only)


@dataclass(frozen=True, slots=True)
class ResolveReport:
    resolved: int = 0          # entries decided (each resolves every vote on its side)
    voided: int = 0
    still_open: int = 0
    fetched: int = 0           # klines requests made


def decision_for(signal: Signal, report: ScanReport, threshold: float) -> str:
    """Why ``signal``'s symbol did or did not trade at this scan, in one line."""
    symbol = signal.symbol
    if symbol in report.opened_symbols:
        return f"opened trade #{report.opened_symbols[symbol]}"
    if symbol in report.skipped:
        return f"not opened: {report.skipped[symbol]}"
    if signal.direction is Direction.FLAT:
        if not any(v.direction is not Direction.FLAT for v in signal.votes):
            return "no trade: every voter is FLAT"
        if signal.score <= 0:
            return "no trade: no majority (the sides weigh the same)"
        return f"no trade: score {signal.score:.2f} below the threshold {threshold:.2f}"
    if report.halted:
        return f"not opened: {report.halted}"
    return "not opened"


class VoteLog:
    def __init__(self, repo: VoteRepository, market: MarketDataService, clock: Clock, config: VoteLogConfig) -> None:
        self.repo = repo
        self.market = market
        self.clock = clock
        self.config = config
        self.latest: dict[str, SymbolVotes] = {}      # the last scan, every evaluated symbol
        self.latest_time: datetime | None = None
        self.skills: dict[tuple[str, str], VoterSkill] = {}
        self._regimes: dict[str, tuple[KlineBatch, str | None]] = {}  # symbol → (stop-tf batch, its regime)
        self._last_resolve: datetime | None = None
        self._pruned_on: date | None = None
        self._interval_ms = interval_ms(config.entry_interval)
        self.on_resolved: list[Callable[[], Awaitable[object]]] = []  # after each resolve (the retrain check)

    # ------------------------------------------------------------------ after each scan
    async def after_scan(self, report: ScanReport, result: ScanResult, threshold: float) -> None:
        """Record this scan, then resolve, learn and prune when they are due. Never raises."""
        try:
            await self.record(report, result, threshold)
            now = self.clock.now()
            if self._last_resolve is None or now - self._last_resolve >= self.config.resolve_every:
                await self.resolve()
            if self._pruned_on != now.date():
                await self.prune()
        except Exception:
            log.exception("the votes of this scan could not be recorded or resolved; trading goes on")

    async def record(self, report: ScanReport, result: ScanResult, threshold: float) -> list[VoteRow]:
        now = self.clock.now()
        latest: dict[str, SymbolVotes] = {}
        rows: list[VoteRow] = []
        for symbol, signal in result.signals.items():
            regime = self.regime_of(symbol, result)
            decision = decision_for(signal, report, threshold)
            trade_id = report.opened_symbols.get(symbol)
            latest[symbol] = SymbolVotes(symbol, now, signal.votes, signal.direction, signal.score, threshold, regime,
                                         signal.price, signal.atr, decision, trade_id)
            if trade_id is None and all(v.direction is Direction.FLAT for v in signal.votes):
                continue
            features = result.features.get(symbol)
            candle_ms = features.entry.open_time if features is not None else 0
            rows.extend(VoteRow(now, symbol, candle_ms, v.voter, int(v.direction), v.confidence, v.reason,
                                int(signal.direction), signal.score, regime, signal.price, signal.atr, decision,
                                trade_id, v.kind) for v in signal.votes)
        await self.repo.record(rows)
        self.latest, self.latest_time = latest, now
        return rows

    def regime_of(self, symbol: str, result: ScanResult) -> str | None:
        """The regime on the stop timeframe, computed once per closed candle of it (the batch is memoised)."""
        batch = result.stop_frame(symbol)
        if batch is None:
            return None
        seen = self._regimes.get(symbol)
        if seen is not None and seen[0] is batch:
            return seen[1]
        regime = regime_of_candles(batch.high, batch.low, batch.close)
        self._regimes[symbol] = (batch, regime.value if regime is not None else None)
        return self._regimes[symbol][1]

    def regime_for(self, symbol: str) -> str | None:
        """The regime of ``symbol`` as of the last scan (for the learned weights of the next one)."""
        seen = self._regimes.get(symbol)
        return seen[1] if seen is not None else None

    # ------------------------------------------------------------------ outcomes
    async def resolve(self) -> ResolveReport:
        """Resolve every pending entry that can be, from cached candles first; then relearn the weights."""
        now = self.clock.now()
        self._last_resolve = now
        horizon = timedelta(milliseconds=self._interval_ms * self.config.barrier.horizon)
        resolved = voided = still_open = 0
        fetched: dict[str, KlineBatch | None] = {}   # symbol → candles read from the exchange in this run
        for entry in await self.repo.pending(limit=self.config.max_pending):
            resolution = self._from(self.market.cached(entry.symbol, self.config.entry_interval), entry)
            due = entry.first_scan + horizon <= now
            if resolution.outcome is None and due:
                if entry.symbol not in fetched and len(fetched) < self.config.max_fetch:
                    fetched[entry.symbol] = await self._fetch(entry, now)   # its oldest pending entry comes first
                resolution = self._from(fetched.get(entry.symbol), entry)
            if resolution.outcome is None and entry.first_scan + horizon + self.config.give_up_after <= now:
                resolution = Resolution(Outcome.VOID)
            if resolution.outcome is None:
                still_open += 1
                continue
            await self.repo.resolve(entry, resolution.outcome.value, resolution.r, now)
            if resolution.outcome is Outcome.VOID:
                voided += 1
            else:
                resolved += 1
        await self.learn()
        for hook in self.on_resolved:
            try:
                await hook()
            except Exception:
                log.exception("a check after resolving the votes failed; trading goes on")
        report = ResolveReport(resolved, voided, still_open, len(fetched))
        log.info("votes resolved: %d decided, %d void, %d still open, %d klines requests", *(
            report.resolved, report.voided, report.still_open, report.fetched))
        return report

    def _from(self, batch: KlineBatch | None, entry: PendingEntry) -> Resolution:
        """The entry's outcome from ``batch`` if it holds the candles right after the entry, else still open."""
        if batch is None or len(batch) == 0 or int(batch.open_time[0]) > entry.candle_ms + self._interval_ms:
            return Resolution(None)
        return resolve_vote(entry.direction, entry.price, entry.stop_atr, entry.candle_ms, batch.open_time,
                            batch.high, batch.low, batch.close, self.config.barrier, self._interval_ms)

    async def _fetch(self, entry: PendingEntry, now: datetime) -> KlineBatch | None:
        """The closed candles of ``entry.symbol`` from just after ``entry`` (``FETCH_LIMIT`` of them: they cover
        its later pending entries too), or ``None`` when they cannot be read now (retried at the next run)."""
        try:
            batch = await self.market.source.klines(entry.symbol, self.config.entry_interval,
                                                    start_ms=entry.candle_ms + self._interval_ms, limit=FETCH_LIMIT)
        except Exception as exc:
            log.warning("candles for the vote outcomes of %s could not be read (%s); retried later", entry.symbol, exc)
            return None
        closed = (batch.open_time + self._interval_ms) <= int(now.timestamp() * 1000)
        return KlineBatch(batch.symbol, batch.interval, *(a[closed] for a in (
            batch.open_time, batch.open, batch.high, batch.low, batch.close, batch.volume)))

    # ------------------------------------------------------------------ weights
    async def learn(self) -> dict[tuple[str, str], VoterSkill]:
        rows = await self.repo.recent_per_voter_regime(self.config.weights.window)
        self.skills = learn_weights((ResolvedVote(r.voter, r.regime or "", r.confidence, r.won) for r in rows),
                                    self.config.weights)
        return self.skills

    def weights(self, symbol: str) -> dict[str, float]:
        """The learned weight of every voter with resolved votes in ``symbol``'s current regime (below
        ``min_votes`` the prior); voters not named keep the consensus default (1.0, the prior too)."""
        regime = self.regime_for(symbol)
        if regime is None:
            return {}
        voters = sorted({voter for voter, r in self.skills if r == regime})
        return weights_for(regime, self.skills, voters, self.config.weights)

    # ------------------------------------------------------------------ retention
    async def prune(self) -> int:
        now = self.clock.now()
        self._pruned_on = now.date()
        removed = await self.repo.prune(now - self.config.retention)
        if removed:
            log.info("votes: %d rows older than %s pruned", removed, self.config.retention)
        return removed
