"""``FakeLlm``: a local OpenAI-compatible chat-completions server (aiohttp on 127.0.0.1) for the LLM voter tests.

It speaks the wire protocol of ``POST /v1/chat/completions`` as OpenAI, DeepSeek, OpenRouter, llama.cpp and vLLM
do: a Bearer key (401 with an OpenAI-style error body when it is wrong), ``model`` and ``messages`` required (400
otherwise), an answer with ``choices[0].message.content`` and ``usage`` token counts. Behaviours are queued with
``then(...)`` and consumed one per request; when the queue is empty the default answer is served:

- ``Reply(content, prompt_tokens, completion_tokens)``: a normal answer (any content, valid or not);
- ``Status(code, retry_after)``: an error status with an OpenAI-style body (429 carries ``Retry-After``);
- ``Hang()``: never answers until the server stops (the client must time out on its own).
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

API_KEY = "sk-test-not-a-secret"


@dataclass(frozen=True)
class Reply:
    content: str
    prompt_tokens: int = 300
    completion_tokens: int = 40


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: int | None = None


@dataclass(frozen=True)
class Hang:
    pass


Behaviour = Reply | Status | Hang


def answer_json(side: str = "LONG", confidence: float = 0.7, reason: str = "trend up on 1h and 4h") -> str:
    return json.dumps({"side": side, "confidence": confidence, "reason": reason})


class FakeLlm:
    def __init__(self, api_key: str | None = API_KEY, model: str = "fake-chat") -> None:
        self.api_key = api_key
        self.model = model
        self.default: Behaviour = Reply(answer_json())
        self.requests: list[dict[str, Any]] = []
        self._queue: list[Behaviour] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def then(self, *behaviours: Behaviour) -> FakeLlm:
        self._queue.extend(behaviours)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeLlm:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeLlm:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid JSON body", "invalid_request_error")
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        if body.get("model") != self.model:
            return _error(404, f"The model `{body.get('model')}` does not exist", "invalid_request_error",
                          "model_not_found")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "'messages' is a required property", "invalid_request_error")
        behaviour = self._queue.pop(0) if self._queue else self.default
        if isinstance(behaviour, Hang):
            await self._stopping.wait()
            return _error(503, "shutting down", "server_error")
        if isinstance(behaviour, Status):
            headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after is not None else {}
            kind = "rate_limit_exceeded" if behaviour.code == 429 else "server_error"
            return _error(behaviour.code, f"fake status {behaviour.code}", kind, headers=headers)
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 1_700_000_000,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": behaviour.content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": behaviour.prompt_tokens, "completion_tokens": behaviour.completion_tokens,
                      "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens},
        })


def _error(status: int, message: str, kind: str, code: str | None = None, *,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}},
                             status=status, headers=headers)
