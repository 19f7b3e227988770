"""What every handler needs: the façade, confirmations, the notifier and the bot's options."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bot.charts import render_equity_chart
from bot.confirm import Confirmations
from bot.notifier import DeliveryOptions, Notifier, parse_levels
from bot.summary import parse_utc_time
from engine.service import EngineService
from settings import Settings
from storage.records import EquityPoint

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class BotOptions:
    """Tunables; production values by default, tests shorten the waits."""

    chat_ids: tuple[int, ...] = ()                 # where notifications go (default: the allowed users)
    base_url: str | None = None                    # Bot API base ending in /bot (None: api.telegram.org)
    poll_timeout: float = 10.0                     # getUpdates long-poll seconds
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    confirm_ttl: timedelta = timedelta(seconds=60)
    stale_after: timedelta = timedelta(minutes=10)  # commands older than this (sent while offline) are ignored
    connect_retry_max: float = 60.0                # backoff cap while Telegram is unreachable at start
    stop_flush_seconds: float = 3.0                # how long stop() waits for the queue to drain
    daily_summary_at: time | None = time(0, 0)      # UTC; None disables the daily summary
    notify_levels: dict[str, str] = field(default_factory=lambda: parse_levels(""))
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    concurrent_updates: int = 8                    # updates handled at once (a slow command does not block)
    log_file: Path | None = None                   # what /logs reads (None: /logs says there is no log file)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BotOptions:
        """Read the bot's settings, with defaults for those not (yet) declared in ``Settings``."""
        values: dict[str, Any] = {
            "chat_ids": tuple(settings.telegram_allowed_user_ids),
            "base_url": bot_api_base(settings.telegram_api_base_url),
            "daily_summary_at": _summary_time(getattr(settings, "notify_daily_summary_utc", "00:00")),
            "notify_levels": _levels(getattr(settings, "notify_levels", "")),
            "log_file": getattr(settings, "log_file", None),
        }
        values.update(overrides)
        return cls(**values)


def _summary_time(value: object) -> time | None:
    if isinstance(value, time):
        return value
    try:
        return parse_utc_time(str(value or ""))
    except ValueError as exc:  # a notification setting must not stop the trader: say so and use the default
        log.error("%s; using 00:00", exc)
        return time(0, 0)


def _levels(value: object) -> dict[str, str]:
    spec = value if isinstance(value, str) else ",".join(f"{k}={v}" for k, v in dict(value or {}).items())
    try:
        return parse_levels(spec)
    except ValueError as exc:
        log.error("%s; using the default levels", exc)
        return parse_levels("")


def bot_api_base(url: str | None) -> str | None:
    """``TELEGRAM_API_BASE_URL`` → PTB's ``base_url`` (``…/bot``; the token is appended by PTB)."""
    if not url:
        return None
    url = url.rstrip("/")
    return url if url.endswith("/bot") else f"{url}/bot"


ChartRenderer = Callable[[Sequence[EquityPoint], str], bytes]


@dataclass(slots=True)
class BotContext:
    service: EngineService
    confirmations: Confirmations
    notifier: Notifier
    options: BotOptions
    allowed_user_ids: frozenset[int]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    render_chart: ChartRenderer = render_equity_chart  # runs in a worker thread, never on the loop
