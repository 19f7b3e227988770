"""The vote book on real SQLite files and real scans: the V5 migration, what a scan records (and what it keeps only in
memory), outcomes resolved from the market data (equal to the triple-barrier label), learned weights from stored
outcomes, the live consensus fed with them only when LEARNED_WEIGHTS is on, and the retention."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.runtime import build_trader, build_vote_log
from core.enums import Mode, VoterKind
from engine.events import EventBus
from engine.trading.vote_log import ResolveReport, VoteLog, VoteLogConfig
from storage.db import Database
from storage.migrations import MIGRATIONS
from storage.votes import VoteRepository, VoteRow
from strategies.consensus import Consensus, LearnedConsensus
from strategies.labels import BarrierParams, triple_barrier
from strategies.types import Direction, Vote
from strategies.weights import ResolvedVote, learn_weights, weights_for
from tests.trading_fixtures import SAMPLE, Rig, build_rig, make_settings

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


async def test_migration_v5_upgrades_a_v4_file_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:   # a database as Vigil with schema version 4 left it
        for version, script in enumerate(MIGRATIONS[:4], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version(version, applied_at) VALUES (?, ?)", (version, NOW.isoformat()))
        conn.execute("INSERT INTO state(key, value, updated_at) VALUES ('mode', '\"paper\"', ?)", (NOW.isoformat(),))
    db = await Database(path).open()
    try:
        assert await db.schema_version() == len(MIGRATIONS)
        assert (await db.fetchone("SELECT value FROM state WHERE key = 'mode'"))[0] == '"paper"'
        names = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE tbl_name = 'votes'")}
        assert {"votes", "votes_symbol_time", "votes_pending"} <= names
        repo = VoteRepository(db)
        row = VoteRow(NOW, "BTCUSDT", 1, "v", 1, 0.7, "why", 1, 0.7, "ranging", 100.0, 1.0, "opened trade #1", 1)
        await repo.record([row])
        (stored,) = await repo.latest("BTCUSDT")
        assert stored.row == row and stored.outcome is None
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute("INSERT INTO votes(scan_time, symbol, candle_ms, voter, direction, confidence, consensus,"
                             " score, price, stop_atr) VALUES ('x', 'S', 1, 'v', 2, 0.5, 0, 0, 1, 1)")
    finally:
        await db.close()


async def test_migration_v6_gives_each_stored_vote_its_voter_kind_and_the_ml_votes_are_told_by_it(tmp_path: Path):
    path = tmp_path / "v5.sqlite3"
    names = {"ml": VoterKind.ML, "ml:ensemble-v1": VoterKind.ML, "mlp": VoterKind.RULE, "llm:openai": VoterKind.LLM,
             "trend_momentum": VoterKind.RULE}
    with sqlite3.connect(path) as conn:   # a database as Vigil with schema version 5 left it, with resolved votes
        for version, script in enumerate(MIGRATIONS[:5], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version(version, applied_at) VALUES (?, ?)", (version, NOW.isoformat()))
        for i, voter in enumerate(names):
            conn.execute("INSERT INTO votes(scan_time, symbol, candle_ms, voter, direction, confidence, consensus,"
                         " score, price, stop_atr, outcome, outcome_r) VALUES (?, 'BTCUSDT', ?, ?, 1, 0.7, 1, 0.7,"
                         " 100, 1, 'tp', 1.4)", (NOW.isoformat(), i, voter))
    db = await Database(path).open()
    try:
        repo = VoteRepository(db)
        assert {s.row.voter: s.row.voter_kind for s in await repo.latest("BTCUSDT")} == names
        assert sorted(r.voter for r in await repo.resolved(kind=VoterKind.ML)) == ["ml", "ml:ensemble-v1"]
        assert len(await repo.resolved()) == len(names)
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute("INSERT INTO votes(scan_time, symbol, candle_ms, voter, direction, confidence, consensus,"
                             " score, price, stop_atr, voter_kind) VALUES ('x', 'S', 1, 'v', 1, 0.5, 0, 0, 1, 1, 'x')")
    finally:
        await db.close()


def attach_vote_log(rig: Rig, **overrides: object) -> VoteLog:
    settings = make_settings(**overrides) if overrides else rig.settings
    log = build_vote_log(settings, rig.repos, rig.trader.market, rig.clock)
    rig.trader.vote_log = log
    return log


@pytest.fixture
async def rig(tmp_path: Path):
    rig = await build_rig(tmp_path / "votes.sqlite3")
    yield rig
    await rig.close()


async def test_a_real_scan_records_the_active_symbols_and_remembers_every_one(rig: Rig):
    log = attach_vote_log(rig)
    report = await rig.trader.scan()
    (trade_id,) = report.opened
    rows = await rig.repos.votes.latest("BTCUSDT")
    assert len(rows) == 1 and await rig.repos.votes.count() == 1     # ETHUSDT: every voter FLAT, not stored
    row = rows[0].row
    features = rig.trader._scan_result.features["BTCUSDT"]
    signal = rig.trader._scan_result.signals["BTCUSDT"]
    assert (row.voter, row.direction, row.confidence, row.reason) == ("fixed", 1, 1.0, "test")
    assert (row.consensus, row.score, row.trade_id) == (1, 1.0, trade_id)
    assert row.decision == f"opened trade #{trade_id}" and row.scan_time == rig.clock.now()
    assert row.candle_ms == features.entry.open_time and row.price == signal.price > 0
    assert row.stop_atr == signal.atr > 0 and row.regime in ("trending_up", "trending_down", "ranging", "volatile")
    eth = log.latest["ETHUSDT"]
    assert eth.decision == "no trade: every voter is FLAT" and eth.consensus is Direction.FLAT
    trade = await rig.repos.trades.get(trade_id)
    assert trade.votes == ("fixed LONG 1.00 — test",)

    await rig.step(5)
    await rig.trader.scan()                       # in a position now: recorded with that reason
    assert [r.row.decision for r in await rig.repos.votes.latest("BTCUSDT")] == ["not opened: already in a position"]
    assert await rig.repos.votes.count() == 2


async def test_why_not_traded_below_threshold_and_halted(rig: Rig):
    log = attach_vote_log(rig)
    rig.trader.consensus = Consensus([rig.voter, HalfVoter()], threshold=0.9)   # LONG 1.0 + FLAT → 0.5 < 0.9
    await rig.trader.scan()
    assert log.latest["BTCUSDT"].decision == "no trade: score 0.50 below the threshold 0.90"
    rig.trader.consensus = Consensus([rig.voter, HalfVoter(Direction.SHORT, 1.0)], threshold=0.5)
    await rig.step(5)
    await rig.trader.scan()
    assert log.latest["BTCUSDT"].decision == "no trade: no majority (the sides weigh the same)"
    rig.trader.consensus = Consensus([rig.voter], threshold=0.5)
    from engine.trading.halts import HaltState, save_halts
    await save_halts(rig.repos.state, HaltState(paused=True, reason="operator"), rig.clock.now())
    await rig.step(5)
    await rig.trader.scan()
    assert log.latest["BTCUSDT"].decision.startswith("not opened: paused")
    assert [r.row.voter for r in await rig.repos.votes.latest("BTCUSDT")] == ["fixed"]


class HalfVoter:
    name = "half"

    def __init__(self, direction: Direction = Direction.FLAT, confidence: float = 0.0) -> None:
        self.direction, self.confidence = direction, confidence

    def vote(self, symbol: str, features: object) -> Vote:
        return Vote(self.name, self.direction, self.confidence, "half a reason")


async def test_outcomes_resolve_from_the_market_and_equal_the_label(rig: Rig):
    log = attach_vote_log(rig, vote_horizon_hours=4)
    await rig.trader.scan()
    (row,) = [r.row for r in await rig.repos.votes.latest("BTCUSDT")]
    assert (await log.resolve()) == ResolveReport(still_open=1)   # nothing after the entry candle yet: no request
    await rig.step(5)
    await rig.trader.scan()                                        # a second entry on BTCUSDT (in a position now)
    assert len(await rig.repos.votes.pending()) == 2
    rig.clock.advance(timedelta(hours=5))
    report = await log.resolve()             # past the horizon, not in the cache: ONE klines request for both
    assert report.fetched == 1 and report.resolved == 2 and report.still_open == 0
    outcome, outcome_r, resolved_at = await rig.repos.db.fetchone(
        "SELECT outcome, outcome_r, resolved_at FROM votes WHERE candle_ms = ?", (row.candle_ms,))
    assert outcome in ("tp", "sl", "timeout") and resolved_at == rig.clock.now().isoformat()
    # the same entry as a triple-barrier label on the sample's candles
    d = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz").drop_duplicates("open_time").reset_index(drop=True)
    t = int(np.flatnonzero(d["open_time"].to_numpy() == row.candle_ms)[0])
    h, lo, c = (d[k].to_numpy() for k in ("high", "low", "close"))
    a = np.full(len(d), np.nan)
    a[t] = row.stop_atr
    labels = triple_barrier(h, lo, c, a, log.config.barrier)
    assert (outcome == "tp" and outcome_r > 0) == bool(labels.long[t])
    assert outcome_r == pytest.approx(labels.long_outcome[t])
    assert await rig.repos.votes.pending() == []


async def test_weights_from_stored_outcomes_per_voter_and_regime(tmp_path: Path):
    db = await Database(tmp_path / "w.sqlite3").open()
    try:
        repo = VoteRepository(db)
        rows, expected = [], []
        for i in range(60):
            won = i % 3 == 0
            t = NOW + timedelta(minutes=5 * i)
            for voter, p in (("sharp", 0.8 if won else 0.1), ("dull", 0.5)):
                rows.append(VoteRow(t, "BTCUSDT", i, voter, 1, p, "", 1, 0.5, "ranging", 100.0, 1.0, ""))
                expected.append(ResolvedVote(voter, "ranging", p, won))
            rows.append(VoteRow(t, "ETHUSDT", i, "sharp", -1, 0.9, "", -1, 0.9, "volatile", 100.0, 1.0, ""))
        await repo.record(rows)
        for entry in await repo.pending():
            won = entry.candle_ms % 3 == 0 and entry.symbol == "BTCUSDT"
            await repo.resolve(entry, "tp" if won else "sl", 1.5 if won else -1.1, NOW)
        log = VoteLog(repo, market=None, clock=None, config=VoteLogConfig(barrier=BarrierParams()))  # type: ignore[arg-type]
        skills = await log.learn()
        want = learn_weights(expected + [ResolvedVote("sharp", "volatile", 0.9, False)] * 60)
        assert skills == want
        assert skills[("sharp", "ranging")].weight > 0.5 and skills[("dull", "ranging")].weight == 0.0
        assert skills[("sharp", "volatile")].weight == 0.0 and skills[("sharp", "volatile")].votes == 60
        assert weights_for("ranging", skills, ["sharp"])["sharp"] == skills[("sharp", "ranging")].weight
        counts = {(v, r): (n, w) for v, r, n, w in await repo.resolved_counts()}
        assert counts[("sharp", "ranging")] == (60, 20) and counts[("sharp", "volatile")] == (60, 0)
    finally:
        await db.close()


async def test_learned_weights_reach_the_live_consensus_only_when_switched_on(rig: Rig):
    settings = make_settings()
    args = dict(mode=Mode.PAPER, exchange=rig.exchange, repos=rig.repos, bus=EventBus(), clock=rig.clock)
    plain = build_trader(settings, **args, record_votes=True)
    assert type(plain.consensus) is Consensus and plain.vote_log is not None
    assert build_trader(settings, **args).vote_log is None                       # backtests: no vote book
    learned = build_trader(make_settings(learned_weights=True, voters=["trend_momentum", "breakout"],
                                         min_agreeing_voters=2, min_agreement=0.5), **args, record_votes=True)
    assert isinstance(learned.consensus, LearnedConsensus)
    consensus = learned.consensus
    assert [v.name for v in consensus.voters] == ["trend_momentum", "breakout"]
    assert (consensus.min_agree, consensus.min_agreement) == (2, 0.5)   # the gates hold with learned weights too


async def test_learned_weights_change_a_real_scan(rig: Rig):
    """A voter whose stored votes were badly calibrated in the symbol's regime loses its say: the tie it made with
    a good voter becomes a trade once the weights are learned."""
    log = attach_vote_log(rig)
    rig.trader.consensus = LearnedConsensus([rig.voter, HalfVoter(Direction.SHORT, 1.0)], log.weights, threshold=0.6)
    first = await rig.trader.scan()
    assert first.opened == [] and log.latest["BTCUSDT"].decision == "no trade: no majority (the sides weigh the same)"
    regime = log.regime_for("BTCUSDT")
    assert regime is not None
    t0 = rig.clock.now() - timedelta(days=2)
    rows = []
    for i in range(40):
        won = i % 2 == 0
        rows += [VoteRow(t0 + timedelta(minutes=5 * i), "ETHUSDT", i, "fixed", 1, 0.8 if won else 0.2, "", 1, 0.5,
                         regime, 100.0, 1.0, ""),
                 VoteRow(t0 + timedelta(minutes=5 * i), "ETHUSDT", i, "half", -1, 0.9, "", 1, 0.5, regime, 100.0, 1.0,
                         "")]
    await rig.repos.votes.record(rows)
    for entry in await rig.repos.votes.pending():
        if entry.symbol == "ETHUSDT":
            won = entry.candle_ms % 2 == 0
            await rig.repos.votes.resolve(entry, "tp" if won else "sl", 1.4 if won else -1.1, rig.clock.now())
    await log.learn()
    assert log.weights("BTCUSDT") == {"fixed": pytest.approx(1 - 0.04 / 0.25), "half": 0.0}
    await rig.step(5)
    second = await rig.trader.scan()
    assert len(second.opened) == 1 and log.latest["BTCUSDT"].decision == f"opened trade #{second.opened[0]}"
    assert log.latest["BTCUSDT"].score == pytest.approx(1.0)


async def test_retention_prunes_old_votes_once_a_day(rig: Rig):
    attach_vote_log(rig, votes_retention_days=2)
    old = VoteRow(rig.clock.now() - timedelta(days=3), "ETHUSDT", 1, "x", 1, 0.6, "", 1, 0.6, None, 1.0, 1.0, "")
    await rig.repos.votes.record([old])
    await rig.trader.scan()                                   # the first scan of the day prunes
    assert await rig.repos.votes.latest("ETHUSDT") == [] and len(await rig.repos.votes.latest("BTCUSDT")) == 1
    await rig.repos.votes.record([old])
    await rig.step(5)
    await rig.trader.scan()                                   # same day: not again
    assert len(await rig.repos.votes.latest("ETHUSDT")) == 1
