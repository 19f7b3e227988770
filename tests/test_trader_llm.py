"""The LLM panel inside a real scan (paper exchange, real data, local OpenAI-compatible server): its votes join the
consensus of the candidates it was asked about, a hanging provider does not stop the scan, and nothing is asked
while entries are halted."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx

from core.clock import ManualClock
from engine.trading.halts import HaltState, save_halts
from storage.llm_calls import LlmCallRepository
from strategies.llm import DailyBudget, LlmPanel, LlmProvider, LlmVoter
from tests.fakes.openai_server import API_KEY, FakeLlm, Hang, Reply, answer_json
from tests.trading_fixtures import START, build_rig


def panel_for(fake: FakeLlm, rig_db, clock: ManualClock, http: httpx.AsyncClient, *, deadline_s: float = 5
              ) -> LlmPanel:
    calls = LlmCallRepository(rig_db)
    provider = LlmProvider("fake", fake.base_url, fake.model, API_KEY)
    return LlmPanel([LlmVoter(provider, http, calls, DailyBudget(Decimal(1), calls), clock.now, timeout_s=30)],
                    top_n=2, deadline_s=deadline_s)


async def test_an_llm_vote_joins_the_consensus_and_can_veto_an_entry(tmp_path: Path):
    clock = ManualClock(START)
    async with FakeLlm() as fake, httpx.AsyncClient() as http:
        fake.default = Reply(answer_json("SHORT", 0.9, "bearish divergence"))
        rig = await build_rig(tmp_path / "t.sqlite3", clock=clock, llm=None)
        rig.trader.llm = panel_for(fake, rig.db, clock, http)
        try:
            report = await rig.trader.scan()
            assert report.opened == []  # 1 LONG vote against 1 SHORT vote: no majority
            btc = rig.trader._scan_result.signals["BTCUSDT"]
            assert [(v.voter, v.direction.name) for v in btc.votes] == [("fixed", "LONG"), ("llm:fake", "SHORT")]
            asked = [r["body"]["messages"][1]["content"].split("\n")[0] for r in fake.requests]
            assert asked == ["symbol BTCUSDT"]  # only the candidate the local voters liked
        finally:
            await rig.close()


async def test_a_hanging_llm_abstains_and_the_scan_still_opens(tmp_path: Path):
    clock = ManualClock(START)
    async with FakeLlm() as fake, httpx.AsyncClient() as http:
        fake.default = Hang()
        rig = await build_rig(tmp_path / "t.sqlite3", clock=clock)
        rig.trader.llm = panel_for(fake, rig.db, clock, http, deadline_s=0.3)
        try:
            report = await rig.trader.scan()
            assert len(report.opened) == 1
            trade = await rig.repos.trades.get(report.opened[0])
            assert trade.symbol == "BTCUSDT" and len(fake.requests) == 1
        finally:
            await rig.close()


async def test_nothing_is_asked_while_entries_are_halted(tmp_path: Path):
    clock = ManualClock(START)
    async with FakeLlm() as fake, httpx.AsyncClient() as http:
        rig = await build_rig(tmp_path / "t.sqlite3", clock=clock)
        rig.trader.llm = panel_for(fake, rig.db, clock, http)
        try:
            await save_halts(rig.repos.state, HaltState(paused=True), clock.now())
            report = await rig.trader.scan()
            assert report.opened == [] and report.halted and fake.requests == []
        finally:
            await rig.close()
