"""What a command handler returns, and how it says "bad arguments"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class UsageError(Exception):
    """Bad or missing arguments; ``str(exc)`` is the short usage line shown to the operator."""


@dataclass(frozen=True, slots=True)
class Call:
    """One command invocation by an (already authorised) user."""

    user_id: int
    chat_id: int
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (label, callback_data)
    photo: bytes | None = None
    confirmation: str | None = None  # token whose message id must be recorded once sent
    per_row: int = 0                 # buttons per row (0: all in one row)


def int_arg(args: Sequence[str], index: int, *, default: int, low: int, high: int, usage: str) -> int:
    """An optional integer argument in [low, high]; anything else raises ``UsageError(usage)``."""
    if len(args) <= index:
        return default
    raw = args[index]
    if not raw.isdigit():
        raise UsageError(usage)
    value = int(raw)
    if not low <= value <= high:
        raise UsageError(usage)
    return value


def no_more_args(args: Sequence[str], allowed: int, usage: str) -> None:
    if len(args) > allowed:
        raise UsageError(usage)
