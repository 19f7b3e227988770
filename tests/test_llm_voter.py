"""The LLM voter against a local OpenAI-compatible server over real HTTP (httpx), with a real SQLite call log and
features computed from real candles: valid answers count; malformed JSON, timeouts, 429 and 500 abstain and the
panel still returns by its deadline; answers are cached per candle; the daily budget stops the calls and survives a
restart; recorded answers replay in backtests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from core.clock import ManualClock
from core.enums import VoterKind
from storage.db import Database
from storage.llm_calls import LlmCallRepository
from strategies.consensus import Consensus
from strategies.features import Features, compute_features
from strategies.llm import (
    CallStatus,
    DailyBudget,
    LlmPanel,
    LlmProvider,
    LlmVoter,
    ProviderSpec,
    RecordedLlmVoter,
    parse_answer,
)
from strategies.types import Direction, Vote
from tests.fakes.openai_server import API_KEY, FakeLlm, Hang, Reply, Status, answer_json
from tests.helpers_market import sample_klines, window

NOW = datetime(2025, 3, 10, 12, 0, 5, tzinfo=UTC)


def real_features(symbol: str = "ETHUSDT", end: datetime = NOW) -> Features:
    end_ms = int(end.replace(second=0).timestamp() * 1000)
    return compute_features({tf: window(sample_klines(symbol, tf), end_ms, 300) for tf in ("5m", "15m", "1h", "4h")})


@pytest.fixture
async def fake():
    async with FakeLlm() as server:
        yield server


@pytest.fixture
async def calls(tmp_path: Path):
    db = await Database(tmp_path / "vigil.sqlite3").open()
    yield LlmCallRepository(db)
    await db.close()


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


def provider(fake: FakeLlm, name: str = "deepseek") -> LlmProvider:
    return LlmProvider(name, fake.base_url, fake.model, API_KEY, Decimal("0.27"), Decimal("1.10"))


def voter(fake: FakeLlm, http: httpx.AsyncClient, calls: LlmCallRepository, *, budget_usd: str = "1",
          timeout_s: float = 2.0, clock: ManualClock | None = None, name: str = "deepseek") -> LlmVoter:
    clock = clock or ManualClock(NOW)
    return LlmVoter(provider(fake, name), http, calls, DailyBudget(Decimal(budget_usd), calls), clock.now,
                    timeout_s=timeout_s)


async def test_a_valid_answer_is_a_vote_recorded_with_tokens_and_cost(fake, http, calls):
    fake.then(Reply("```json\n" + answer_json("SHORT", 0.8, "lower highs") + "\n```", 500, 50))
    vote = await voter(fake, http, calls).ask("ETHUSDT", real_features())
    assert vote == Vote("llm:deepseek", Direction.SHORT, 0.8, "lower highs", VoterKind.LLM)
    request = fake.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["body"]["model"] == "fake-chat" and request["body"]["temperature"] == 0
    assert "ETHUSDT" in request["body"]["messages"][1]["content"]
    [call] = await calls.recent()
    assert call.status is CallStatus.OK and call.symbol == "ETHUSDT"
    assert (call.prompt_tokens, call.completion_tokens) == (500, 50)
    assert call.cost_usd == Decimal("0.27") * 500 / 1_000_000 + Decimal("1.10") * 50 / 1_000_000
    assert call.candle_ms == real_features().entry.open_time and call.latency_ms > 0


@pytest.mark.parametrize(("behaviour", "status"), [
    (Reply("I think it will go up!"), CallStatus.MALFORMED),
    (Reply('{"side": "UP", "confidence": 0.9}'), CallStatus.MALFORMED),
    (Reply('{"side": "LONG", "confidence": 1.7}'), CallStatus.MALFORMED),
    (Status(429, retry_after=30), CallStatus.RATE_LIMITED),
    (Status(500), CallStatus.SERVER_ERROR),
    (Status(503), CallStatus.SERVER_ERROR),
])
async def test_bad_answers_abstain_and_are_recorded(fake, http, calls, behaviour, status):
    fake.then(behaviour)
    assert await voter(fake, http, calls).ask("ETHUSDT", real_features()) is None
    [call] = await calls.recent()
    assert call.status is status and call.answer is None and call.error


async def test_a_wrong_key_abstains_and_the_key_is_never_recorded(fake, http, calls):
    wrong = LlmProvider("deepseek", fake.base_url, fake.model, "sk-wrong-key-123")
    v = LlmVoter(wrong, http, calls, DailyBudget(Decimal(1), calls), ManualClock(NOW).now)
    assert await v.ask("ETHUSDT", real_features()) is None
    [call] = await calls.recent()
    assert call.status is CallStatus.HTTP_ERROR
    rows = await calls.db.fetchall("SELECT * FROM llm_calls")
    assert not any("sk-wrong-key-123" in str(value) for row in rows for value in row)
    assert "sk-wrong-key-123" not in repr(wrong)


async def test_a_timeout_abstains_within_its_bound(fake, http, calls):
    fake.then(Hang())
    v = voter(fake, http, calls, timeout_s=0.3)
    vote = await asyncio.wait_for(v.ask("ETHUSDT", real_features()), timeout=5)
    assert vote is None
    [call] = await calls.recent()
    assert call.status is CallStatus.TIMEOUT and 250 <= call.latency_ms < 3000


async def test_answers_are_cached_per_symbol_and_candle(fake, http, calls):
    v = voter(fake, http, calls)
    first = await v.ask("ETHUSDT", real_features())
    again = await v.ask("ETHUSDT", real_features())
    assert first == again and len(fake.requests) == 1
    await v.ask("ETHUSDT", real_features(end=NOW + timedelta(minutes=5)))  # next candle: asked again
    assert len(fake.requests) == 2


async def test_the_daily_budget_stops_the_calls_and_survives_a_restart(fake, http, calls):
    clock = ManualClock(NOW)
    fake.default = Reply(answer_json(), prompt_tokens=1_000_000, completion_tokens=0)  # 0.27 USD per call
    v = voter(fake, http, calls, budget_usd="0.5", clock=clock)
    assert await v.ask("ETHUSDT", real_features()) is not None
    assert await v.ask("BTCUSDT", real_features("BTCUSDT")) is not None   # 0.27 spent < 0.5: allowed
    assert await v.ask("SOLUSDT", real_features("SOLUSDT")) is None       # 0.54 spent: no call
    assert len(fake.requests) == 2
    restarted = voter(fake, http, calls, budget_usd="0.5", clock=clock)
    assert await restarted.ask("SOLUSDT", real_features("SOLUSDT")) is None
    assert len(fake.requests) == 2
    clock.set(NOW + timedelta(days=1))  # a new UTC day: a new budget
    assert await restarted.ask("SOLUSDT", real_features("SOLUSDT")) is not None
    assert len(fake.requests) == 3


@pytest.mark.slow
async def test_the_panel_returns_by_its_deadline_with_the_votes_that_came(http, calls):
    async with FakeLlm() as healthy, FakeLlm() as stuck:
        stuck.default = Hang()
        panel = LlmPanel([voter(healthy, http, calls, name="qwen"), voter(stuck, http, calls, timeout_s=30)],
                         top_n=2, deadline_s=5)
        candidates = [("ETHUSDT", real_features()), ("BTCUSDT", real_features("BTCUSDT")),
                      ("SOLUSDT", real_features("SOLUSDT"))]
        answers = await asyncio.wait_for(panel.ask(candidates), timeout=30)
    assert answers.timed_out and answers.asked == 4 and answers.abstained == 2
    assert set(answers.votes) == {"ETHUSDT", "BTCUSDT"}  # only the top 2 were asked
    assert all(v.voter == "llm:qwen" for votes in answers.votes.values() for v in votes)


async def test_an_abstaining_llm_does_not_dilute_the_consensus(fake, http, calls):
    fake.then(Status(500))
    consensus = Consensus([], threshold=0.6)
    local = (Vote("trend", Direction.LONG, 0.8),)
    answers = await LlmPanel([voter(fake, http, calls)]).ask([("ETHUSDT", real_features())])
    assert consensus.combine([*local, *answers.votes.get("ETHUSDT", ())]) == (Direction.LONG, pytest.approx(0.8))


async def test_no_provider_means_no_llm(http, calls):
    panel = LlmPanel([])
    assert not panel
    assert (await panel.ask([("ETHUSDT", real_features())])).votes == {}


async def test_recorded_answers_replay_without_calling(fake, http, calls):
    live = voter(fake, http, calls)
    features = real_features()
    await live.ask("ETHUSDT", features)
    replay = RecordedLlmVoter("deepseek", calls)
    assert await replay.ask("ETHUSDT", features) == Vote("llm:deepseek", Direction.LONG, 0.7, "trend up on 1h and 4h",
                                                                 VoterKind.LLM)
    assert await replay.ask("ETHUSDT", real_features(end=NOW + timedelta(hours=1))) is None
    assert len(fake.requests) == 1


def test_provider_specs_are_parsed_and_checked():
    spec = ProviderSpec.parse("deepseek|https://api.deepseek.com/v1/|deepseek-chat|DEEPSEEK_API_KEY|0.27|1.10")
    assert spec.base_url == "https://api.deepseek.com/v1" and spec.output_usd_per_mtok == Decimal("1.10")
    local = ProviderSpec.parse("local|http://127.0.0.1:8080/v1|qwen2.5-7b|")
    assert local.provider(lambda name: None).api_key is None
    assert spec.provider({"DEEPSEEK_API_KEY": "sk-1"}.get).api_key == "sk-1"
    for bad in ("deepseek|api.deepseek.com|m|K", "x|https://a|m", "x|https://a|m|sk-live-abc123",
                "x|https://a|m|K|cheap|1", "x y|https://a|m|K"):
        with pytest.raises(ValueError):
            ProviderSpec.parse(bad)


def test_answers_are_validated():
    assert parse_answer('Sure: {"side": "FLAT", "confidence": 0, "reason": "no edge"}').side == "FLAT"
    for bad in ("", "{}", '{"side": "LONG"}', '{"side": "LONG", "confidence": -0.1}', "{not json}"):
        with pytest.raises(ValueError):
            parse_answer(bad)
