"""LLM voters over any OpenAI-compatible chat-completions API (DeepSeek, Qwen, OpenRouter, llama.cpp, vLLM, ...).

The only I/O in ``strategies/``. Rules:

- **Asked late.** The scan asks the LLMs only about its top candidates after the local voters (``LlmPanel``).
- **Cheap.** Answers are cached per provider, symbol and candle; a daily cost budget (``DailyBudget``, UTC day,
  shared by every provider) stops the calls once spent; every call is recorded (latency, tokens, cost, answer).
- **Never in the way.** A timeout, a transport error, 429, 5xx, any other HTTP error or an answer that is not
  the JSON we asked for makes the voter abstain: it is left out of the consensus (not counted as FLAT), and
  the panel returns by its deadline whatever happened.
- **Honest backtests.** An LLM knows the history it would be asked about, so backtests never call one;
  ``RecordedLlmVoter`` replays the answers recorded live, where they exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.enums import VoterKind
from strategies.features import Features
from strategies.types import Direction, Vote

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
PROMPT_FIELDS = ("close", "trend", "ema_fast_slope", "rsi", "macd_hist", "adx", "atr_pct", "ret_1", "ret_12",
                 "volatility", "volume_z")
SYSTEM_PROMPT = (
    "You are one voter in a panel that trades Binance USDT perpetual futures. You get an indicator snapshot "
    "of one symbol at a candle close, per timeframe. Decide whether to open a position now and how confident "
    "you are that its take-profit (about 2-3 ATR away) is hit before its stop (about 1.5 ATR away). Answer "
    'with ONE JSON object and nothing else: {"side": "LONG" | "SHORT" | "FLAT", "confidence": 0..1, '
    '"reason": "<at most 20 words>"}. Say FLAT when there is no clear edge.')


class LlmAnswer(BaseModel):
    """The only answer shape accepted from a model."""

    model_config = ConfigDict(extra="ignore")

    side: Literal["LONG", "SHORT", "FLAT"]
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = ""

    def vote(self, voter: str) -> Vote:
        return Vote(voter, Direction[self.side], self.confidence, self.reason[:200], VoterKind.LLM)


class CallStatus(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    TRANSPORT = "transport_error"
    RATE_LIMITED = "rate_limited"     # 429
    SERVER_ERROR = "server_error"     # 5xx
    HTTP_ERROR = "http_error"         # any other non-2xx (bad key, bad model, ...)
    MALFORMED = "malformed"           # not the JSON we asked for


@dataclass(frozen=True, slots=True)
class LlmProvider:
    """One OpenAI-compatible endpoint. ``api_key`` is read from the environment variable the operator named."""

    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    input_usd_per_mtok: Decimal = Decimal(0)
    output_usd_per_mtok: Decimal = Decimal(0)

    @property
    def voter_name(self) -> str:
        return f"llm:{self.name}"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (self.input_usd_per_mtok * prompt_tokens + self.output_usd_per_mtok * completion_tokens) / MILLION


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """``name|base_url|model|KEY_VARIABLE[|usd per million input tokens|usd per million output tokens]``."""

    name: str
    base_url: str
    model: str
    key_variable: str
    input_usd_per_mtok: Decimal = Decimal(0)
    output_usd_per_mtok: Decimal = Decimal(0)

    @classmethod
    def parse(cls, text: str) -> ProviderSpec:
        parts = [p.strip() for p in text.split("|")]
        if len(parts) not in (4, 6) or not all(parts[:3]):
            raise ValueError(f"LLM provider {text!r} must be name|base_url|model|KEY_VARIABLE"
                             "[|usd_per_million_input_tokens|usd_per_million_output_tokens]")
        name, base_url, model, key_variable = parts[:4]
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", name):
            raise ValueError(f"LLM provider name {name!r}: letters, digits, '_', '.', '-' only")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLM provider {name}: base_url must start with http:// or https://, got {base_url!r}")
        if key_variable and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key_variable):
            raise ValueError(f"LLM provider {name}: the key variable must be an environment variable name "
                             f"(like DEEPSEEK_API_KEY), got {key_variable!r}; never put the key itself here")
        prices = (Decimal(0), Decimal(0))
        if len(parts) == 6:
            try:
                prices = (Decimal(parts[4]), Decimal(parts[5]))
            except ArithmeticError as exc:
                raise ValueError(f"LLM provider {name}: prices must be numbers, got {parts[4]!r}, {parts[5]!r}"
                                 ) from exc
            if min(prices) < 0:
                raise ValueError(f"LLM provider {name}: prices must be >= 0")
        return cls(name, base_url.rstrip("/"), model, key_variable, *prices)

    def provider(self, lookup: Callable[[str], str | None]) -> LlmProvider:
        return LlmProvider(self.name, self.base_url, self.model, lookup(self.key_variable) if self.key_variable
                           else None, self.input_usd_per_mtok, self.output_usd_per_mtok)


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One request to a provider, as recorded."""

    time: datetime
    provider: str
    model: str
    symbol: str
    candle_ms: int
    status: CallStatus
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    answer: LlmAnswer | None = None
    error: str = ""


