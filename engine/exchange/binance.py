"""``BinanceFutures``: the live ``Exchange`` over python-binance's ``AsyncClient`` (USD-M futures only).

- The client is built inside async code (``await BinanceFutures.connect(...)`` or ``await bf.open()``);
  ``AsyncClient.create()`` is not used because it pings the *spot* API. The clock offset comes from
  ``GET /fapi/v1/time``.
- Without keys the adapter serves public market data only (paper mode uses it for real prices); private
  calls raise ``AuthenticationError`` before touching the network.
- Every library failure is translated by ``binance_errors`` at this boundary. Only idempotent reads are
  retried automatically (capped exponential backoff, honouring ``Retry-After``); orders never are. A
  timeout, dropped connection or "unknown" 5xx on an order raises ``OrderStatusUnknown``: query the order
  by its client id before anything else. A 418 ban blocks every call until it ends, without network.
- Request weight is tracked from ``X-MBX-USED-WEIGHT-1M``; calls pause for the next minute rather than
  exceed the configured share of the limit.
- Conditional (stop-loss / take-profit) orders go to the Algo Order API (``POST /fapi/v1/algoOrder``,
  ``algoType=CONDITIONAL``, ``triggerPrice``, ``closePosition=true``, ``workingType=MARK_PRICE``,
  ``clientAlgoId``); their exchange id is the ``algoId``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from core.clock import Clock, SystemClock, from_ms, to_ms
from engine.exchange import binance_errors
from engine.exchange.errors import (
    AuthenticationError,
    ExchangeError,
    IpBanned,
    OrderNotFound,
    RateLimited,
    TimestampOutOfSync,
    TransientError,
)
from engine.exchange.rules import parse_brackets, parse_symbol_rules
from engine.exchange.types import (
    AccountConfig,
    Balance,
    Fill,
    FundingPayment,
    FundingRate,
    KlineBatch,
    LeverageBracket,
    MarginType,
    MarkPrice,
    OrderResult,
    OrderStatus,
    Position,
    PositionSide,
    ProtectiveKind,
    ProtectiveOrder,
    ProtectiveStatus,
    Side,
    SymbolRules,
    Ticker24h,
)
from engine.exchange.weight import Sleep, WeightTracker, endpoint_weight

if TYPE_CHECKING:
    from pydantic import SecretStr

log = logging.getLogger(__name__)

Env = Literal["live", "testnet", "demo"]

# Binance accepts ``[.A-Z:/a-z0-9_-]{1,36}``, but python-binance signs the raw value while aiohttp sends
# the POST body percent-encoded, so ':' and '/' would make the signature disagree with the body.
CLIENT_ID_PATTERN = re.compile(r"^[.A-Za-z0-9_-]{1,36}$")

KLINES_MAX = 1500
PAGE_MAX = 1000
TRADES_WINDOW = timedelta(days=7)
RULES_MAX_AGE = timedelta(days=1)
RULES_STALE_CODES = {-4014, -1111, -4164}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Automatic retries of idempotent reads."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 90.0  # longest Retry-After / cooldown waited inside one call before giving up


class BinanceFutures:
    """The live USD-M futures adapter. Build with ``await BinanceFutures.connect(...)``."""

    def __init__(self, api_key: str | SecretStr | None = None, api_secret: str | SecretStr | None = None, *,
                 env: Env = "live", base_url: str | None = None, clock: Clock | None = None,
                 sleep: Sleep | None = None, request_timeout: float = 10.0, recv_window: int = 5000,
                 weight_budget_pct: float = 40.0, retry: RetryPolicy | None = None) -> None:
        if env not in ("live", "testnet", "demo"):
            raise ValueError(f"env must be live, testnet or demo, got {env!r}")
        self._api_key = _secret(api_key)
        self._api_secret = _secret(api_secret)
        self.env: Env = env
        self.base_url = base_url.rstrip("/") if base_url else None
        self._clock: Clock = clock or SystemClock()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._request_timeout = request_timeout
        self._recv_window = recv_window
        self._retry = retry or RetryPolicy()
        self.weight = WeightTracker(self._clock, self._sleep, budget_pct=weight_budget_pct)
        self._client: AsyncClient | None = None
        self._rules: dict[str, SymbolRules] = {}
        self._rules_at: datetime | None = None
        self._offset_ms = 0
        self._banned_until: datetime | None = None
        self._cooldown_until: datetime | None = None
        self.errors: Counter[str] = Counter()  # failed requests by error class (metrics)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    async def connect(cls, api_key: str | SecretStr | None = None, api_secret: str | SecretStr | None = None,
                      **kwargs: Any) -> BinanceFutures:
        """Build, sync the clock and load the symbol rules (and leverage brackets when keys are set)."""
        self = cls(api_key, api_secret, **kwargs)
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> BinanceFutures:
        """An unopened adapter configured from ``settings.Settings``; ``await .open()`` it."""
        kwargs: dict[str, Any] = {
            "env": settings.binance_env,
            "base_url": settings.binance_base_url,
            "weight_budget_pct": settings.binance_weight_budget_pct,
        }
        kwargs.update(overrides)
        return cls(settings.binance_api_key, settings.binance_api_secret, **kwargs)

    async def open(self) -> None:
        if self._client is None:
            self._client = self._build_client()
        await self.sync_time()
        await self._load_rules()
        log.info("Binance futures adapter ready: env=%s%s, %d symbols, keys %s", self.env,
                 f" via {self.base_url}" if self.base_url else "", len(self._rules),
                 "set" if self.has_keys else "not set (public market data only)")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close_connection()

    async def __aenter__(self) -> BinanceFutures:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"BinanceFutures(env={self.env!r}{where}, keys={'set' if self.has_keys else 'none'})"

    def _build_client(self) -> AsyncClient:
        client = AsyncClient(self._api_key, self._api_secret, testnet=self.env == "testnet",
                             demo=self.env == "demo")
        if self.base_url:
            fapi = f"{self.base_url}/fapi"
            client.FUTURES_URL = fapi
            client.FUTURES_TESTNET_URL = fapi
            client.FUTURES_DEMO_URL = fapi
            client.FUTURES_DATA_URL = f"{self.base_url}/futures/data"
            client.FUTURES_DATA_TESTNET_URL = f"{self.base_url}/futures/data"
            client.API_URL = f"{self.base_url}/api"
        client.REQUEST_TIMEOUT = self._request_timeout
        client.REQUEST_RECVWINDOW = self._recv_window
        return client

    # ------------------------------------------------------------------ state
    @property
    def has_keys(self) -> bool:
        return bool(self._api_key and self._api_secret)

    @property
    def used_weight(self) -> int:
        """Request weight used this minute (the exchange's own count when it sent one)."""
        return self.weight.used_weight

    @property
    def scan_weight(self) -> int:
        """Weight spent since the last ``begin_scan()``."""
        return self.weight.scan_weight

    def begin_scan(self) -> None:
        self.weight.begin_scan()

    @property
    def banned_until(self) -> datetime | None:
        if self._banned_until is not None and self._clock.now() >= self._banned_until:
            self._banned_until = None
        return self._banned_until

    @property
    def time_offset_ms(self) -> int:
        return self._offset_ms

    async def sync_time(self) -> int:
        """Set the signing offset from ``GET /fapi/v1/time``; returns it in milliseconds."""
        client = self._require_client()
        before = time.time()
        raw = await self._call("sync clock", client.futures_time, ("GET", "time"), private=False,
                               idempotent=True)
        after = time.time()
        self._offset_ms = int(raw["serverTime"]) - int((before + after) / 2 * 1000)
        client.timestamp_offset = self._offset_ms
        log.debug("clock offset to Binance: %d ms", self._offset_ms)
        return self._offset_ms

    # ------------------------------------------------------------------ market data
    async def symbol_rules(self) -> dict[str, SymbolRules]:
        """Filters of every symbol, reloaded when a day old or after an order broke a filter (Binance changes
        tick and step sizes; -4014, -1111 and -4164 say ours are stale)."""
        stale = self._rules_at is None or self._clock.now() - self._rules_at >= RULES_MAX_AGE
        if not self._rules or stale:
            await self._load_rules()
        return dict(self._rules)

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        if limit <= 0:
            return KlineBatch.empty(symbol, interval)
        if start_ms is None:
            rows = await self._latest_klines(symbol, interval, limit)
        else:
            rows = await self._klines_from(symbol, interval, start_ms, limit)
        return KlineBatch.from_rows(symbol, interval, rows)

    async def tickers_24h(self) -> list[Ticker24h]:
        client = self._require_client()
        raw = await self._call("24h tickers", client.futures_ticker, ("GET", "ticker/24hr"), private=False,
                               idempotent=True)
        return [_ticker(t) for t in raw if "lastPrice" in t]

    async def mark_price(self, symbol: str) -> MarkPrice:
        client = self._require_client()
        raw = await self._call(f"mark price {symbol}", client.futures_mark_price, ("GET", "premiumIndex"),
                               private=False, idempotent=True, symbol=symbol)
        return MarkPrice(symbol=raw["symbol"], mark_price=_dec(raw["markPrice"]),
                         funding_rate=_dec(raw.get("lastFundingRate", "0")),
                         next_funding_time=from_ms(int(raw.get("nextFundingTime", 0))),
                         time=from_ms(int(raw.get("time", 0))))

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        client = self._require_client()
        begin, stop = to_ms(start), to_ms(end)
        out: dict[int, FundingRate] = {}
        while begin <= stop:
            page = await self._call(f"funding rates {symbol}", client.futures_funding_rate,
                                    ("GET", "fundingRate"), private=False, idempotent=True, symbol=symbol,
                                    startTime=begin, endTime=stop, limit=PAGE_MAX)
            for row in page:
                t = int(row["fundingTime"])
                if begin <= t <= stop:
                    out[t] = FundingRate(symbol, from_ms(t), _dec(row["fundingRate"]))
            if len(page) < PAGE_MAX:
                break
            begin = max(begin + 1, int(page[-1]["fundingTime"]) + 1)
        return [out[t] for t in sorted(out)]

    # ------------------------------------------------------------------ account
    async def account_config(self) -> AccountConfig:
        client = self._require_client()
        raw = await self._call("account config", client.futures_account_config, ("GET", "accountConfig"),
                               private=True, idempotent=True)
        return AccountConfig(can_trade=bool(raw.get("canTrade", False)),
                             hedge_mode=bool(raw.get("dualSidePosition", False)),
                             multi_assets_margin=bool(raw.get("multiAssetsMargin", False)))

    async def balance(self) -> Balance:
        # /fapi/v3/account, not /fapi/v3/balance: the balance endpoint's ``crossUnPnl`` leaves out isolated
        # positions (Vigil's default margin type), the account's per-asset ``unrealizedProfit`` does not.
        client = self._require_client()
        raw = await self._call("balance", client.futures_account, ("GET", "account"), private=True,
                               idempotent=True, version=3)
        for asset in raw.get("assets", []):
            if asset.get("asset") == "USDT":
                return Balance(asset="USDT", wallet_balance=_dec(asset["walletBalance"]),
                               available_balance=_dec(asset["availableBalance"]),
                               unrealized_pnl=_dec(asset.get("unrealizedProfit", "0")))
        return Balance("USDT", Decimal(0), Decimal(0), Decimal(0))

    async def positions(self) -> list[Position]:
        client = self._require_client()
        raw = await self._call("positions", client.futures_position_information, ("GET", "positionRisk"),
                               private=True, idempotent=True)
        open_rows = [p for p in raw if _dec(p.get("positionAmt", "0")) != 0]
        if not open_rows:
            return []
        configs = await self._symbol_configs()
        return [_position(p, configs.get(p["symbol"], {})) for p in open_rows]

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        client = self._require_client()
        await self._call(f"set leverage {symbol} {leverage}x", client.futures_change_leverage,
                         ("POST", "leverage"), private=True, idempotent=True, symbol=symbol, leverage=leverage)

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        client = self._require_client()
        try:
            await self._call(f"set margin type {symbol} {margin_type.value}", client.futures_change_margin_type,
                             ("POST", "marginType"), private=True, idempotent=True, symbol=symbol,
                             marginType=margin_type.value)
        except ExchangeError as exc:
            if exc.code == -4046:  # "No need to change margin type."
                return
            raise

    # ------------------------------------------------------------------ orders
    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str, *,
                                 reduce_only: bool = False) -> OrderResult:
        client = self._require_client()
        _check_client_id(client_id)
        params: dict[str, Any] = {"symbol": symbol, "side": side.value, "type": "MARKET",
                                  "quantity": _fmt(quantity), "newClientOrderId": client_id,
                                  "newOrderRespType": "RESULT"}
        if reduce_only:
            params["reduceOnly"] = "true"
        op = f"market {side.value} {_fmt(quantity)} {symbol} ({client_id})"
        raw = await self._call(op, client.futures_create_order, ("POST", "order"), private=True,
                               idempotent=False, order_client_id=client_id, **params)
        return _order_result(raw)

    async def get_order(self, symbol: str, client_id: str) -> OrderResult | None:
        client = self._require_client()
        try:
            raw = await self._call(f"query order {client_id}", client.futures_get_order, ("GET", "order"),
                                   private=True, idempotent=True, symbol=symbol, origClientOrderId=client_id)
        except OrderNotFound:
            return None
        return _order_result(raw)

    async def place_protective_order(self, symbol: str, side: Side, kind: ProtectiveKind,
                                     trigger_price: Decimal, client_id: str) -> ProtectiveOrder:
        client = self._require_client()
        _check_client_id(client_id)
        params = {"algoType": "CONDITIONAL", "symbol": symbol, "side": side.value, "type": kind.value,
                  "triggerPrice": _fmt(trigger_price), "closePosition": "true", "workingType": "MARK_PRICE",
                  "clientAlgoId": client_id}
        op = f"{kind.value} {side.value} {symbol} @ {_fmt(trigger_price)} ({client_id})"
        raw = await self._call(op, client.futures_create_algo_order, ("POST", "algoOrder"), private=True,
                               idempotent=False, order_client_id=client_id, **params)
        order = _protective(raw)
        if order is None:
            raise ExchangeError(f"{op}: Binance answered with an unexpected algo order shape")
        return order

    async def get_protective_order(self, symbol: str, client_id: str) -> ProtectiveOrder | None:
        client = self._require_client()
        try:
            raw = await self._call(f"query algo order {client_id}", client.futures_get_algo_order,
                                   ("GET", "algoOrder"), private=True, idempotent=True, clientAlgoId=client_id)
        except OrderNotFound:
            return None
        return _protective(raw)

    async def open_protective_orders(self, symbol: str | None = None) -> list[ProtectiveOrder]:
        client = self._require_client()
        raw = await self._call(f"open algo orders {symbol or 'all symbols'}", client.futures_get_open_algo_orders,
                               ("GET", "openAlgoOrders"), private=True, idempotent=True, symbol=symbol)
        rows = raw.get("orders", []) if isinstance(raw, Mapping) else raw
        out = [o for o in (_protective(r) for r in rows) if o is not None]
        return sorted(out, key=lambda o: (o.symbol, o.time))

    async def cancel_protective_order(self, symbol: str, client_id: str) -> None:
        client = self._require_client()
        await self._call(f"cancel algo order {client_id} on {symbol}", client.futures_cancel_algo_order,
                         ("DELETE", "algoOrder"), private=True, idempotent=False, clientAlgoId=client_id)

    async def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        """Plain (non-conditional) open orders: limit orders resting on the book, the operator's included."""
        client = self._require_client()
        raw = await self._call(f"open orders {symbol or 'all symbols'}", client.futures_get_open_orders,
                               ("GET", "openOrders"), private=True, idempotent=True, symbol=symbol)
        return [_order_result(r) for r in raw]

    async def cancel_all_orders(self, symbol: str) -> None:
        """Every open order on ``symbol``: plain ones (``allOpenOrders``) and conditional ones
        (``algoOpenOrders``; Binance's plain cancel-all does not cover them). Idempotent."""
        client = self._require_client()
        failed: ExchangeError | None = None
        for op, fn, path in ((f"cancel all open orders on {symbol}", client.futures_cancel_all_open_orders,
                              "allOpenOrders"),
                             (f"cancel all algo orders on {symbol}", client.futures_cancel_all_algo_open_orders,
                              "algoOpenOrders")):
            try:  # the second is tried even if the first failed
                await self._call(op, fn, ("DELETE", path), private=True, idempotent=True, symbol=symbol)
            except ExchangeError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    # ------------------------------------------------------------------ history
    async def fills(self, symbol: str, start: datetime) -> list[Fill]:
        """userTrades in 7-day windows (Binance's maximum range) from ``start`` to now."""
        client = self._require_client()
        now_ms = await self._fresh_server_now_ms()
        begin = to_ms(start)
        window = int(TRADES_WINDOW.total_seconds() * 1000) - 1
        seen: dict[int, Fill] = {}
        while begin <= now_ms:
            end = min(begin + window, now_ms)
            rows = await self._paged(client.futures_account_trades, ("GET", "userTrades"), f"fills {symbol}",
                                     time_key="time", symbol=symbol, startTime=begin, endTime=end)
            for row in rows:
                seen[int(row["id"])] = _fill(row)
            begin = end + 1
        fills = sorted(seen.values(), key=lambda f: (f.time, int(f.trade_id)))
        return await self._with_client_ids(symbol, fills) if fills else fills

    async def _with_client_ids(self, symbol: str, fills: list[Fill]) -> list[Fill]:
        """userTrades carries no client order id; allOrders does. It tells our orders from the operator's and
        from Binance's own liquidation orders (``autoclose-…``)."""
        client = self._require_client()
        window = int(TRADES_WINDOW.total_seconds() * 1000) - 1
        ids: dict[str, str] = {}
        begin, last = to_ms(fills[0].time), to_ms(fills[-1].time)
        while begin <= last:
            end = min(begin + window, last)
            rows = await self._paged(client.futures_get_all_orders, ("GET", "allOrders"), f"orders {symbol}",
                                     time_key="updateTime", symbol=symbol, startTime=begin, endTime=end)
            ids.update({str(r["orderId"]): str(r.get("clientOrderId", "")) for r in rows})
            begin = end + 1
        return [replace(f, client_id=ids.get(f.order_id) or f.client_id) for f in fills]

    async def funding_payments(self, symbol: str, start: datetime) -> list[FundingPayment]:
        client = self._require_client()
        rows = await self._paged(client.futures_income_history, ("GET", "income"), f"funding fees {symbol}",
                                 time_key="time", symbol=symbol, incomeType="FUNDING_FEE",
                                 startTime=to_ms(start), endTime=await self._fresh_server_now_ms())
        unique = {str(r.get("tranId", f"{r['time']}-{r['income']}")): r for r in rows}
        out = [FundingPayment(symbol=r["symbol"], amount=_dec(r["income"]), time=from_ms(int(r["time"])))
               for r in unique.values()]
        return sorted(out, key=lambda p: p.time)

    # ------------------------------------------------------------------ internals
    async def _paged(self, fn: Callable[..., Awaitable[Any]], endpoint: tuple[str, str], op: str, *,
                     time_key: str, startTime: int, **params: Any) -> list[dict[str, Any]]:
        """Fetch pages of up to 1000 rows, moving ``startTime`` to the last row's time (inclusive)."""
        out: list[dict[str, Any]] = []
        begin = startTime
        while True:
            page = await self._call(op, fn, endpoint, private=True, idempotent=True, startTime=begin,
                                    limit=PAGE_MAX, **params)
            out.extend(page)
            if len(page) < PAGE_MAX:
                return out
            last = int(page[-1][time_key])
            begin = last if last > begin else begin + 1

    async def _latest_klines(self, symbol: str, interval: str, limit: int) -> list[list[Any]]:
        chunks: list[list[list[Any]]] = []
        remaining, end_ms = limit, None
        while remaining > 0:
            n = min(remaining, KLINES_MAX)
            page = await self._klines_page(symbol, interval, n, end_ms=end_ms)
            if not page:
                break
            chunks.insert(0, page)
            remaining -= len(page)
            if len(page) < n:
                break
            end_ms = int(page[0][0]) - 1
        return [row for chunk in chunks for row in chunk]

    async def _klines_from(self, symbol: str, interval: str, start_ms: int, limit: int) -> list[list[Any]]:
        rows: list[list[Any]] = []
        remaining, begin = limit, start_ms
        while remaining > 0:
            n = min(remaining, KLINES_MAX)
            page = await self._klines_page(symbol, interval, n, start_ms=begin)
            rows.extend(page)
            remaining -= len(page)
            if len(page) < n:
                break
            begin = int(page[-1][0]) + 1
        return rows

    async def _klines_page(self, symbol: str, interval: str, limit: int, *, start_ms: int | None = None,
                           end_ms: int | None = None) -> list[list[Any]]:
        client = self._require_client()
        return await self._call(f"klines {symbol} {interval}", client.futures_klines, ("GET", "klines"),
                                private=False, idempotent=True, symbol=symbol, interval=interval, limit=limit,
                                startTime=start_ms, endTime=end_ms)

    async def raw_exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo`` as Binance answered it; adopts its request-weight limit."""
        client = self._require_client()
        info = await self._call("exchange info", client.futures_exchange_info, ("GET", "exchangeInfo"),
                                private=False, idempotent=True)
        self._apply_rate_limits(info.get("rateLimits", []))
        return info

    async def _load_rules(self) -> None:
        info = await self.raw_exchange_info()
        brackets = await self._load_brackets() if self.has_keys else {}
        rules: dict[str, SymbolRules] = {}
        for entry in info.get("symbols", []):
            try:
                rules[entry["symbol"]] = parse_symbol_rules(entry, brackets.get(entry["symbol"], ()))
            except (KeyError, ValueError, ArithmeticError) as exc:
                log.warning("skipping symbol %s: unreadable filters (%s)", entry.get("symbol"), exc)
        self._rules = rules
        self._rules_at = self._clock.now()

    async def raw_leverage_brackets(self) -> list[dict[str, Any]]:
        """``GET /fapi/v1/leverageBracket`` as Binance answered it (signed: needs the keys)."""
        client = self._require_client()
        raw = await self._call("leverage brackets", client.futures_leverage_bracket, ("GET", "leverageBracket"),
                               private=True, idempotent=True)
        return [raw] if isinstance(raw, Mapping) else list(raw)

    async def _load_brackets(self) -> dict[str, tuple[LeverageBracket, ...]]:
        entries = await self.raw_leverage_brackets()
        return {e["symbol"]: parse_brackets(e.get("brackets", [])) for e in entries if "symbol" in e}

    def _apply_rate_limits(self, limits: Iterable[Mapping[str, Any]]) -> None:
        for item in limits:
            if (item.get("rateLimitType") == "REQUEST_WEIGHT" and item.get("interval") == "MINUTE"
                    and int(item.get("intervalNum", 1)) == 1):
                self.weight.limit = int(item["limit"])

    async def _symbol_configs(self) -> dict[str, Mapping[str, Any]]:
        client = self._require_client()
        raw = await self._call("symbol config", client.futures_symbol_config, ("GET", "symbolConfig"),
                               private=True, idempotent=True)
        entries = [raw] if isinstance(raw, Mapping) else raw
        return {e["symbol"]: e for e in entries if "symbol" in e}

    async def _fresh_server_now_ms(self) -> int:
        """Exchange time now (resyncs the offset; used to bound history queries exactly)."""
        await self.sync_time()
        return self._server_now_ms()

    def _server_now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            self._client = self._build_client()
        return self._client

    def _require_keys(self, op: str) -> None:
        if not self.has_keys:
            raise AuthenticationError(f"{op}: needs Binance API keys, and none are configured (public market "
                                      f"data only); set BINANCE_API_KEY and BINANCE_API_SECRET")

    async def _call(self, op: str, fn: Callable[..., Awaitable[Any]], endpoint: tuple[str, str], *,
                    private: bool, idempotent: bool, order_client_id: str | None = None, **params: Any) -> Any:
        """One logical request with translation, ban/cooldown gates, weight tracking and retries."""
        if private:
            self._require_keys(op)
        params = {k: v for k, v in params.items() if v is not None}
        weight = endpoint_weight(endpoint[0], endpoint[1], params)
        attempt, resynced = 0, False
        while True:
            await self._gate(op)
            await self.weight.acquire(weight)
            try:
                return await self._send(fn, weight, params)
            except BinanceAPIException as exc:
                err = binance_errors.api_error(exc, op=op, now=self._clock.now(), order_client_id=order_client_id,
                                               server_now_ms=self._server_now_ms())
                cause: BaseException = exc
            except (aiohttp.ClientError, TimeoutError, BinanceRequestException) as exc:
                err = binance_errors.network_error(exc, op=op, order_client_id=order_client_id)
                cause = exc
            self._remember(err)
            if isinstance(err, TimestampOutOfSync) and not resynced:
                resynced = True
                log.warning("%s; resyncing the clock offset and retrying once", err)
                await self.sync_time()
                continue
            delay = self._retry_delay(err, attempt) if idempotent else None
            if delay is None:
                raise err from cause
            attempt += 1
            log.warning("%s - retry %d/%d in %.1fs", err, attempt, self._retry.max_retries, delay)
            if delay > 0:
                await self._sleep(delay)

    async def _send(self, fn: Callable[..., Awaitable[Any]], weight: int, params: dict[str, Any]) -> Any:
        headers: Mapping[str, str] | None = None
        try:
            result = await fn(**params)
            headers = self._last_headers()
            return result
        except BinanceAPIException as exc:
            headers = getattr(getattr(exc, "response", None), "headers", None)
            raise
        finally:
            self.weight.release(weight, headers)

    def _last_headers(self) -> Mapping[str, str] | None:
        response = getattr(self._client, "response", None)
        return getattr(response, "headers", None)

    def _remember(self, err: ExchangeError) -> None:
        self.errors[type(err).__name__] += 1
        if err.code in RULES_STALE_CODES:
            self._rules_at = None  # the next symbol_rules() reloads the filters
        if isinstance(err, IpBanned):
            self._banned_until = err.until
            log.error("%s", err)
        elif isinstance(err, RateLimited) and err.retry_after:
            self._cooldown_until = self._clock.now() + timedelta(seconds=err.retry_after)

    def _retry_delay(self, err: ExchangeError, attempt: int) -> float | None:
        if not isinstance(err, TransientError) or isinstance(err, TimestampOutOfSync):
            return None
        if attempt >= self._retry.max_retries:
            return None
        if isinstance(err, RateLimited):
            return 0.0  # the cooldown gate does the waiting
        backoff = min(self._retry.max_delay, self._retry.base_delay * (2 ** attempt))
        delay = max(backoff, err.retry_after or 0.0)
        return delay if delay <= self._retry.max_wait else None

    async def _gate(self, op: str) -> None:
        """Refuse during a ban (no network), wait out a 429 cooldown."""
        until = self.banned_until
        if until is not None:
            raise IpBanned(f"{op}: not sent - Binance has banned this IP until {until:%Y-%m-%d %H:%M:%S} UTC",
                           until=until)
        cooldown = self._cooldown_until
        if cooldown is None:
            return
        wait = (cooldown - self._clock.now()).total_seconds()
        if wait > self._retry.max_wait:
            raise RateLimited(f"{op}: not sent - Binance rate limit cooldown for {wait:.0f}s more",
                              retry_after=wait)
        if wait > 0:
            log.info("%s: waiting %.1fs for the Binance rate-limit cooldown", op, wait)
            await self._sleep(wait)
        if self._cooldown_until == cooldown:  # a newer 429 meanwhile keeps its own cooldown
            self._cooldown_until = None


# ---------------------------------------------------------------------- parsing helpers
def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    text = str(value).strip()
    return text or None


def _check_client_id(client_id: str) -> None:
    if not CLIENT_ID_PATTERN.match(client_id):
        raise ValueError(f"client id {client_id!r} must be 1-36 characters of [.A-Za-z0-9_-] "
                         f"(':' and '/' break python-binance request signing)")


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ticker(raw: Mapping[str, Any]) -> Ticker24h:
    return Ticker24h(symbol=raw["symbol"], last_price=_dec(raw["lastPrice"]),
                     quote_volume=_dec(raw.get("quoteVolume", "0")),
                     price_change_pct=_dec(raw.get("priceChangePercent", "0")))


def _position(raw: Mapping[str, Any], config: Mapping[str, Any]) -> Position:
    amount = _dec(raw["positionAmt"])
    side_text = raw.get("positionSide", "BOTH")
    if side_text in ("LONG", "SHORT"):
        side = PositionSide(side_text)
    else:
        side = PositionSide.LONG if amount > 0 else PositionSide.SHORT
    isolated_wallet = _dec(raw.get("isolatedWallet", "0"))
    margin_text = str(config.get("marginType") or raw.get("marginType")
                      or ("ISOLATED" if isolated_wallet != 0 else "CROSSED")).upper()
    margin = MarginType.ISOLATED if margin_text.startswith("ISOLATED") else MarginType.CROSSED
    updated = int(raw.get("updateTime", 0) or 0)
    return Position(symbol=raw["symbol"], side=side, quantity=abs(amount), entry_price=_dec(raw["entryPrice"]),
                    mark_price=_dec(raw.get("markPrice", "0")), unrealized_pnl=_dec(raw.get("unRealizedProfit", "0")),
                    liquidation_price=_dec(raw.get("liquidationPrice", "0")),
                    leverage=int(config.get("leverage") or raw.get("leverage") or 0), margin_type=margin,
                    isolated_margin=_dec(raw.get("isolatedMargin", "0")),
                    updated_at=from_ms(updated) if updated else None)


def _order_result(raw: Mapping[str, Any]) -> OrderResult:
    status_text = str(raw.get("status", "NEW"))
    try:
        status = OrderStatus(status_text)
    except ValueError:
        status = OrderStatus.EXPIRED if "EXPIRED" in status_text else OrderStatus.NEW
    when = int(raw.get("updateTime") or raw.get("time") or 0)
    return OrderResult(symbol=raw["symbol"], client_id=str(raw.get("clientOrderId", "")),
                       exchange_id=str(raw.get("orderId", "")), side=Side(raw["side"]), status=status,
                       quantity=_dec(raw.get("origQty", "0")), filled_quantity=_dec(raw.get("executedQty", "0")),
                       avg_price=_dec(raw.get("avgPrice", "0")), reduce_only=_bool(raw.get("reduceOnly")),
                       time=from_ms(when))


def _protective(raw: Mapping[str, Any]) -> ProtectiveOrder | None:
    order_type = str(raw.get("orderType") or raw.get("type") or "")
    try:
        kind = ProtectiveKind(order_type)
    except ValueError:
        log.info("ignoring algo order %s of type %s (not a Vigil stop or take-profit)",
                 raw.get("clientAlgoId"), order_type)
        return None
    status_text = str(raw.get("algoStatus", "NEW"))
    try:
        status = ProtectiveStatus(status_text)
    except ValueError:
        log.warning("unknown algo status %r for %s; treating it as NEW", status_text, raw.get("clientAlgoId"))
        status = ProtectiveStatus.NEW
    actual = str(raw.get("actualOrderId") or "")
    when = int(raw.get("updateTime") or raw.get("createTime") or 0)
    return ProtectiveOrder(symbol=raw["symbol"], client_id=str(raw.get("clientAlgoId", "")),
                           exchange_id=str(raw.get("algoId", "")), side=Side(raw["side"]), kind=kind,
                           trigger_price=_dec(raw.get("triggerPrice", "0")), status=status, time=from_ms(when),
                           triggered_order_id=actual or None)


def _fill(raw: Mapping[str, Any]) -> Fill:
    return Fill(symbol=raw["symbol"], trade_id=str(raw["id"]), order_id=str(raw["orderId"]), side=Side(raw["side"]),
                price=_dec(raw["price"]), quantity=_dec(raw["qty"]), fee=_dec(raw.get("commission", "0")),
                fee_asset=str(raw.get("commissionAsset", "USDT")), realized_pnl=_dec(raw.get("realizedPnl", "0")),
                time=from_ms(int(raw["time"])))


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


__all__ = ["CLIENT_ID_PATTERN", "BinanceFutures", "RetryPolicy"]
