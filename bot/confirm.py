"""Inline-button confirmations for dangerous commands (invariant 6).

A confirmation is a database row holding the exact action (name + arguments) and who asked. The
buttons carry only a random token (``c:<token>`` confirm, ``x:<token>`` cancel), so what runs is what was
shown, never something rebuilt from the button. A confirmation is:
- single-use: claimed with one conditional UPDATE, so a replayed or double-pressed button does nothing;
- bound to the user who asked, the chat and the message carrying the buttons;
- valid for ``ttl`` (60 s) on the engine clock;
- persistent: a press after a restart still finds it (and is refused cleanly once expired).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.reply import Reply
from storage.notifications import Confirmation, ConfirmationRepository

log = logging.getLogger(__name__)

CONFIRM_PREFIX = "c:"
CANCEL_PREFIX = "x:"
CALLBACK_PATTERN = r"^[cx]:[A-Za-z0-9_-]{8,40}$"


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    USED = "already used"
    UNKNOWN = "unknown"
    NOT_YOURS = "not yours"


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    args: dict[str, str]


@dataclass(frozen=True, slots=True)
class Resolution:
    verdict: Verdict
    confirmation: Confirmation | None = None

    @property
    def action(self) -> Action | None:
        c = self.confirmation
        return None if c is None or self.verdict is not Verdict.CONFIRMED else Action(c.action, c.args)


class Confirmations:
    def __init__(self, repo: ConfirmationRepository, now: Callable[[], datetime],
                 ttl: timedelta = timedelta(seconds=60)) -> None:
        self.repo = repo
        self.now = now
        self.ttl = ttl

    async def ask(self, *, user_id: int, chat_id: int, action: Action, question: str) -> Reply:
        """Store the pending action and return the question with Confirm / Cancel buttons."""
        now = self.now()
        await self.repo.prune(now - timedelta(days=1))
        token = secrets.token_urlsafe(12)
        await self.repo.create(token=token, user_id=user_id, chat_id=chat_id, action=action.name,
                               args=action.args, summary=question, now=now, ttl=self.ttl)
        seconds = int(self.ttl.total_seconds())
        return Reply(f"{question}\n<i>Confirm within {seconds} s.</i>",
                     buttons=(("✅ Confirm", CONFIRM_PREFIX + token), ("✖️ Cancel", CANCEL_PREFIX + token)),
                     confirmation=token)

    async def attach(self, token: str, message_id: int) -> None:
        await self.repo.attach_message(token, message_id)

    async def resolve(self, data: str, *, user_id: int, chat_id: int | None, message_id: int | None
                      ) -> Resolution:
        """Decide a button press. Only ``CONFIRMED`` carries an action; it can be returned once."""
        confirm = data.startswith(CONFIRM_PREFIX)
        token = data[2:]
        found = await self.repo.get(token)
        if found is None:
            return Resolution(Verdict.UNKNOWN)
        if (found.user_id != user_id or found.chat_id != chat_id
                or (found.message_id is not None and found.message_id != message_id)):
            log.warning("confirmation %s… pressed by user %s in chat %s; it belongs to user %s",
                        token[:4], user_id, chat_id, found.user_id)
            return Resolution(Verdict.NOT_YOURS, found)
        if found.used_at is not None:
            return Resolution(Verdict.USED, found)
        now = self.now()
        if not confirm:
            verdict = Verdict.CANCELLED
        elif now >= found.expires_at:
            verdict = Verdict.EXPIRED
        else:
            verdict = Verdict.CONFIRMED
        if not await self.repo.claim(token, verdict.value, now):
            return Resolution(Verdict.USED, found)
        return Resolution(verdict, found)

    async def record_outcome(self, token: str, outcome: str) -> None:
        await self.repo.set_outcome(token, outcome)