class LlmCallLog(Protocol):
    """Where calls are recorded (``storage.llm_calls.LlmCallRepository``)."""

    async def record(self, call: LlmCall) -> None: ...

    async def cost_since(self, since: datetime) -> Decimal: ...

    async def answer_for(self, provider: str, symbol: str, candle_ms: int) -> LlmAnswer | None: ...


class DailyBudget:
    """Dollars the LLMs may cost per UTC day, shared by every provider; what was spent is read back from the
    call log at the first call of each day, so a restart does not reset it."""

    def __init__(self, limit_usd: Decimal, calls: LlmCallLog) -> None:
        self.limit_usd = limit_usd
        self.calls = calls
        self._day: datetime | None = None
        self._spent = Decimal(0)
        self._lock = asyncio.Lock()

    async def spent(self, now: datetime) -> Decimal:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._lock:
            if day != self._day:
                self._day, self._spent = day, await self.calls.cost_since(day)
            return self._spent

    async def allows(self, now: datetime) -> bool:
        return await self.spent(now) < self.limit_usd

    async def charge(self, cost: Decimal, now: datetime) -> None:
        await self.spent(now)
        self._spent += cost


def build_prompt(symbol: str, features: Features) -> list[dict[str, str]]:
    """A compact snapshot: a few indicators per timeframe, rounded, one line each."""
    lines = [f"symbol {symbol}"]
    for tf in features.timeframes:
        values = features[tf].as_dict()
        lines.append(f"{tf}: " + " ".join(f"{k}={_short(values[k])}" for k in PROMPT_FIELDS))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def _short(value: float) -> str:
    return f"{value:.4g}"


def parse_answer(content: str) -> LlmAnswer:
    """The JSON object in a model's reply (code fences and text around it tolerated); ``ValueError`` otherwise."""
    match = re.search(r"\{.*\}", content, re.DOTALL)
    if match is None:
        raise ValueError("no JSON object in the answer")
    try:
        return LlmAnswer.model_validate(json.loads(match.group(0)))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"answer is not the JSON asked for: {str(exc).splitlines()[0]}") from exc


