"""``FakeTelegram``: a local Telegram Bot API server for tests (aiohttp on 127.0.0.1).

The real ``telegram.ext.Application`` talks to it through ``base_url`` = ``FakeTelegram.base_url``. It
serves getMe, deleteWebhook, getUpdates (long polling over updates the test queued with ``push_command``
/ ``push_text`` / ``press``), setMyCommands, sendMessage, sendPhoto, editMessageText and
answerCallbackQuery, and records every call (parameters arrive as form fields; JSON-valued ones such as
``reply_markup`` are decoded). Fault switches: ``flood(n, retry_after)`` answers the next ``n`` send calls
with HTTP 429 + ``parameters.retry_after``; ``go_down("refuse")`` stops listening and drops requests on
open connections, ``go_down("502")`` answers 502 Bad Gateway; ``go_up()`` restores service;
``reject_html_containing`` answers 400 "can't parse entities" to HTML texts containing a marker.

Like Telegram, a bot cannot write first: a send to a private chat whose user has never written to the bot
(``push_text``/``press``, or ``opened_chats`` set by the test for "the operator started the bot earlier")
gets 403 "Forbidden: bot can't initiate conversation with a user". An edit that changes nothing gets 400
"message is not modified", as Telegram answers a refresh that finds the same text.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

TOKEN = "123456:TEST-token-not-a-secret"
BOT_USER = {"id": 999000, "is_bot": True, "first_name": "Vigil", "username": "vigil_test_bot",
            "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "editMessageText", "answerCallbackQuery"})
CHAT_METHODS = frozenset({"sendMessage", "sendPhoto"})  # refused until the user has written to the bot
CANNOT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message")
JSON_FIELDS = frozenset({"reply_markup", "commands", "allowed_updates", "entities", "link_preview_options",
                         "reply_parameters", "scope"})


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    time: float
    ok: bool = True
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return None if value is None else int(value)

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    def flag(self, name: str) -> bool:
        """A boolean parameter (PTB sends JSON ``true``/``false`` as form values)."""
        return str(self.params.get(name, "")).lower() == "true"

    @property
    def quoted(self) -> int | None:
        """The message id this call replies to (``reply_parameters``), if any."""
        value = (self.params.get("reply_parameters") or {}).get("message_id")
        return None if value is None else int(value)

    @property
    def buttons(self) -> list[tuple[str, str]]:
        markup = self.params.get("reply_markup") or {}
        return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], SentMessage] = {}
        self.button_owner: dict[str, tuple[int, int]] = {}  # callback data → the message that carried it
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._next_query_id = 1
        self.confirmed_offset = 0  # every update below this id has been fetched and acknowledged
        self._new_update = asyncio.Event()
        self._flood_left = 0
        self._flood_retry_after = 1
        self.down: Literal["", "refuse", "502"] = ""
        self.reject_html_containing: str | None = None  # answer 400 "can't parse entities" to such HTML texts
        self.refused_requests = 0
        self.opened_chats: set[int] = set()  # private chats whose user has written to the bot
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self.port = _free_port()
        await self._listen()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # ------------------------------------------------------------------ faults
    def flood(self, times: int, retry_after: int = 1) -> None:
        """The next ``times`` send calls get HTTP 429 with ``parameters.retry_after``."""
        self._flood_left, self._flood_retry_after = times, retry_after

    async def go_down(self, mode: Literal["refuse", "502"] = "refuse") -> None:
        self.down = mode
        self._new_update.set()  # release a long poll in progress
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None

    async def go_up(self) -> None:
        if self.down == "refuse":
            await self._listen()
        self.down = ""

    # ------------------------------------------------------------------ feeding updates
    def push_text(self, user_id: int, text: str, *, chat_id: int | None = None, date: int | None = None) -> int:
        """Queue a text message from ``user_id``; returns its message id (replies quote it)."""
        entities = []
        if text.startswith("/"):
            command = text.split()[0]
            entities = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message = {"message_id": self._message_id(), "date": int(date if date is not None else time.time()),
                   "chat": _chat(chat_id if chat_id is not None else user_id), "from": _user(user_id),
                   "text": text}
        if entities:
            message["entities"] = entities
        self.opened_chats.add(user_id)
        self._push({"message": message})
        return int(message["message_id"])

    push_command = push_text

    def press(self, user_id: int, message: SentMessage, data: str) -> int:
        """A button press (callback query) by ``user_id`` on a message the bot sent."""
        self.opened_chats.add(user_id)
        query_id = str(self._next_query_id)
        self._next_query_id += 1
        body = {"message_id": message.message_id, "date": int(time.time()), "chat": _chat(message.chat_id),
                "from": BOT_USER, "text": message.text}
        if message.reply_markup:
            body["reply_markup"] = message.reply_markup
        return self._push({"callback_query": {"id": query_id, "from": _user(user_id), "chat_instance": "ci",
                                              "data": data, "message": body}})

    def _push(self, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **payload})
        self._new_update.set()
        return update_id

    # ------------------------------------------------------------------ inspection
    def sent(self, method: str | None = None, chat_id: int | None = None) -> list[Call]:
        return [c for c in self.calls if c.ok and (method is None or c.method == method)
                and (chat_id is None or c.chat_id == chat_id)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        """Texts the bot delivered (messages, photo captions and edits), in order."""
        return [c.text for c in self.sent(chat_id=chat_id)
                if c.method in ("sendMessage", "sendPhoto", "editMessageText")]

    def message_with_button(self, data: str) -> SentMessage | None:
        """The message that was sent with a button carrying ``data`` (even if an edit removed it since)."""
        key = self.button_owner.get(data)
        return None if key is None else self.messages[key]

    def last_message_with_buttons(self, chat_id: int) -> SentMessage:
        found = [m for (chat, _), m in self.messages.items() if chat == chat_id and m.reply_markup]
        if not found:
            raise AssertionError(f"no message with buttons in chat {chat_id}")
        return max(found, key=lambda m: m.message_id)

    # ------------------------------------------------------------------ the API
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.down == "refuse":
            self.refused_requests += 1
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = Call(method, params, time.monotonic(), files=files)
        self.calls.append(call)
        if self.down == "502":
            call.ok = False
            return _error(502, "Bad Gateway")
        if request.match_info["token"] != self.token:
            call.ok = False
            return _error(401, "Unauthorized")
        if method in SEND_METHODS and self._flood_left > 0:
            self._flood_left -= 1
            call.ok = False
            return _error(429, f"Too Many Requests: retry after {self._flood_retry_after}",
                          {"retry_after": self._flood_retry_after})
        if method in CHAT_METHODS and not self._may_write(params.get("chat_id")):
            call.ok = False
            return _error(403, CANNOT_INITIATE)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            call.ok = False
            return _error(404, "Not Found: method not found")
        result = await handler(params)
        if isinstance(result, web.Response):
            call.ok = False
            return result
        return web.json_response({"ok": True, "result": result})

    def _may_write(self, chat_id: Any) -> bool:
        """Groups (negative ids) are open to the bot once it is a member; private chats once the user wrote."""
        return chat_id is None or int(chat_id) < 0 or int(chat_id) in self.opened_chats

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._updates.clear()
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self.confirmed_offset = max(self.confirmed_offset, offset)
        wait = float(params.get("timeout") or 0)
        if not self._updates and wait > 0 and not self.down:
            self._new_update.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._new_update.wait()
            except TimeoutError:
                pass
        if self.down:
            return _error(502, "Bad Gateway")
        limit = int(params.get("limit") or 100)
        return self._updates[:limit]

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        marker = self.reject_html_containing
        if marker and params.get("parse_mode") == "HTML" and marker in str(params.get("text", "")):
            return _error(400, "Bad Request: can't parse entities: unsupported start tag")
        return self._store_message(int(params["chat_id"]), str(params.get("text", "")), params.get("reply_markup"))

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        message = self._store_message(int(params["chat_id"]), str(params.get("caption", "")), None)
        message["photo"] = [{"file_id": "photo1", "file_unique_id": "u1", "width": 800, "height": 500}]
        message.pop("text", None)
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            return _error(400, "Bad Request: message to edit not found")
        message = self.messages[key]
        if message.text == str(params.get("text", "")) and message.reply_markup == params.get("reply_markup"):
            return _error(400, NOT_MODIFIED)
        message.text, message.reply_markup = str(params.get("text", "")), params.get("reply_markup")
        return self._message_json(message)

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    def _store_message(self, chat_id: int, text: str, markup: dict[str, Any] | None) -> dict[str, Any]:
        message = SentMessage(chat_id, self._message_id(), text, markup)
        self.messages[(chat_id, message.message_id)] = message
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                self.button_owner[button.get("callback_data", "")] = (chat_id, message.message_id)
        return self._message_json(message)

    def _message_json(self, message: SentMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"message_id": message.message_id, "date": int(time.time()),
                                "chat": _chat(message.chat_id), "from": BOT_USER, "text": message.text}
        if message.reply_markup:
            body["reply_markup"] = message.reply_markup
        return body

    def _message_id(self) -> int:
        self._next_message_id += 1
        return self._next_message_id


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        params = dict(await request.json())
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = value
    params.update(request.query)
    for key in JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            params[key] = json.loads(params[key])
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
            files[key] = files[value[9:]]
    return params, files


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}


def _chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": f"user{chat_id}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
