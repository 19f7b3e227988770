"""Translate python-binance / aiohttp failures into the ``engine.exchange.errors`` hierarchy.

Every reason says what happened and what the operator (or the trader) should do about it. Nothing here
ever includes request URLs, headers or bodies (they carry the API key header and the signature).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

import aiohttp
from binance.exceptions import BinanceAPIException, BinanceRequestException

from engine.exchange.errors import (
    AccountConfigError,
    AuthenticationError,
    ExchangeError,
    FilterViolation,
    InsufficientMargin,
    IpBanned,
    MinNotionalError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    PositionNotReady,
    ProtectionExists,
    RateLimited,
    TimestampOutOfSync,
    TransientError,
    UnknownSymbol,
    WouldTrigger,
)

DEFAULT_BAN_SECONDS = 120.0
_BAN_UNTIL = re.compile(r"banned until (\d{12,14})")

# Codes whose outcome on an order is unknown: the request may have reached the matching engine.
_UNKNOWN_OUTCOME_CODES = {-1000, -1001, -1006, -1007}
_AUTH_CODES = {-1002, -2014, -2015, -1022}
_NOT_FOUND_CODES = {-2011, -2013}
_WOULD_TRIGGER_CODES = {-2021, -4142}
_MARGIN_CODES = {-2019, -2028}
_FILTER_CODES = {-1111, -1013, -4003, -4005, -4014, -4023, -4024, -4025}
_HEDGE_CODES = {-4061}


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` in seconds, if the response had a usable one."""
    if not headers:
        return None
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def api_error(exc: BinanceAPIException, *, op: str, now: datetime, order_client_id: str | None = None,
              server_now_ms: int | None = None) -> ExchangeError:
    """Map one ``BinanceAPIException`` raised during ``op``.

    ``order_client_id`` is set when ``op`` placed an order: then a failure whose outcome cannot be known
    becomes ``OrderStatusUnknown`` instead of a retryable error.
    """
    status = int(getattr(exc, "status_code", 0) or 0)
    code = int(exc.code) if isinstance(exc.code, int) and exc.code else None
    msg = _clean(exc.message)
    headers = _headers_of(exc)
    retry_after = retry_after_seconds(headers)
    if status == 418:
        until = _ban_until(msg, retry_after, now, server_now_ms)
        return IpBanned(f"{op}: Binance has banned this IP until {until:%Y-%m-%d %H:%M:%S} UTC for sending "
                        f"too many requests; Vigil makes no calls until then", until=until, code=code)
    if status == 429 or code == -1003:
        wait = retry_after if retry_after is not None else 60.0
        return RateLimited(f"{op}: Binance rate limit reached (HTTP {status or 429}); waiting {wait:.0f}s "
                           f"before the next call", code=code, retry_after=wait)
    if code == -1021:
        return TimestampOutOfSync(f"{op}: request timestamp outside Binance's receive window; the clock "
                                  f"offset is resynced and the call retried once ({msg})", code=code)
    if code == -1008:
        return TransientError(f"{op}: Binance is throttling requests under load (-1008); retry shortly",
                              code=code, retry_after=retry_after)
    if status >= 500 or status == 408 or code in _UNKNOWN_OUTCOME_CODES:
        return _server_error(op, status, code, msg, order_client_id, retry_after)
    return _client_error(op, status, code, msg, order_client_id)


