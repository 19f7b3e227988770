"""Deny-by-default authorisation, checked on every update before any handler (invariant 6).

A ``TypeHandler`` in group -1 sees every update, including button presses (``CallbackQueryHandler`` takes
no filters). Updates from users outside ``TELEGRAM_ALLOWED_USER_IDS`` — or with no user at all (channel
posts) — are logged with the user id and stopped with ``ApplicationHandlerStop``: no handler runs, no
answer is sent, nothing changes. A stranger's ``/start`` is logged with the line an operator looks for when
setting the bot up ("Telegram user id N sent /start ..."), so the log tells them their own id.

Every allowed update is reported to ``on_contact(chat_id)``: Telegram lets a bot write to a private chat only
after its user wrote first, so the notifier learns there that queued messages can go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

log = logging.getLogger(__name__)

AUTH_GROUP = -1
MAX_LOGGED_STRANGERS = 1000


class AuthGate:
    def __init__(self, allowed_user_ids: Iterable[int], on_contact: Callable[[int], None] | None = None) -> None:
        self.allowed = frozenset(allowed_user_ids)
        self.on_contact = on_contact
        self.rejected = 0
        self._greeted_strangers: set[int] = set()  # whose /start was logged (once each: a spammer floods nothing)

    def allows(self, update: Update) -> bool:
        user = update.effective_user
        return user is not None and not user.is_bot and user.id in self.allowed

    async def check(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.allows(update):
            chat = update.effective_chat
            if self.on_contact is not None and chat is not None:
                self.on_contact(chat.id)
            return
        self.rejected += 1
        user = update.effective_user
        message = update.effective_message
        if user is not None and message is not None and _command(message.text) == "/start":
            if user.id in self._greeted_strangers or len(self._greeted_strangers) >= MAX_LOGGED_STRANGERS:
                raise ApplicationHandlerStop
            self._greeted_strangers.add(user.id)
            log.warning("Telegram user id %d sent /start but is not allowed: to let this user command the bot, add %d "
                        "to TELEGRAM_ALLOWED_USER_IDS and restart", user.id, user.id,
                        extra={"telegram_user_id": user.id})
            raise ApplicationHandlerStop
        kind = "button press" if update.callback_query else "message" if update.effective_message else "update"
        log.warning("ignored %s (update %d) from unauthorised Telegram user id %s", kind, update.update_id,
                    user.id if user else "none", extra={"telegram_user_id": user.id if user else None})
        raise ApplicationHandlerStop

    def handler(self) -> TypeHandler[Update, ContextTypes.DEFAULT_TYPE, None]:
        return TypeHandler(Update, self.check)


def _command(text: str | None) -> str:
    """``"/start@vigil_bot payload"`` → ``"/start"``."""
    words = (text or "").split()
    return words[0].split("@")[0].lower() if words else ""
