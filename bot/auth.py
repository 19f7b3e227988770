"""Deny-by-default authorisation, checked on every update before any handler (invariant 6).

A ``TypeHandler`` in group -1 sees every update, including button presses (``CallbackQueryHandler`` takes
no filters). Updates from users outside ``TELEGRAM_ALLOWED_USER_IDS`` — or with no user at all (channel
posts) — are logged with the user id and stopped with ``ApplicationHandlerStop``: no handler runs, no
answer is sent, nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

log = logging.getLogger(__name__)

AUTH_GROUP = -1


class AuthGate:
    def __init__(self, allowed_user_ids: Iterable[int]) -> None:
        self.allowed = frozenset(allowed_user_ids)
        self.rejected = 0

    def allows(self, update: Update) -> bool:
        user = update.effective_user
        return user is not None and not user.is_bot and user.id in self.allowed

    async def check(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.allows(update):
            return
        self.rejected += 1
        user = update.effective_user
        kind = "button press" if update.callback_query else "message" if update.effective_message else "update"
        log.warning("ignored %s (update %d) from unauthorised Telegram user id %s", kind, update.update_id,
                    user.id if user else "none")
        raise ApplicationHandlerStop

    def handler(self) -> TypeHandler[Update, ContextTypes.DEFAULT_TYPE, None]:
        return TypeHandler(Update, self.check)