def network_error(exc: BaseException, *, op: str, order_client_id: str | None = None) -> ExchangeError:
    """Map a timeout, a dropped connection or an unreadable answer."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        what = "timed out waiting for Binance"
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        what = "connection to Binance dropped before the answer arrived"
    elif isinstance(exc, BinanceRequestException):
        what = "Binance answered with something that is not JSON"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        what = "could not connect to Binance"
    else:
        what = f"network error talking to Binance ({type(exc).__name__})"
    if order_client_id is not None and not isinstance(exc, aiohttp.ClientConnectorError):
        return OrderStatusUnknown(f"{op}: {what}; the order {order_client_id} may or may not have been "
                                  f"accepted - query it by client id before anything else",
                                  client_id=order_client_id)
    return TransientError(f"{op}: {what}; retry later")


def _server_error(op: str, status: int, code: int | None, msg: str, order_client_id: str | None,
                  retry_after: float | None) -> ExchangeError:
    certain_failure = status == 503 and "service unavailable" in msg.lower()
    said = f"HTTP {status} '{msg}'" if msg else f"HTTP {status} (no readable body)"
    if order_client_id is not None and not certain_failure:
        return OrderStatusUnknown(
            f"{op}: Binance answered {said}; the order {order_client_id} may or may not have been accepted - "
            f"query it by client id before anything else", client_id=order_client_id, code=code)
    return TransientError(f"{op}: Binance server error {said}; retry later", code=code, retry_after=retry_after)


def _client_error(op: str, status: int, code: int | None, msg: str,
                  order_client_id: str | None) -> ExchangeError:
    tail = f"({msg})" if msg else f"(HTTP {status})"
    if code in _AUTH_CODES or (status in (401, 403) and code is None):
        return AuthenticationError(f"{op}: Binance rejected the API key, its IP allow-list or its permissions "
                                   f"{tail}; check the key, enable futures trading and the server IP",
                                   code=code)
    if code in _NOT_FOUND_CODES:
        return OrderNotFound(f"{op}: no such order on Binance {tail}", code=code)
    if code in _MARGIN_CODES:
        return InsufficientMargin(f"{op}: not enough margin for this order {tail}", code=code)
    if code in _WOULD_TRIGGER_CODES:
        return WouldTrigger(f"{op}: the trigger price is already crossed, the order would trigger "
                            f"immediately {tail}", code=code)
    if code == -4509:
        return PositionNotReady(f"{op}: Binance has not registered the position yet; retry in a moment {tail}",
                                code=code)
    if code == -4118:
        return OrderRejected(f"{op}: reduce-only order failed Binance's margin check (usually another reduce-only "
                             f"order already covers the position) {tail}", code=code)
    if code == -4130:
        return ProtectionExists(f"{op}: a close-position order of this kind already rests on this side of the "
                                f"symbol (Binance holds one per side) {tail}", code=code)
    if code == -4164:
        return MinNotionalError(f"{op}: order value below the symbol's minimum notional {tail}", code=code)
    if code in _FILTER_CODES:
        return FilterViolation(f"{op}: price or quantity breaks the symbol filters {tail}", code=code)
    if code == -1121:
        return UnknownSymbol(f"{op}: Binance does not know this symbol {tail}", code=code)
    if code in _HEDGE_CODES:
        return AccountConfigError(f"{op}: the account is in Hedge mode; Vigil trades One-way mode only - switch "
                                  f"the position mode in Binance {tail}", code=code)
    if code == -4116:
        return OrderRejected(f"{op}: client order id already used - query the order by that id instead of "
                             f"sending it again {tail}", code=code)
    if order_client_id is not None or 400 <= status < 500:
        return OrderRejected(f"{op}: Binance refused the request {tail}", code=code)
    return ExchangeError(f"{op}: unexpected Binance error HTTP {status} {tail}", code=code)


def _ban_until(msg: str, retry_after: float | None, now: datetime, server_now_ms: int | None) -> datetime:
    if retry_after is not None:
        return now + timedelta(seconds=retry_after)
    match = _BAN_UNTIL.search(msg)
    if match and server_now_ms is not None:
        return now + timedelta(milliseconds=max(0, int(match.group(1)) - server_now_ms))
    return now + timedelta(seconds=DEFAULT_BAN_SECONDS)


def _headers_of(exc: BinanceAPIException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def _clean(message: object) -> str:
    """python-binance puts a bound-method repr in ``message`` for non-JSON bodies; hide that."""
    text = str(message or "")
    return "" if text.startswith("Invalid JSON error message") else text[:300]