class LlmVoter:
    """One provider as a voter. ``ask`` returns the vote, or ``None`` when it abstains."""

    def __init__(self, provider: LlmProvider, http: httpx.AsyncClient, calls: LlmCallLog, budget: DailyBudget,
                 now: Callable[[], datetime], *, timeout_s: float = 8.0, max_tokens: int = 120,
                 cache_size: int = 2048) -> None:
        self.provider = provider
        self.name = provider.voter_name
        self.http = http
        self.calls = calls
        self.budget = budget
        self.now = now
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self._cache: OrderedDict[tuple[str, int], Vote] = OrderedDict()
        self._cache_size = cache_size

    async def ask(self, symbol: str, features: Features) -> Vote | None:
        candle_ms = features.entry.open_time
        key = (symbol, candle_ms)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if not await self.budget.allows(self.now()):
            log.info("%s: daily LLM budget of %s USD spent; abstaining on %s", self.name, self.budget.limit_usd,
                     symbol)
            return None
        call = await self._request(symbol, candle_ms, build_prompt(symbol, features))
        await self.budget.charge(call.cost_usd, call.time)
        try:
            await self.calls.record(call)
        except Exception:
            log.exception("%s: could not record the call on %s", self.name, symbol)
        if call.answer is None:
            log.warning("%s abstains on %s: %s %s", self.name, symbol, call.status.value, call.error)
            return None
        vote = call.answer.vote(self.name)
        self._cache[key] = vote
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vote

    async def _request(self, symbol: str, candle_ms: int, messages: list[dict[str, str]]) -> LlmCall:
        import httpx  # only when a provider is configured: settings validation and backtests never need it

        p = self.provider
        headers = {"Authorization": f"Bearer {p.api_key}"} if p.api_key else {}
        body = {"model": p.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens,
                "response_format": {"type": "json_object"}}
        started_at, started = self.now(), time.perf_counter()

        def finish(status: CallStatus, *, error: str = "", answer: LlmAnswer | None = None, prompt: int = 0,
                   completion: int = 0) -> LlmCall:
            return LlmCall(started_at, p.name, p.model, symbol, candle_ms, status,
                           (time.perf_counter() - started) * 1000, prompt, completion, p.cost(prompt, completion),
                           answer, error[:300])

        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.post(f"{p.base_url}/chat/completions", json=body, headers=headers,
                                                timeout=self.timeout_s)
        except TimeoutError:
            return finish(CallStatus.TIMEOUT, error=f"no answer within {self.timeout_s:g} s")
        except httpx.TimeoutException:
            return finish(CallStatus.TIMEOUT, error=f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return finish(CallStatus.TRANSPORT, error=type(exc).__name__)
        if response.status_code == 429:
            return finish(CallStatus.RATE_LIMITED, error=f"429, Retry-After {response.headers.get('Retry-After')}")
        if response.status_code >= 500:
            return finish(CallStatus.SERVER_ERROR, error=f"HTTP {response.status_code}")
        if response.status_code >= 300:
            return finish(CallStatus.HTTP_ERROR, error=f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
            usage = payload.get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return finish(CallStatus.MALFORMED, error=f"not a chat-completions answer ({type(exc).__name__})")
        try:
            answer = parse_answer(str(content))
        except ValueError as exc:
            return finish(CallStatus.MALFORMED, error=str(exc), prompt=prompt, completion=completion)
        return finish(CallStatus.OK, answer=answer, prompt=prompt, completion=completion)


class RecordedLlmVoter:
    """Backtests: the answer recorded live for this provider, symbol and candle, or abstention. Never calls."""

    def __init__(self, provider_name: str, calls: LlmCallLog) -> None:
        self.provider_name = provider_name
        self.name = f"llm:{provider_name}"
        self.calls = calls

    async def ask(self, symbol: str, features: Features) -> Vote | None:
        answer = await self.calls.answer_for(self.provider_name, symbol, features.entry.open_time)
        return answer.vote(self.name) if answer is not None else None


class AsksLlm(Protocol):
    name: str

    async def ask(self, symbol: str, features: Features) -> Vote | None: ...


@dataclass(frozen=True, slots=True)
class PanelAnswers:
    votes: dict[str, tuple[Vote, ...]]   # symbol → the votes that came back in time
    asked: int
    abstained: int
    timed_out: bool


class LlmPanel:
    """Asks every LLM voter about the top ``top_n`` candidates concurrently and returns by ``deadline_s``."""

    def __init__(self, voters: Sequence[AsksLlm], *, top_n: int = 3, deadline_s: float = 20.0) -> None:
        self.voters = tuple(voters)
        self.top_n = top_n
        self.deadline_s = deadline_s

    def __bool__(self) -> bool:
        return bool(self.voters)

    async def ask(self, candidates: Sequence[tuple[str, Features]]) -> PanelAnswers:
        chosen = list(candidates)[: self.top_n]
        jobs = {(voter.name, symbol): asyncio.ensure_future(voter.ask(symbol, features))
                for symbol, features in chosen for voter in self.voters}
        if not jobs:
            return PanelAnswers({}, 0, 0, False)
        done, pending = await asyncio.wait(jobs.values(), timeout=self.deadline_s)
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("LLM panel: %d of %d calls still running after %.0f s; they abstain", len(pending),
                        len(jobs), self.deadline_s)
        votes: dict[str, list[Vote]] = {}
        abstained = 0
        for (_, symbol), job in jobs.items():
            vote = None
            if job in done and not job.cancelled():
                if job.exception() is not None:
                    log.error("LLM voter failed on %s: %r", symbol, job.exception())
                else:
                    vote = job.result()
            if vote is None:
                abstained += 1
            else:
                votes.setdefault(symbol, []).append(vote)
        return PanelAnswers({s: tuple(v) for s, v in votes.items()}, len(jobs), abstained, bool(pending))

