"""The project's exchange error hierarchy. Adapters translate library errors into these at the boundary.

Every error carries an operator-readable ``reason`` (what happened and what to do) and, where Binance
gave one, its numeric ``code``.
"""

from __future__ import annotations

from datetime import datetime


class ExchangeError(Exception):
    """Base of every error raised by an ``Exchange`` implementation."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return self.reason if self.code is None else f"{self.reason} (Binance code {self.code})"


class TransientError(ExchangeError):
    """Worth retrying with capped backoff: timeouts, 5xx, throttling."""

    def __init__(self, reason: str, *, code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """HTTP 429: the request weight budget is used up; wait ``retry_after`` seconds."""


class IpBanned(ExchangeError):
    """HTTP 418: the IP is banned until ``until``. No call may be made before then."""

    def __init__(self, reason: str, *, until: datetime, code: int | None = None) -> None:
        super().__init__(reason, code=code)
        self.until = until


class TimestampOutOfSync(TransientError):
    """-1021: local clock and exchange clock disagree; resync the offset and retry once."""


class OrderStatusUnknown(ExchangeError):
    """The order may or may not have been accepted (timeout, dropped connection, 503 unknown error).

    The caller must query the order by its client id before doing anything else.
    """

    def __init__(self, reason: str, *, client_id: str, code: int | None = None) -> None:
        super().__init__(reason, code=code)
        self.client_id = client_id


class OrderNotFound(ExchangeError):
    """-2011/-2013: no order with that id exists (never sent, or already gone)."""


class OrderRejected(ExchangeError):
    """The exchange refused the order; retrying the same request will fail again."""


class InsufficientMargin(OrderRejected):
    """-2019: not enough margin for this order."""


class WouldTrigger(OrderRejected):
    """-2021/-4142: a stop or take-profit would trigger immediately at the current price."""


class PositionNotReady(OrderRejected):
    """-4509: a close-position stop sent before Binance has registered the position (moments after an
    entry). Worth retrying for a few seconds."""


class ProtectionExists(OrderRejected):
    """-4130: a close-position stop (or take-profit) already rests on that side of the symbol; Binance holds
    one per side. The resting one (Vigil's own, or the operator's) may be the position's protection."""


class MinNotionalError(OrderRejected):
    """-4164 or local check: order value is below the symbol's minimum notional."""


class FilterViolation(OrderRejected):
    """Price or quantity breaks a symbol filter (tick size, step size, min/max quantity)."""


class AuthenticationError(ExchangeError):
    """-2014/-2015/-1022: API key, IP allow-list or permissions rejected. The operator must fix the keys."""


class AccountConfigError(ExchangeError):
    """The account is set up in a way Vigil refuses to trade (hedge mode, multi-assets mode, no trading)."""


class UnknownSymbol(ExchangeError):
    """-1121 or local lookup: no such USD-M perpetual."""
