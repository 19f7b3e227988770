"""The bot's retraining: a real child process (a stand-in command), one at a time, an alert either way; the trigger
fires when the live hit rate of the last resolved ML votes is below the bar and not above it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.retrainer import Retrainer
from core.clock import ManualClock
from core.enums import VoterKind
from engine.events import Alert, EventBus, Level, RecordingSink
from engine.policy.retrain_trigger import live_hit_check
from engine.trading.vote_log import VoteLog, VoteLogConfig
from storage.db import Database
from storage.votes import VoteRepository, VoteRow
from strategies.labels import BarrierParams
from tests.retrain_fixtures import CFG, constant_model, save_pair

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def rig(command: list[str], timeout: float = 60) -> tuple[Retrainer, RecordingSink]:
    bus, sink = EventBus(), RecordingSink()
    bus.subscribe(sink)
    return Retrainer(bus, ManualClock(NOW), command=command, timeout=timeout), sink


@pytest.mark.parametrize(("code", "outcome", "level"), [
    ("print('building'); print('retrain: promoted: Brier 0.19'); raise SystemExit(0)", "promoted", Level.INFO),
    ("print('retrain: kept: candidate Brier 0.21 is not lower'); raise SystemExit(3)", "kept", Level.INFO),
    ("import sys; print('retrain: failed: no data', file=sys.stderr); raise SystemExit(1)", "failed", Level.WARNING),
])
async def test_the_child_process_runs_and_the_operator_is_told(code: str, outcome: str, level: Level) -> None:
    retrainer, sink = rig(child(code))
    assert retrainer.start("weekly")
    result = await retrainer.wait()
    assert result is not None and result.outcome == outcome and result.summary.startswith(f"retrain: {outcome}")
    [alert] = sink.of(Alert)
    assert alert.level is level and alert.detail == {"outcome": outcome, "reason": "weekly"}
    assert result.summary in alert.message


async def test_the_child_runs_at_low_priority_and_one_at_a_time(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    code = (f"import os, time, pathlib; p = pathlib.Path({str(gate)!r}); t = time.monotonic() + 30\n"
            "while not p.exists() and time.monotonic() < t: time.sleep(0.01)\n"
            "print('retrain: kept: niceness', os.nice(0)); raise SystemExit(3)")
    retrainer, sink = rig(child(code))
    assert retrainer.start("first") and retrainer.running
    assert not retrainer.start("second")
    gate.touch()
    result = await retrainer.wait()
    assert result is not None and result.outcome == "kept" and result.summary.endswith(" 10")
    assert len(sink.of(Alert)) == 1 and not retrainer.running


async def test_a_child_past_its_timeout_is_killed_and_reported_as_failed() -> None:
    retrainer, sink = rig(child("import time; time.sleep(60)"), timeout=0.5)
    retrainer.start("weekly")
    result = await retrainer.wait()
    assert result is not None and result.outcome == "failed" and result.exit_code is None
    assert sink.of(Alert)[0].level is Level.WARNING and "timed out" in result.summary


async def test_a_command_that_cannot_start_is_reported() -> None:
    retrainer, sink = rig(["/nonexistent/python"])
    retrainer.start("weekly")
    result = await retrainer.wait()
    assert result is not None and result.outcome == "failed" and sink.of(Alert)[0].level is Level.WARNING


def test_the_trigger_fires_below_the_bar_and_not_at_or_above_it() -> None:
    below = live_hit_check([True] * 40 + [False] * 60, window=100, out_of_sample_hit=0.5, margin=0.05)
    assert below.fire and below.live_hit == pytest.approx(0.4) and below.bar == pytest.approx(0.45)
    at = live_hit_check([True] * 45 + [False] * 55, window=100, out_of_sample_hit=0.5, margin=0.05)
    assert not at.fire
    partial = live_hit_check([False] * 99, window=100, out_of_sample_hit=0.5, margin=0.05)
    assert not partial.fire and partial.resolved == 99
    assert not live_hit_check([False] * 100, window=100, out_of_sample_hit=None, margin=0.05).fire
    newest = live_hit_check([False] * 500 + [True] * 100, window=100, out_of_sample_hit=0.5, margin=0.05)
    assert not newest.fire and newest.live_hit == 1.0


async def ml_votes(repo: VoteRepository, wins: int, losses: int) -> None:
    rows = [VoteRow(NOW + timedelta(minutes=5 * i), "BTCUSDT", i, "ml", 1, 0.6, "", 1, 0.6, "ranging", 100.0, 1.0,
                    "", voter_kind=VoterKind.ML) for i in range(wins + losses)]
    await repo.record(rows)
    for entry in await repo.pending():
        won = entry.candle_ms < wins
        await repo.resolve(entry, "tp" if won else "sl", 1.5 if won else -1.1, NOW)


@pytest.mark.parametrize(("wins", "fires"), [(30, True), (60, False)])
async def test_the_live_check_starts_a_retrain_only_below_the_bar(tmp_path: Path, wins: int, fires: bool) -> None:
    from strategies.ml_voter import feature_names

    model = save_pair(tmp_path / "vigil-ml.joblib", constant_model(0.5), feature_names(CFG.timeframes),
                      train_end="2025-03-01T00:00:00Z", hit_rate=0.55)
    db = await Database(tmp_path / "v.sqlite3").open()
    try:
        repo = VoteRepository(db)
        await ml_votes(repo, wins, 100 - wins)
        retrainer, sink = rig(child("print('retrain: kept: x'); raise SystemExit(3)"))
        # the check runs where the bot runs it: after the vote book resolved outcomes
        vote_log = VoteLog(repo, market=None, clock=ManualClock(NOW),  # type: ignore[arg-type]
                           config=VoteLogConfig(barrier=BarrierParams()))
        checks = []

        async def check() -> None:
            checks.append(await retrainer.check_live(repo, model, window=100, margin=0.05))

        vote_log.on_resolved.append(check)
        await vote_log.resolve()
        [result] = checks
        assert result.fire is fires and result.live_hit == pytest.approx(wins / 100)
        assert result.bar == pytest.approx(0.5)
        assert retrainer.running is fires
        if fires:
            await retrainer.wait()
            assert [a.detail["outcome"] for a in sink.of(Alert)] == ["kept"]
            # a kept model is not retrained again on every resolve: at most once a day
            await retrainer.check_live(repo, model, window=100, margin=0.05)
            assert not retrainer.running
        else:
            assert sink.of(Alert) == []
    finally:
        await db.close()
