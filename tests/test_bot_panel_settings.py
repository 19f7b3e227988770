"""/set of the panel's settings through the real PTB Application against the fake Bot API, over a real trader on
real data whose panel holds a real ML voter loaded from a model file: ML_THRESHOLD and the consensus gates reach the
running panel at the next scan (not in the middle of one), and the settings the panel is built from at start-up are
refused with what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.ml_panel import ml_voter_from_settings
from app.runtime import build_vote_log
from core.enums import VoterKind
from engine.scheduler import EngineScheduler
from strategies.ml_voter import MLVoter, feature_names
from tests.fakes.telegram_server import FakeTelegram
from tests.retrain_fixtures import constant_model, save_pair
from tests.test_bot_harness import Cockpit, close_cockpit, fake, open_cockpit  # noqa: F401


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake, rig_kwargs={"data_dir": tmp_path / "data"})
    rig = c.rig
    rig.trader.vote_log = build_vote_log(rig.settings, rig.repos, rig.trader.market, rig.clock)  # for /why
    # a real model file: P(long take-profit first) 0.6, P(short) 0.2 on every row
    estimators = {"long": constant_model(0.6)["long"], "short": constant_model(0.2)["short"]}
    save_pair(rig.settings.ml_model_file, estimators, feature_names(rig.settings.timeframes),
              train_end="2025-02-01T00:00:00Z")
    voter = ml_voter_from_settings(rig.settings)
    assert voter is not None and voter.threshold == 0.5
    rig.trader.consensus.voters = (*rig.trader.consensus.voters, voter)
    rig.voter.symbols = set()  # the fixed voter says FLAT: the ML voter's 0.6 alone scores 0.3, below 0.5
    yield c
    await close_cockpit(c)


def ml_voter(cockpit: Cockpit) -> MLVoter:
    (voter,) = [v for v in cockpit.rig.trader.consensus.voters if isinstance(v, MLVoter)]
    return voter


async def ml_vote_on_btc(cockpit: Cockpit) -> str:
    """Scan with /scan, then the ML voter's line of /why BTCUSDT."""
    (scanned,) = await cockpit.send("/scan")
    assert "0 opened" in scanned.text
    (why,) = await cockpit.send("/why BTCUSDT")
    (line,) = [line for line in why.text.splitlines() if "<b>ml</b>" in line]
    return line


async def test_set_ml_threshold_reaches_the_running_ml_voter_at_the_next_scan(cockpit: Cockpit):
    assert "<b>ml</b> LONG 0.60" in (before := await ml_vote_on_btc(cockpit)) and "(threshold 0.5)" in before
    (reply,) = await cockpit.send("/set ML_THRESHOLD 0.7")
    assert "ML_THRESHOLD: 0.5 → <b>0.7</b> (applies to the next scan; kept across restarts)" in reply.text
    after = await ml_vote_on_btc(cockpit)
    assert "<b>ml</b> FLAT" in after and "long 0.600, short 0.200 (threshold 0.7)" in after
    # the vote book stores each vote with its voter's kind (what /model and the retrainer tell the ML votes by)
    stored = await cockpit.rig.repos.votes.latest("BTCUSDT")
    assert {s.row.voter: s.row.voter_kind for s in stored} == {"fixed": VoterKind.RULE, "ml": VoterKind.ML}

    # a restart builds the voter with ML_THRESHOLD from .env; the stored /set value is re-applied over it
    ml_voter(cockpit).threshold = cockpit.rig.settings.ml_threshold
    assert await cockpit.service.apply_stored_settings() == {"ML_THRESHOLD": "0.7"}
    assert ml_voter(cockpit).threshold == 0.7


async def test_set_consensus_gates_reach_the_next_scan(cockpit: Cockpit):
    (reply,) = await cockpit.send("/set ENTRY_THRESHOLD 0.25")
    assert "ENTRY_THRESHOLD: 0.6 → <b>0.25</b> (applies to the next scan" in reply.text
    (reply,) = await cockpit.send("/set MIN_AGREEING_VOTERS 2")
    assert "MIN_AGREEING_VOTERS: 1 → <b>2</b>" in reply.text
    (scanned,) = await cockpit.send("/scan")
    assert "0 opened" in scanned.text  # the ML voter alone agrees: 2 are needed
    (reply,) = await cockpit.send("/set MIN_AGREEING_VOTERS 1")
    (scanned,) = await cockpit.send("/scan")
    assert "2 opened" in scanned.text  # score 0.3 >= 0.25 with one agreeing voter, on both symbols
    (reply,) = await cockpit.send("/set MIN_AGREEMENT 0.75")
    assert "MIN_AGREEMENT: 0.0 → <b>0.75</b>" in reply.text and cockpit.rig.trader.consensus.min_agreement == 0.75


async def test_a_set_while_a_scan_runs_applies_from_the_next_scan(cockpit: Cockpit):
    runtime = cockpit.service.runtime
    s = runtime.settings
    runtime.scheduler = EngineScheduler(clock=runtime.clock, bus=runtime.bus, scan=runtime.run_scan,
                                        monitor=runtime.run_monitor, scan_interval=s.scan_interval_seconds,
                                        monitor_interval=s.monitor_interval_seconds, scan_delay=s.scan_delay_seconds)
    async with runtime.scheduler._locks["scan"]:  # a scan in flight holds it
        (reply,) = await cockpit.send("/set ML_THRESHOLD 0.7")
        assert "applies to the next scan" in reply.text
        assert ml_voter(cockpit).threshold == 0.5  # the scan in flight keeps the panel it started with
    after = await ml_vote_on_btc(cockpit)
    assert "<b>ml</b> FLAT" in after and "(threshold 0.7)" in after


@pytest.mark.parametrize("key", ["VOTERS", "TIMEFRAMES", "ML_MODEL_PATH", "LEARNED_WEIGHTS"])
async def test_settings_the_panel_is_built_from_are_refused_with_what_to_do(cockpit: Cockpit, key: str):
    (reply,) = await cockpit.send(f"/set {key} trend_momentum")
    assert f"⛔ {key} " in reply.text and "change it in .env and restart Vigil" in reply.text
    assert ml_voter(cockpit).threshold == 0.5 and cockpit.rig.trader.consensus.threshold == 0.5
