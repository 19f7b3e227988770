"""Request-weight bookkeeping for Binance USD-M futures.

Binance counts request weight per IP per minute (``REQUEST_WEIGHT`` 2400/min on futures) and reports the
running total in the ``X-MBX-USED-WEIGHT-1M`` response header. Going over gives HTTP 429; continuing after
429s gives an IP ban (418). ``WeightTracker`` keeps Vigil well below the limit: before each call it
reserves the call's weight and, when the minute's usage would pass ``budget_pct`` of the limit, waits for
the minute to roll over instead of sending. Time and sleeping are injected so tests never really wait.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from core.clock import Clock

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_WEIGHT_LIMIT = 2400
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Weight of each futures endpoint as Binance documents it. ``None`` symbol means "all symbols".
_FIXED_WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "ping"): 1,
    ("GET", "time"): 1,
    ("GET", "exchangeInfo"): 1,
    ("GET", "fundingRate"): 1,
    ("GET", "leverageBracket"): 1,
    ("GET", "accountConfig"): 5,
    ("GET", "symbolConfig"): 5,
    ("GET", "account"): 5,
    ("GET", "balance"): 5,
    ("GET", "positionRisk"): 5,
    ("POST", "leverage"): 1,
    ("POST", "marginType"): 1,
    ("POST", "order"): 0,
    ("GET", "order"): 1,
    ("DELETE", "order"): 1,
    ("POST", "algoOrder"): 0,
    ("GET", "algoOrder"): 1,
    ("DELETE", "algoOrder"): 1,
    ("DELETE", "algoOpenOrders"): 1,
    ("GET", "userTrades"): 5,
    ("GET", "allOrders"): 5,
    ("GET", "income"): 30,
}


def endpoint_weight(method: str, path: str, params: Mapping[str, object] | None = None) -> int:
    """Documented IP weight of ``method path`` (path without the ``/fapi/vN/`` prefix)."""
    params = params or {}
    has_symbol = params.get("symbol") is not None
    if path == "klines":
        return klines_weight(int(str(params.get("limit", 500))))
    if path == "ticker/24hr":
        return 1 if has_symbol else 40
    if path == "premiumIndex":
        return 1 if has_symbol else 10
    if path in ("openAlgoOrders", "openOrders"):
        return 1 if has_symbol else 40
    return _FIXED_WEIGHTS.get((method.upper(), path), 1)


def klines_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


class WeightTracker:
    """Tracks the IP weight used this minute and throttles before the budget is exceeded.

    ``used_weight`` is the exchange's own count (header) when known, else our estimate. ``scan_weight``
    sums the documented weights of calls since the last ``begin_scan()``.
    """

    def __init__(self, clock: Clock, sleep: Sleep, *, limit: int = DEFAULT_WEIGHT_LIMIT,
                 budget_pct: float = 40.0) -> None:
        if not 0 < budget_pct <= 100:
            raise ValueError(f"budget_pct must be in (0, 100], got {budget_pct}")
        self._clock = clock
        self._sleep = sleep
        self.limit = limit
        self.budget_pct = budget_pct
        self._minute = self._minute_of(clock.now())
        self._used = 0
        self._pending = 0
        self.scan_weight = 0
        self.scan_requests = 0
        self.throttle_waits = 0

    @property
    def budget(self) -> int:
        return max(1, int(self.limit * self.budget_pct / 100))

    @property
    def used_weight(self) -> int:
        self._roll()
        return self._used

    def begin_scan(self) -> None:
        """Reset the per-scan counters (call at the start of each scan)."""
        self.scan_weight = 0
        self.scan_requests = 0

    async def acquire(self, weight: int) -> None:
        """Reserve ``weight`` for one request, waiting for the next minute if the budget is spent."""
        while True:
            self._roll()
            projected = self._used + self._pending + weight
            if weight == 0 or projected <= self.budget or (self._used + self._pending) == 0:
                break
            delay = self._seconds_to_next_minute()
            self.throttle_waits += 1
            log.warning("request weight %d/%d of the %d budget this minute; pausing %.1fs for the next minute",
                        self._used + self._pending, self.limit, self.budget, delay)
            await self._sleep(delay)
        self._pending += weight
        self.scan_weight += weight
        self.scan_requests += 1

    def release(self, weight: int, headers: Mapping[str, str] | None) -> None:
        """Settle a reservation: adopt the exchange's count when the response carried one."""
        self._roll()
        self._pending = max(0, self._pending - weight)
        reported = _header_int(headers)
        if reported is not None:
            self._used = max(self._used, reported)
        else:
            self._used += weight

    def _roll(self) -> None:
        minute = self._minute_of(self._clock.now())
        if minute != self._minute:
            self._minute = minute
            self._used = 0

    def _seconds_to_next_minute(self) -> float:
        now = self._clock.now()
        return max(0.05, 60.0 - (now.second + now.microsecond / 1_000_000))

    @staticmethod
    def _minute_of(when: datetime) -> int:
        return int(when.timestamp() // 60)


class RequestWindow:
    """At most ``budget_pct`` of ``limit`` requests in any ``window_seconds`` (a sliding window).

    For endpoints with a request count limit of their own besides weight, e.g. ``GET /fapi/v1/fundingRate``,
    which shares 500 requests per 5 minutes per IP with ``fundingInfo``. A sliding window keeps under the
    exchange's fixed windows wherever their boundaries fall.
    """

    def __init__(self, clock: Clock, sleep: Sleep, *, limit: int, window_seconds: float,
                 budget_pct: float = 40.0) -> None:
        self._clock = clock
        self._sleep = sleep
        self.budget = max(1, int(limit * budget_pct / 100))
        self.window_seconds = window_seconds
        self._sent: deque[float] = deque()
        self.waits = 0

    async def acquire(self) -> None:
        while True:
            now = self._clock.now().timestamp()
            while self._sent and self._sent[0] <= now - self.window_seconds:
                self._sent.popleft()
            if len(self._sent) < self.budget:
                self._sent.append(now)
                return
            delay = max(0.05, self._sent[0] + self.window_seconds - now)
            self.waits += 1
            log.info("%d requests in the last %.0fs (budget %d); pausing %.1fs", len(self._sent),
                     self.window_seconds, self.budget, delay)
            await self._sleep(delay)


def _header_int(headers: Mapping[str, str] | None) -> int | None:
    if not headers:
        return None
    raw = headers.get(WEIGHT_HEADER) or headers.get(WEIGHT_HEADER.lower())
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
