"""``FakeBinanceFutures``: a local Binance USD-M futures REST server for tests.

The real ``binance.AsyncClient`` talks to it over HTTP on 127.0.0.1. It checks the API key header, the
HMAC-SHA256 signature over the exact query string/body and the timestamp window; answers in Binance's
JSON shapes and error bodies; counts request weight; serves the bundled real 5m klines (aggregated to
larger intervals) up to its own settable clock; fills MARKET orders at the current price; keeps algo
(conditional) orders and triggers them when the test moves the clock or the price; pays funding at the
real funding times; and injects faults on demand.

Where real Binance is harder than an ideal exchange, the fake can be too (all off by default):
``stop_needs_position_for`` (-4509 "TIF GTE can only be used with open positions" for a closePosition stop
placed that soon after an entry), ``trades_lag`` (userTrades shows a fill only that long after it),
``fee_asset = "BNB"`` (commissions in BNB at the BNBUSDT price, with a ``BNBUSDT`` symbol or clone),
``expire_next_market`` (a MARKET order that fills partly and comes back EXPIRED), ``adl()`` (an
auto-deleverage close, client id ``adl_autoclose``), resting LIMIT orders (``place_limit_by_hand``), and
duplicate ``clientAlgoId`` rejected only among OPEN algo orders, a second closePosition STOP_MARKET (or
TAKE_PROFIT_MARKET) on the same side of a symbol refused with -4130 while one is open, and a 429 without a
``Retry-After`` header (``faults.next(..., "429", retry_after_header=False)``). Any error code on any path
(cancel and query included) comes from ``faults.next(path, "error", status=..., code=..., msg=...)``.

Time model: the server clock ticks in real time from a settable simulated start. The current price of a
symbol is the open of the 5m candle containing "now"; that candle is served as the forming one.
``await fake.advance(...)`` / ``await fake.set_time(...)`` walk the candles in between, triggering stops and
take-profits on each candle's high/low and paying funding on the way. A clock jump made by the test is not
treated as client clock drift (clients synced before the jump stay valid); ``skew_clock`` is.

Clones: ``clones={"S001USDT": "BTCUSDT", ...}`` adds synthetic symbols that reuse a bundled symbol's candles,
funding, leverage brackets and exchangeInfo filters (entry copied with ``symbol``/``pair``/``baseAsset``
renamed), so a test or benchmark can have a universe of 100 symbols from the 3 bundled series. A clone
is a full symbol of its own (own positions, orders, leverage); its 24 h ticker equals its source's, so in a
volume ranking it ties with its source (``MarketDataService`` breaks ties by symbol name: deterministic).

Market-data history: ``/fapi/v1/klines`` honours ``startTime``/``endTime``/``limit`` (1..1500) as Binance does
and ``/fapi/v1/fundingRate`` answers ascending pages with ``markPrice`` and ``rateType``, with its own limit
of ``funding_request_limit`` (500) requests per 5 minutes (429 past it); a start after the end is refused
with -1023. ``funding_time_jitter_ms`` stamps funding events a few ms late, as Binance does.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import gzip
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from aiohttp import web

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
FIVE_MIN = 300_000
DEFAULT_START = datetime(2025, 3, 3, 0, 0, 30, tzinfo=UTC)
TEST_API_KEY = "vigil-test-key"
TEST_API_SECRET = "vigil-test-secret"
CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
CONDITIONAL_TYPES = {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
INTERVALS_MS = {"5m": FIVE_MIN, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000,
                "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000}
SEVEN_DAYS_MS = 7 * 86_400_000
D0 = Decimal(0)


class FakeApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Candles:
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@functools.cache
def load_candles(symbol: str, data_dir: Path = DATA_DIR) -> Candles:
    with gzip.open(data_dir / f"{symbol}-5m.csv.gz", "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", skiprows=1, dtype=np.float64)
    return Candles(arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5])


@functools.cache
def load_funding(symbol: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, tuple[str, ...]]:
    with gzip.open(data_dir / f"{symbol}-funding.csv.gz", "rt") as fh:
        lines = fh.read().split()[1:]
    times = np.array([int(line.split(",")[0]) for line in lines], dtype=np.int64)
    return times, tuple(f"{Decimal(line.split(',')[1]):.8f}" for line in lines)  # Binance's 8-decimal strings


@functools.cache
def load_exchange_info(data_dir: Path = DATA_DIR) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((data_dir / "exchange_info.json").read_text())["symbols"])


@functools.cache
def load_brackets(data_dir: Path = DATA_DIR) -> dict[str, Any]:
    return json.loads((data_dir / "leverage_brackets.json").read_text())


@functools.lru_cache(maxsize=64)
def aggregate(symbol: str, interval_ms: int, data_dir: Path = DATA_DIR) -> Candles:
    """Complete candles of ``interval_ms`` built from the 5m data (buckets aligned to epoch)."""
    c = load_candles(symbol, data_dir)
    if interval_ms == FIVE_MIN:
        return c
    buckets = c.open_time // interval_ms * interval_ms
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(buckets)] - 1
    return Candles(buckets[starts], c.open[starts], np.maximum.reduceat(c.high, starts),
                   np.minimum.reduceat(c.low, starts), c.close[ends], np.add.reduceat(c.volume, starts))


# ---------------------------------------------------------------------------------------------- faults
_PRESETS: dict[str, tuple[int, int | None, str]] = {
    "429": (429, -1003, "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
                        "Please use the websocket for live updates to avoid polling the API."),
    "418": (418, -1003, "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket "
                        "for live updates to avoid bans."),
    "-1021": (400, -1021, "Timestamp for this request is outside of the recvWindow."),
    "-1022": (400, -1022, "Signature for this request is not valid."),
    "-2015": (401, -2015, "Invalid API-key, IP, or permissions for action."),
    "-2019": (400, -2019, "Margin is insufficient."),
    "-2021": (400, -2021, "Order would immediately trigger."),
    "-4142": (400, -4142, "REJECT: take profit or stop order will be triggered immediately."),
    "-4164": (400, -4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."),
    "-1121": (400, -1121, "Invalid symbol."),
    "-1001": (503, -1001, "Internal error; unable to process your request. Please try again."),
    "-1008": (503, -1008, "Request throttled by system-level protection. Reduce-only/close-position orders "
                          "are exempted. Please try again."),
    "503_unknown": (503, -1000, "Unknown error, please check your request or try again later."),
    "503_unavailable": (503, None, "Service Unavailable."),
    "502": (502, None, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "timeout": (0, None, ""),
    "drop": (0, None, ""),
}
# Faults whose request is processed (the order is accepted) before the answer goes wrong.
_ACCEPTING = {"503_unknown", "timeout", "drop"}


@dataclass
class Fault:
    kind: str
    path: str
    method: str | None = None
    times: int = 1
    retry_after: float | None = None
    delay: float = 5.0
    status: int | None = None
    code: int | None = None
    msg: str | None = None
    accept: bool | None = None
    hits: int = 0
    skip: int = 0  # matching requests let through untouched before the fault applies
    symbol: str | None = None  # only requests about this symbol
    retry_after_header: bool = True  # False: a 429 without Retry-After (Binance does not always send one)

    @property
    def accepts(self) -> bool:
        return self.kind in _ACCEPTING if self.accept is None else self.accept

    def matches(self, method: str, path: str, symbol: str | None = None) -> bool:
        return (self.times > 0 and path == self.path and (self.method is None or self.method == method)
                and (self.symbol is None or self.symbol == symbol))


class Faults:
    """Queue of faults, each applied to the next ``times`` requests matching ``method path``."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def next(self, path: str, kind: str, *, method: str | None = None, times: int = 1,
             retry_after: float | None = None, delay: float = 5.0, status: int | None = None,
             code: int | None = None, msg: str | None = None, accept: bool | None = None, skip: int = 0,
             symbol: str | None = None, retry_after_header: bool = True) -> Fault:
        """Inject ``kind`` (a preset name like "429", "-2019", "503_unknown", "timeout", "drop", or
        "error" with status/code/msg) on the next matching request(s)."""
        if kind not in _PRESETS and kind != "error":
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(_PRESETS)} or 'error'")
        fault = Fault(kind, path, method.upper() if method else None, times, retry_after, delay, status, code,
                      msg, accept, skip=skip, symbol=symbol, retry_after_header=retry_after_header)
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        self._queue.clear()

    @property
    def pending(self) -> list[Fault]:
        return [f for f in self._queue if f.times > 0]

    def take(self, method: str, path: str, symbol: str | None = None) -> Fault | None:
        for fault in self._queue:
            if fault.matches(method, path, symbol):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                fault.hits += 1
                return fault
        return None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    time_ms: int
    api_key: str | None = None


@dataclass
class _Position:
    amount: Decimal = D0
    entry: Decimal = D0
    update_ms: int = 0


# ---------------------------------------------------------------------------------------------- server
class FakeBinanceFutures:
    """Async context manager: ``async with FakeBinanceFutures() as fake: fake.base_url``."""

    def __init__(self, *, start: datetime = DEFAULT_START, api_key: str = TEST_API_KEY,
                 api_secret: str = TEST_API_SECRET, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT"),
                 wallet: Decimal = Decimal(1000), taker_fee: Decimal = Decimal("0.0005"),
                 weight_limit: int = 2400, default_leverage: int = 20, data_dir: Path = DATA_DIR,
                 clones: Mapping[str, str] | None = None, funding_time_jitter_ms: int = 0,
                 funding_request_limit: int = 500) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.funding_time_jitter_ms = funding_time_jitter_ms
        self.funding_request_limit = funding_request_limit
        self._funding_requests: dict[int, int] = {}  # 5-minute window -> fundingRate requests
        self.data_dir = data_dir
        clones = dict(clones or {})
        self._source: dict[str, str] = {s: s for s in symbols} | self._check_clones(clones, symbols)
        self.symbols = tuple(symbols) + tuple(clones)
        self.taker_fee = taker_fee
        self.weight_limit = weight_limit
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.held: list[RecordedRequest] = []  # requests held unprocessed by a non-accepting "timeout" fault
        self.wallet = wallet
        self.hedge_mode = False
        self.multi_assets = False
        self.can_trade = True
        self.default_leverage = default_leverage
        self.leverage: dict[str, int] = {}
        self.margin_type: dict[str, str] = {}
        self.positions: dict[str, _Position] = {s: _Position() for s in self.symbols}
        self.orders: dict[int, dict[str, Any]] = {}
        self.algo_orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self._price_override: dict[str, Decimal] = {}
        self._ids = iter(range(1_000_001, 10**12))
        self._info = {e["symbol"]: e for e in load_exchange_info(data_dir) if e["symbol"] in symbols}
        self._info |= {name: _renamed_entry(self._bundled_entry(source), name) for name, source in clones.items()}
        self._base_ms = int(start.timestamp() * 1000)
        self._mono = time.monotonic()
        self._total_jump = 0
        self._epochs: set[int] = {0}
        self._banned_until_ms = 0
        self._weight_minute = -1
        self._weight_used = 0
        self.weight_charged = 0  # every request's weight since start (never rolls over): for benchmarks
        self._order_count = 0
        # how Binance differs from an ideal exchange (issue 10); all off by default
        self.stop_needs_position_for = timedelta(0)  # -4509 on closePosition stops this long after an entry
        self._entered_ms: dict[str, int] = {}
        self.trades_lag = timedelta(0)  # userTrades shows a fill only this long after it happened
        self.fee_asset = "USDT"  # "BNB": commissions paid in BNB at the BNBUSDT price (BNB fee discount)
        self.expire_next_market: Decimal | None = None  # the next MARKET order fills only this fraction, EXPIRED
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._routes = self._route_table()

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeBinanceFutures:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------------ clones
    def source_of(self, symbol: str) -> str:
        """The bundled symbol whose data ``symbol`` serves (itself unless it is a clone)."""
        return self._source.get(symbol, symbol)

    def _check_clones(self, clones: dict[str, str], symbols: tuple[str, ...]) -> dict[str, str]:
        for name, source in clones.items():
            if name in symbols:
                raise ValueError(f"clone {name} clashes with a real symbol")
            if not name.endswith("USDT") or name == "USDT":
                raise ValueError(f"clone name {name!r} must be a USDT perpetual name like S001USDT")
            self._bundled_entry(source)
        return clones

    def _bundled_entry(self, source: str) -> dict[str, Any]:
        entry = next((e for e in load_exchange_info(self.data_dir) if e["symbol"] == source), None)
        if entry is None:
            raise ValueError(f"clone source {source} has no exchangeInfo entry in {self.data_dir}")
        return entry

    # ------------------------------------------------------------------ clock and prices
    def now_ms(self) -> int:
        return self._base_ms + int((time.monotonic() - self._mono) * 1000)

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=UTC)

    async def set_time(self, when: datetime) -> None:
        """Move the server clock forward, triggering algo orders and paying funding on the way."""
        target, current = int(when.timestamp() * 1000), self.now_ms()
        if target < current:
            raise ValueError(f"the fake's clock cannot go back: {when} < {self.now}")
        self._walk(current, target)
        self._total_jump += target - current
        self._epochs.add(self._total_jump)
        self._base_ms, self._mono = target, time.monotonic()
        self._price_override.clear()

    async def advance(self, delta: timedelta) -> None:
        await self.set_time(self.now + delta)

    def skew_clock(self, delta: timedelta) -> None:
        """Shift the server clock WITHOUT telling clients: their timestamps now look out of sync (-1021)."""
        self._base_ms += int(delta.total_seconds() * 1000)

    async def set_price(self, symbol: str, price: Decimal | float | str) -> None:
        """Override the (mark) price of ``symbol`` until the clock next moves; triggers algo orders.

        The move is a jump: a stop it crosses fills at the new price (a gap), not at its trigger."""
        value = self._tick(symbol, Decimal(str(price)))
        self._price_override[symbol] = value
        self._trigger_candle(symbol, self.now_ms(), value, value, value)

    def price(self, symbol: str) -> Decimal:
        if symbol in self._price_override:
            return self._price_override[symbol]
        return self._price_at(symbol, self.now_ms())

    def _price_at(self, symbol: str, at_ms: int) -> Decimal:
        c = load_candles(self.source_of(symbol), self.data_dir)
        i = int(np.searchsorted(c.open_time, at_ms, side="right")) - 1
        if i < 0:
            raise FakeApiError(400, -1121, f"no market data for {symbol} at {at_ms}")
        return self._tick(symbol, Decimal(str(float(c.open[i]))))

    def _tick(self, symbol: str, price: Decimal) -> Decimal:
        tick = Decimal(self._filter(symbol, "PRICE_FILTER")["tickSize"]).normalize()
        return (price / tick).to_integral_value(ROUND_HALF_UP) * tick

    def _step(self, symbol: str) -> Decimal:
        return Decimal(self._filter(symbol, "MARKET_LOT_SIZE")["stepSize"]).normalize()

    def _filter(self, symbol: str, name: str) -> dict[str, Any]:
        return next(f for f in self._info[symbol]["filters"] if f["filterType"] == name)

    def _optional_filter(self, symbol: str, name: str) -> dict[str, Any] | None:
        """A filter the exchange info may lack (the recorded SOLUSDT entry has no MAX_NUM_ALGO_ORDERS): no limit then,
        rather than an internal error answered as HTTP 500."""
        return next((f for f in self._info[symbol]["filters"] if f["filterType"] == name), None)

    # ------------------------------------------------------------------ switches for tests
    def set_hedge_mode(self, on: bool = True) -> None:
        self.hedge_mode = on

    def set_multi_assets(self, on: bool = True) -> None:
        self.multi_assets = on

    def set_tick_size(self, symbol: str, tick: Decimal | str) -> None:
        """Binance changes a symbol's price filter now and then: from now on a price off the new grid is refused
        (-4014) and exchangeInfo shows the new ``tickSize``."""
        entry = copy.deepcopy(self._info[symbol])
        next(f for f in entry["filters"] if f["filterType"] == "PRICE_FILTER")["tickSize"] = str(tick)
        self._info[symbol] = entry

    def open_position_by_hand(self, symbol: str, side: str, quantity: Decimal | str) -> dict[str, Any]:
        """A position opened by the operator in the Binance app (not by Vigil)."""
        order = self._new_market_order(symbol, side.upper(), Decimal(str(quantity)), f"web_{next(self._ids)}",
                                       reduce_only=False)
        self._fill_market(order, self.price(symbol))
        return order

    def close_position_by_hand(self, symbol: str) -> dict[str, Any] | None:
        """The operator closes the whole position in the Binance app."""
        return self._close_whole_position(symbol, f"web_{next(self._ids)}")

    def liquidate(self, symbol: str) -> dict[str, Any] | None:
        """Binance's liquidation engine closes the position at the current price (order ``autoclose-…``)."""
        return self._close_whole_position(symbol, f"autoclose-{self.now_ms()}")

    def adl(self, symbol: str, quantity: Decimal | str | None = None) -> dict[str, Any] | None:
        """Auto-deleveraging reduces (by default closes) the position at the current price; Binance names the
        order ``adl_autoclose``."""
        pos = self.positions[symbol]
        if pos.amount == 0:
            return None
        qty = abs(pos.amount) if quantity is None else Decimal(str(quantity))
        order = self._new_market_order(symbol, "SELL" if pos.amount > 0 else "BUY", qty, "adl_autoclose",
                                       reduce_only=True)
        self._fill_market(order, self.price(symbol))
        return order

    def place_limit_by_hand(self, symbol: str, side: str, quantity: Decimal | str,
                            price: Decimal | str) -> dict[str, Any]:
        """A resting LIMIT order of the operator's (never filled by this fake)."""
        order = self._new_market_order(symbol, side.upper(), Decimal(str(quantity)), f"web_{next(self._ids)}",
                                       reduce_only=False)
        order.update(type="LIMIT", origType="LIMIT", price=_s(Decimal(str(price))))
        return order

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")
                and (symbol is None or o["symbol"] == symbol)]

    def _close_whole_position(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        pos = self.positions[symbol]
        if pos.amount == 0:
            return None
        side = "SELL" if pos.amount > 0 else "BUY"
        order = self._new_market_order(symbol, side, abs(pos.amount), client_id, reduce_only=True)
        self._fill_market(order, self.price(symbol))
        return order

    def lift_ban(self) -> None:
        self._banned_until_ms = 0

    def calls(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method.upper())]

    @property
    def used_weight(self) -> int:
        self._roll_weight()
        return self._weight_used

    # ------------------------------------------------------------------ HTTP plumbing
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_query = request.raw_path.partition("?")[2]
        body = await request.text()
        params = {**dict(parse_qsl(raw_query, keep_blank_values=True)),
                  **dict(parse_qsl(body, keep_blank_values=True))}
        params.pop("signature", None)
        method, path = request.method.upper(), request.path
        self.requests.append(RecordedRequest(method, path, params, self.now_ms(),
                                             request.headers.get("X-MBX-APIKEY")))
        try:
            return await self._dispatch(request, method, path, params, raw_query + body)
        except FakeApiError as exc:
            return self._error(exc)

    async def _dispatch(self, request: web.Request, method: str, path: str, params: dict[str, str],
                        total: str) -> web.StreamResponse:
        if self.now_ms() < self._banned_until_ms:
            raise FakeApiError(418, -1003, _PRESETS["418"][2].format(until=self._banned_until_ms),
                               {"Retry-After": str(max(1, (self._banned_until_ms - self.now_ms()) // 1000))})
        route = self._routes.get((method, path))
        if route is None:
            raise FakeApiError(404, -5000, f"Path {path}, Method {method} is invalid")
        handler, signed, weight_fn = route
        weight = weight_fn(params)
        fault = self.faults.take(method, path, params.get("symbol"))
        if fault is not None and fault.kind == "timeout" and not fault.accepts:
            # the request hangs and is never processed (a crash test kills the client meanwhile)
            self.held.append(RecordedRequest(method, path, params, self.now_ms(), request.headers.get("X-MBX-APIKEY")))
            await asyncio.sleep(fault.delay)
            raise FakeApiError(408, -1007, "Timeout waiting for response from backend server. Send status unknown; "
                                           "execution status unknown.")
        if fault is not None and not fault.accepts:
            raise self._fault_error(fault)
        self._charge(weight)
        if signed:
            self._authenticate(request, params, total)
        result = handler(params)
        if fault is not None:
            return await self._faulty_answer(request, fault)
        return web.json_response(result, headers=self._headers(order=path.endswith(("order", "algoOrder"))
                                                                  and method == "POST"))

    async def _faulty_answer(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
            return web.json_response({}, headers=self._headers())
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.json_response({})
        raise self._fault_error(fault)

    def _fault_error(self, fault: Fault) -> FakeApiError:
        status, code, msg = _PRESETS.get(fault.kind, (400, -1000, "Fault injected."))
        status, code, msg = fault.status or status, fault.code if fault.code is not None else code, fault.msg or msg
        headers: dict[str, str] = {}
        if (fault.kind in ("429", "418") or fault.retry_after is not None) and fault.retry_after_header:
            retry_after = fault.retry_after if fault.retry_after is not None else (120 if fault.kind == "418" else 30)
            headers["Retry-After"] = str(int(retry_after))
            if fault.kind == "418":
                self._banned_until_ms = self.now_ms() + int(retry_after * 1000)
                msg = msg.format(until=self._banned_until_ms)
        return FakeApiError(status, code if code is not None else 0, msg, headers)

    def _error(self, exc: FakeApiError) -> web.Response:
        headers = {**self._headers(), **exc.headers}
        if exc.code == 0 and exc.msg.startswith("<"):
            return web.Response(status=exc.status, text=exc.msg, content_type="text/html", headers=headers)
        body: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
        return web.json_response(body, status=exc.status, headers=headers)

    def _headers(self, *, order: bool = False) -> dict[str, str]:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if order:
            headers["X-MBX-ORDER-COUNT-1M"] = str(self._order_count)
        return headers

    def _roll_weight(self) -> None:
        minute = self.now_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used, self._order_count = minute, 0, 0

    def _charge(self, weight: int) -> None:
        self._roll_weight()
        if self._weight_used + weight > self.weight_limit:
            retry = 60 - (self.now_ms() // 1000) % 60
            raise FakeApiError(429, -1003, _PRESETS["429"][2], {"Retry-After": str(retry)})
        self._weight_used += weight
        self.weight_charged += weight

    def _authenticate(self, request: web.Request, params: dict[str, str], total: str) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise FakeApiError(401, -2014, "API-key format invalid.")
        if key != self.api_key:
            raise FakeApiError(401, -2015, _PRESETS["-2015"][2])
        payload, _, signature = total.rpartition("signature=")
        payload = payload.removesuffix("&")
        if not signature:
            raise FakeApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or "
                                           "malformed.")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise FakeApiError(400, -1022, _PRESETS["-1022"][2])
        self._check_timestamp(params)

    def _check_timestamp(self, params: dict[str, str]) -> None:
        if "timestamp" not in params:
            raise FakeApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                           "malformed.")
        ts, window, now = int(params["timestamp"]), int(params.get("recvWindow", 5000)), self.now_ms()
        for epoch in self._epochs:
            shifted = ts + (self._total_jump - epoch)
            if shifted < now + 1000 and now - shifted <= window:
                return
        if ts >= now + 1000:
            raise FakeApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        raise FakeApiError(400, -1021, _PRESETS["-1021"][2])

    # ------------------------------------------------------------------ routes
    def _route_table(self) -> dict[tuple[str, str], tuple[Callable[[dict[str, str]], Any], bool,
                                                           Callable[[dict[str, str]], int]]]:
        def w(n: int) -> Callable[[dict[str, str]], int]:
            return lambda p: n

        def per_symbol(one: int, all_: int) -> Callable[[dict[str, str]], int]:
            return lambda p: one if p.get("symbol") else all_

        v1 = "/fapi/v1/"
        return {
            ("GET", v1 + "ping"): (lambda p: {}, False, w(1)),
            ("GET", v1 + "time"): (lambda p: {"serverTime": self.now_ms()}, False, w(1)),
            ("GET", v1 + "exchangeInfo"): (self._exchange_info, False, w(1)),
            ("GET", v1 + "klines"): (self._klines, False, _klines_weight),
            ("GET", v1 + "ticker/24hr"): (self._ticker_24h, False, per_symbol(1, 40)),
            ("GET", v1 + "premiumIndex"): (self._premium_index, False, per_symbol(1, 10)),
            ("GET", v1 + "fundingRate"): (self._funding_rate, False, w(1)),
            ("GET", v1 + "leverageBracket"): (self._leverage_bracket, True, w(1)),
            ("GET", v1 + "accountConfig"): (self._account_config, True, w(5)),
            ("GET", v1 + "symbolConfig"): (self._symbol_config, True, w(5)),
            ("GET", "/fapi/v2/balance"): (self._balance, True, w(5)),
            ("GET", "/fapi/v3/balance"): (self._balance, True, w(5)),
            ("GET", "/fapi/v2/account"): (self._account, True, w(5)),
            ("GET", "/fapi/v3/account"): (self._account, True, w(5)),
            ("GET", "/fapi/v2/positionRisk"): (lambda p: self._position_risk(p, v2=True), True, w(5)),
            ("GET", "/fapi/v3/positionRisk"): (lambda p: self._position_risk(p, v2=False), True, w(5)),
            ("POST", v1 + "leverage"): (self._set_leverage, True, w(1)),
            ("POST", v1 + "marginType"): (self._set_margin_type, True, w(1)),
            ("POST", v1 + "order"): (self._post_order, True, w(0)),
            ("GET", v1 + "order"): (self._get_order, True, w(1)),
            ("DELETE", v1 + "order"): (self._cancel_order, True, w(1)),
            ("GET", v1 + "openOrders"): (self._open_orders, True, per_symbol(1, 40)),
            ("DELETE", v1 + "allOpenOrders"): (self._cancel_all_orders, True, w(1)),
            ("POST", v1 + "algoOrder"): (self._post_algo, True, w(0)),
            ("GET", v1 + "algoOrder"): (self._get_algo, True, w(1)),
            ("DELETE", v1 + "algoOrder"): (self._cancel_algo, True, w(1)),
            ("GET", v1 + "openAlgoOrders"): (self._open_algos, True, per_symbol(1, 40)),
            ("GET", v1 + "allAlgoOrders"): (self._all_algos, True, w(5)),
            ("DELETE", v1 + "algoOpenOrders"): (self._cancel_all_algos, True, w(1)),
            ("GET", v1 + "userTrades"): (self._user_trades, True, w(5)),
            ("GET", v1 + "allOrders"): (self._all_orders, True, w(5)),
            ("GET", v1 + "income"): (self._income, True, w(30)),
        }

    # ------------------------------------------------------------------ market data handlers
    def _symbol(self, params: dict[str, str], *, required: bool = True) -> str | None:
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise FakeApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                                               "malformed.")
            return None
        if symbol not in self._info:
            raise FakeApiError(400, -1121, "Invalid symbol.")
        return symbol

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                     "limit": self.weight_limit},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}],
                "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True}],
                "symbols": list(self._info.values())}

    def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        symbol = self._symbol(params)
        assert symbol is not None
        interval = params.get("interval", "")
        if interval not in INTERVALS_MS:
            raise FakeApiError(400, -1120, "Invalid interval.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1500:
            raise FakeApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start, end = _time_params(params)
        return self._candle_rows(symbol, INTERVALS_MS[interval], limit, start, end)

    def _candle_rows(self, symbol: str, ims: int, limit: int, start: int | None,
                     end: int | None) -> list[list[Any]]:
        """Candles that have started by now (the last one is forming), Binance's startTime/endTime rules."""
        now = self.now_ms()
        agg = aggregate(self.source_of(symbol), ims, self.data_dir)
        current = now // ims * ims
        n_done = int(np.searchsorted(agg.open_time, current, side="left"))
        forming_ok = (start is None or current >= start) and (end is None or current <= end)
        if start is not None:
            lo = int(np.searchsorted(agg.open_time, start, side="left"))
            hi = min(n_done, lo + limit)
            if end is not None:
                hi = min(hi, int(np.searchsorted(agg.open_time, end, side="right")))
            take_forming = forming_ok and hi - lo < limit
        else:
            hi = n_done if end is None else min(n_done, int(np.searchsorted(agg.open_time, end, side="right")))
            take_forming = forming_ok
            lo = max(0, hi - (limit - 1 if take_forming else limit))
        rows = [_kline_row(int(agg.open_time[i]), agg.open[i], agg.high[i], agg.low[i], agg.close[i],
                           agg.volume[i], ims) for i in range(lo, max(lo, hi))]
        forming = self._forming(symbol, current, now) if take_forming else None
        if forming is not None:
            rows.append(_kline_row(current, *forming, ims))
        return rows

    def _forming(self, symbol: str, bucket: int, now: int) -> tuple[float, float, float, float, float] | None:
        c = load_candles(self.source_of(symbol), self.data_dir)
        lo = int(np.searchsorted(c.open_time, bucket, side="left"))
        hi = int(np.searchsorted(c.open_time, now, side="right"))
        if hi <= lo:
            return None
        price = float(self.price(symbol))
        done = slice(lo, hi - 1)
        high = max([price, *c.high[done].tolist()])
        low = min([price, *c.low[done].tolist()])
        return float(c.open[lo]), high, low, price, float(c.volume[done].sum())

    def _ticker_24h(self, params: dict[str, str]) -> Any:
        symbol = self._symbol(params, required=False)
        rows = [self._ticker_row(s) for s in ([symbol] if symbol else self.symbols)]
        return rows[0] if symbol else rows

    def _ticker_row(self, symbol: str) -> dict[str, Any]:
        now = self.now_ms()
        c = load_candles(self.source_of(symbol), self.data_dir)
        hi = int(np.searchsorted(c.open_time, now, side="right"))
        lo = max(0, hi - 288)
        last = self.price(symbol)
        open_ = Decimal(str(float(c.open[lo])))
        change = last - open_
        quote = float((c.volume[lo:hi] * c.close[lo:hi]).sum())
        return {"symbol": symbol, "priceChange": str(change), "priceChangePercent": f"{change / open_ * 100:.3f}",
                "weightedAvgPrice": str(last), "lastPrice": str(last), "lastQty": "0.001", "openPrice": str(open_),
                "highPrice": str(float(c.high[lo:hi].max())), "lowPrice": str(float(c.low[lo:hi].min())),
                "volume": f"{float(c.volume[lo:hi].sum()):.3f}", "quoteVolume": f"{quote:.2f}",
                "openTime": int(c.open_time[lo]), "closeTime": now, "firstId": 1, "lastId": 2, "count": 2}

    def _premium_index(self, params: dict[str, str]) -> Any:
        symbol = self._symbol(params, required=False)
        rows = [self._premium_row(s) for s in ([symbol] if symbol else self.symbols)]
        return rows[0] if symbol else rows

    def _premium_row(self, symbol: str) -> dict[str, Any]:
        now = self.now_ms()
        times, rates = load_funding(self.source_of(symbol), self.data_dir)
        i = int(np.searchsorted(times, now, side="right"))
        next_time = int(times[i]) if i < len(times) else (now // 28_800_000 + 1) * 28_800_000
        rate = rates[i] if i < len(rates) else rates[-1]
        price = str(self.price(symbol))
        return {"symbol": symbol, "markPrice": price, "indexPrice": price, "estimatedSettlePrice": price,
                "lastFundingRate": rate, "interestRate": "0.00010000", "nextFundingTime": next_time, "time": now}

    def _funding_rate(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Binance's answer: ascending; from startTime when sent (the first ``limit``), else the latest.

        Binance stamps ``fundingTime`` a few milliseconds after the settlement instant (1791273600001,
        1735776000015 in real answers); ``funding_time_jitter_ms`` reproduces that."""
        window = self.now_ms() // 300_000
        self._funding_requests[window] = self._funding_requests.get(window, 0) + 1
        if self._funding_requests[window] > self.funding_request_limit:
            retry = 300 - (self.now_ms() // 1000) % 300
            raise FakeApiError(429, -1003, _PRESETS["429"][2], {"Retry-After": str(retry)})
        symbol = self._symbol(params, required=False)
        limit = min(int(params.get("limit", 100)), 1000)
        start, end = _time_params(params)
        out: list[dict[str, Any]] = []
        for s in [symbol] if symbol else self.symbols:
            times, rates = load_funding(self.source_of(s), self.data_dir)
            for t, r in zip(times.tolist(), rates, strict=True):
                stamped = t + self._funding_jitter(t)
                if t > self.now_ms() or (start is not None and stamped < start) or (end is not None and stamped > end):
                    continue
                out.append({"symbol": s, "fundingTime": stamped, "fundingRate": r,
                            "markPrice": f"{self._price_at(s, t):.8f}", "rateType": "Regular"})
        out.sort(key=lambda r: r["fundingTime"])
        return out[:limit] if start is not None else out[-limit:]

    def _funding_jitter(self, t: int) -> int:
        if not self.funding_time_jitter_ms:
            return 0
        return (t // 3_600_000 * 2_654_435_761) % (self.funding_time_jitter_ms + 1)

    # ------------------------------------------------------------------ account handlers
    def _leverage_bracket(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        data = load_brackets(self.data_dir)
        known = {e["symbol"]: e["brackets"] for e in data["symbols"]}
        return [{"symbol": s, "notionalCoef": 1.0, "brackets": known.get(self.source_of(s), data["default"])}
                for s in ([symbol] if symbol else self.symbols)]

    def _account_config(self, params: dict[str, str]) -> dict[str, Any]:
        return {"feeTier": 0, "canTrade": self.can_trade, "canDeposit": True, "canWithdraw": True,
                "dualSidePosition": self.hedge_mode, "updateTime": 0, "multiAssetsMargin": self.multi_assets,
                "tradeGroupId": -1}

    def _symbol_config(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        return [{"symbol": s, "marginType": self._margin(s), "isAutoAddMargin": "false",
                 "leverage": self._lev(s), "maxNotionalValue": "1000000"}
                for s in ([symbol] if symbol else self.symbols)]

    def _lev(self, symbol: str) -> int:
        return self.leverage.get(symbol, self.default_leverage)

    def _margin(self, symbol: str) -> str:
        return self.margin_type.get(symbol, "CROSSED")

    def _upnl(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return (self.price(symbol) - pos.entry) * pos.amount if pos.amount else D0

    def _initial_margin(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return abs(pos.amount) * self.price(symbol) / self._lev(symbol)

    def available(self) -> Decimal:
        return self.wallet + sum((self._upnl(s) - self._initial_margin(s) for s in self.symbols), D0)

    def _balance(self, params: dict[str, str]) -> list[dict[str, Any]]:
        cross_upnl = sum((self._upnl(s) for s in self.symbols if self._margin(s) == "CROSSED"), D0)
        return [{"accountAlias": "SgsR", "asset": "USDT", "balance": _s(self.wallet),
                 "crossWalletBalance": _s(self.wallet), "crossUnPnl": _s(cross_upnl),
                 "availableBalance": _s(self.available()), "maxWithdrawAmount": _s(self.available()),
                 "marginAvailable": True, "updateTime": self.now_ms()}]

    def _account(self, params: dict[str, str]) -> dict[str, Any]:
        upnl = sum((self._upnl(s) for s in self.symbols), D0)
        im = sum((self._initial_margin(s) for s in self.symbols), D0)
        asset = {"asset": "USDT", "walletBalance": _s(self.wallet), "unrealizedProfit": _s(upnl),
                 "marginBalance": _s(self.wallet + upnl), "maintMargin": "0", "initialMargin": _s(im),
                 "positionInitialMargin": _s(im), "openOrderInitialMargin": "0",
                 "crossWalletBalance": _s(self.wallet), "crossUnPnl": _s(upnl),
                 "availableBalance": _s(self.available()), "maxWithdrawAmount": _s(self.available()),
                 "updateTime": self.now_ms()}
        positions = [{"symbol": s, "positionSide": "BOTH", "positionAmt": _s(p.amount),
                      "unrealizedProfit": _s(self._upnl(s)), "isolatedMargin": "0",
                      "notional": _s(p.amount * self.price(s)), "isolatedWallet": "0",
                      "initialMargin": _s(self._initial_margin(s)), "maintMargin": "0", "updateTime": p.update_ms}
                     for s, p in self.positions.items() if p.amount]
        return {"totalWalletBalance": _s(self.wallet), "totalUnrealizedProfit": _s(upnl),
                "totalMarginBalance": _s(self.wallet + upnl), "availableBalance": _s(self.available()),
                "assets": [asset], "positions": positions}

    def _position_risk(self, params: dict[str, str], *, v2: bool) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        out = []
        for s in [symbol] if symbol else self.symbols:
            pos = self.positions[s]
            has_orders = any(o["symbol"] == s and o["algoStatus"] == "NEW" for o in self.algo_orders.values())
            if not v2 and pos.amount == 0 and not has_orders:
                continue
            sides = [("LONG", max(pos.amount, D0)), ("SHORT", min(pos.amount, D0))] if self.hedge_mode \
                else [("BOTH", pos.amount)]
            out.extend(self._risk_row(s, side, amount, v2) for side, amount in sides)
        return out

    def _risk_row(self, symbol: str, side: str, amount: Decimal, v2: bool) -> dict[str, Any]:
        pos = self.positions[symbol]
        mark = self.price(symbol)
        entry = pos.entry if amount else D0
        upnl = (mark - entry) * amount if amount else D0
        isolated = self._margin(symbol) == "ISOLATED"
        iso_wallet = abs(amount) * entry / self._lev(symbol) if isolated and amount else D0
        row = {"symbol": symbol, "positionSide": side, "positionAmt": _s(amount), "entryPrice": _s(entry),
               "breakEvenPrice": _s(entry), "markPrice": _s(mark), "unRealizedProfit": _s(upnl),
               "liquidationPrice": _s(self._liquidation(symbol, amount, entry, iso_wallet)),
               "isolatedMargin": _s(iso_wallet + upnl if isolated and amount else D0),
               "notional": _s(amount * mark), "marginAsset": "USDT", "isolatedWallet": _s(iso_wallet),
               "initialMargin": _s(abs(amount) * mark / self._lev(symbol)), "maintMargin": "0",
               "positionInitialMargin": _s(abs(amount) * mark / self._lev(symbol)),
               "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
               "updateTime": pos.update_ms}
        if v2:
            row.update({"leverage": str(self._lev(symbol)), "marginType": self._margin(symbol).lower()
                        .replace("crossed", "cross"), "isAutoAddMargin": "false", "maxNotionalValue": "1000000"})
        return row

    def _liquidation(self, symbol: str, amount: Decimal, entry: Decimal, iso_wallet: Decimal) -> Decimal:
        if amount == 0:
            return D0
        data = load_brackets(self.data_dir)
        brackets = {e["symbol"]: e["brackets"] for e in data["symbols"]}.get(self.source_of(symbol), data["default"])
        notional = abs(amount) * entry
        b = next((b for b in brackets if Decimal(b["notionalFloor"]) <= notional < Decimal(b["notionalCap"])),
                 brackets[-1])
        mmr, cum = Decimal(str(b["maintMarginRatio"])), Decimal(str(b["cum"]))
        wb = iso_wallet if self._margin(symbol) == "ISOLATED" else self.wallet
        q = abs(amount)
        lp = (q * entry - wb - cum) / (q * (1 - mmr)) if amount > 0 else (q * entry + wb + cum) / (q * (1 + mmr))
        return max(D0, self._tick(symbol, lp))

    def _set_leverage(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        leverage = int(params.get("leverage", 0))
        if not 1 <= leverage <= 125:
            raise FakeApiError(400, -4028, f"Leverage {leverage} is not valid")
        self.leverage[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}

    def _set_margin_type(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        wanted = params.get("marginType", "").upper()
        wanted = "CROSSED" if wanted == "CROSS" else wanted
        if wanted not in ("ISOLATED", "CROSSED"):
            raise FakeApiError(400, -4044, "The margin type is invalid.")
        if wanted == self._margin(symbol):
            raise FakeApiError(400, -4046, "No need to change margin type.")
        if self.positions[symbol].amount:
            raise FakeApiError(400, -4048, "Margin type cannot be changed if there exists position.")
        self.margin_type[symbol] = wanted
        return {"code": 200, "msg": "success"}

    # ------------------------------------------------------------------ orders
    def _check_position_side(self, params: dict[str, str]) -> None:
        side = params.get("positionSide", "BOTH")
        if (self.hedge_mode and side == "BOTH") or (not self.hedge_mode and side != "BOTH"):
            raise FakeApiError(400, -4061, "Order's position side does not match user's setting.")

    def _check_client_id(self, value: str | None) -> None:
        if value is not None and not CLIENT_ID_RE.match(value):
            raise FakeApiError(400, -4015, "Client order id is not valid.")

    def _post_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        order_type = params.get("type", "")
        if order_type in CONDITIONAL_TYPES:
            raise FakeApiError(400, -4120, "Order type not supported for this endpoint. Please use the Algo "
                                           "Order API endpoints instead.")
        if order_type != "MARKET":
            raise FakeApiError(400, -1116, "Invalid orderType (this fake fills MARKET orders only).")
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise FakeApiError(400, -1117, "Invalid side.")
        self._check_position_side(params)
        client_id = params.get("newClientOrderId") or f"x-fake{next(self._ids)}"
        self._check_client_id(client_id)
        if any(o["clientOrderId"] == client_id and o["symbol"] == symbol for o in self.orders.values()):
            raise FakeApiError(400, -4116, "ClientOrderId is duplicated.")
        quantity = self._quantity(symbol, params)
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        price = self.price(symbol)
        self._pre_trade_checks(symbol, side, quantity, price, reduce_only)
        order = self._new_market_order(symbol, side, quantity, client_id, reduce_only=reduce_only)
        fraction, self.expire_next_market = self.expire_next_market, None
        if fraction is not None:  # the book ran out: partly filled, the rest EXPIRED
            filled = (quantity * fraction / self._step(symbol)).to_integral_value() * self._step(symbol)
            order["origQty"] = _s(filled)
            self._fill_market(order, price)
            order.update(status="EXPIRED", origQty=_s(quantity))
        else:
            self._fill_market(order, price)
        self._order_count += 1
        return dict(order)

    def _quantity(self, symbol: str, params: dict[str, str]) -> Decimal:
        try:
            quantity = Decimal(params["quantity"])
        except (KeyError, ArithmeticError):
            raise FakeApiError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or "
                                           "malformed.") from None
        if quantity <= 0:
            raise FakeApiError(400, -4003, "Quantity less than or equal to zero.")
        if quantity % self._step(symbol) != 0:
            raise FakeApiError(400, -1111, "Precision is over the maximum defined for this asset.")
        lot = self._filter(symbol, "MARKET_LOT_SIZE")
        if quantity > Decimal(lot["maxQty"]):
            raise FakeApiError(400, -4005, "Quantity greater than max quantity.")
        return quantity

    def _pre_trade_checks(self, symbol: str, side: str, quantity: Decimal, price: Decimal,
                          reduce_only: bool) -> None:
        amount = self.positions[symbol].amount
        signed = quantity if side == "BUY" else -quantity
        if reduce_only and (amount == 0 or (amount > 0) == (signed > 0) or quantity > abs(amount)):
            raise FakeApiError(400, -2022, "ReduceOnly Order is rejected.")
        if reduce_only:
            return
        if quantity * price < Decimal(self._filter(symbol, "MIN_NOTIONAL")["notional"]):
            raise FakeApiError(400, -4164, _PRESETS["-4164"][2])
        increase = quantity if amount == 0 or (amount > 0) == (signed > 0) else max(D0, quantity - abs(amount))
        needed = increase * price / self._lev(symbol) + quantity * price * self.taker_fee
        if increase and needed > self.available():
            raise FakeApiError(400, -2019, _PRESETS["-2019"][2])

    def _new_market_order(self, symbol: str, side: str, quantity: Decimal, client_id: str, *,
                          reduce_only: bool, at_ms: int | None = None) -> dict[str, Any]:
        order_id = next(self._ids)
        now = self.now_ms() if at_ms is None else at_ms
        order = {"orderId": order_id, "symbol": symbol, "status": "NEW", "clientOrderId": client_id, "price": "0",
                 "avgPrice": "0", "origQty": _s(quantity), "executedQty": "0", "cumQty": "0", "cumQuote": "0",
                 "timeInForce": "GTC", "type": "MARKET", "reduceOnly": reduce_only, "closePosition": False,
                 "side": side, "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                 "priceProtect": False, "origType": "MARKET", "priceMatch": "NONE",
                 "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": now, "updateTime": now}
        self.orders[order_id] = order
        return order

    def _fill_market(self, order: dict[str, Any], price: Decimal, at_ms: int | None = None) -> None:
        symbol, side, quantity = order["symbol"], order["side"], Decimal(order["origQty"])
        now = self.now_ms() if at_ms is None else at_ms
        before = self.positions[symbol].amount
        realized = self._apply_fill(symbol, side, quantity, price, now)
        if abs(self.positions[symbol].amount) > abs(before):
            self._entered_ms[symbol] = now
        fee = (quantity * price * self.taker_fee).quantize(Decimal("0.00000001"))
        fee_asset, paid = "USDT", fee
        if self.fee_asset != "USDT":  # paid from the BNB balance at the BNBUSDT price of the moment
            fee_asset = self.fee_asset
            paid = (fee / self._price_at(f"{self.fee_asset}USDT", now)).quantize(Decimal("0.00000001"))
            fee = D0
        self.wallet += realized - fee
        trade_id = next(self._ids)
        self.trades.append({"buyer": side == "BUY", "commission": _s(paid), "commissionAsset": fee_asset,
                            "id": trade_id, "maker": False, "orderId": order["orderId"], "price": _s(price),
                            "qty": _s(quantity), "quoteQty": _s(quantity * price), "realizedPnl": _s(realized),
                            "side": side, "positionSide": "BOTH", "symbol": symbol, "time": now})
        if realized:
            self._add_income(symbol, "REALIZED_PNL", realized, str(trade_id), now)
        self._add_income(symbol, "COMMISSION", -paid, str(trade_id), now, asset=fee_asset)
        order.update(status="FILLED", avgPrice=_s(price), executedQty=_s(quantity), cumQty=_s(quantity),
                     cumQuote=_s(quantity * price), updateTime=now)

    def _apply_fill(self, symbol: str, side: str, quantity: Decimal, price: Decimal, now: int) -> Decimal:
        pos = self.positions[symbol]
        signed = quantity if side == "BUY" else -quantity
        old = pos.amount
        realized = D0
        if old == 0 or (old > 0) == (signed > 0):
            new = old + signed
            pos.entry = (abs(old) * pos.entry + quantity * price) / abs(new)
        else:
            closing = min(quantity, abs(old))
            realized = (price - pos.entry) * closing * (1 if old > 0 else -1)
            new = old + signed
            if new == 0:
                pos.entry = D0
            elif (new > 0) != (old > 0):
                pos.entry = price
        pos.amount, pos.update_ms = new, now
        return realized

    def _add_income(self, symbol: str, kind: str, amount: Decimal, info: str, when: int, *,
                    asset: str = "USDT") -> None:
        self.income.append({"symbol": symbol, "incomeType": kind, "income": _s(amount), "asset": asset,
                            "info": info, "time": when, "tranId": next(self._ids), "tradeId": info})

    def _find_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        for order in self.orders.values():
            if order["symbol"] == symbol and (str(order["orderId"]) == params.get("orderId")
                                              or order["clientOrderId"] == params.get("origClientOrderId")):
                return order
        raise FakeApiError(400, -2013, "Order does not exist.")

    def _get_order(self, params: dict[str, str]) -> dict[str, Any]:
        return dict(self._find_order(params))

    def _cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(params)
        if order["status"] != "NEW":
            raise FakeApiError(400, -2011, "Unknown order sent.")
        order.update(status="CANCELED", updateTime=self.now_ms())
        return dict(order)

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return [dict(o) for o in self.open_orders(self._symbol(params, required=False))]

    def _cancel_all_orders(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        for order in self.open_orders(symbol):
            order.update(status="CANCELED", updateTime=self.now_ms())
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------------------------ algo orders
    def _post_algo(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        if params.get("algoType") != "CONDITIONAL":
            raise FakeApiError(400, -1116, "Invalid algoType.")
        order_type = params.get("type", "")
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise FakeApiError(400, -1116, "Invalid orderType (this fake supports STOP_MARKET and "
                                           "TAKE_PROFIT_MARKET).")
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise FakeApiError(400, -1117, "Invalid side.")
        self._check_position_side(params)
        trigger = self._trigger_price(symbol, params)
        close_position = params.get("closePosition", "false").lower() == "true"
        if close_position and "quantity" in params:
            raise FakeApiError(400, -1106, "Parameter 'quantity' sent when not required.")
        if close_position and "reduceOnly" in params:
            raise FakeApiError(400, -1106, "Parameter 'reduceOnly' sent when not required.")
        if not close_position and "quantity" not in params:
            raise FakeApiError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or "
                                           "malformed.")
        client_id = params.get("clientAlgoId") or f"x-fake{next(self._ids)}"
        self._check_client_id(client_id)
        if any(o["clientAlgoId"] == client_id and o["algoStatus"] == "NEW" for o in self.algo_orders.values()):
            raise FakeApiError(400, -4116, "ClientOrderId is duplicated.")  # among open orders only
        entered = self._entered_ms.get(symbol)
        if close_position and entered is not None \
                and self.now_ms() - entered < self.stop_needs_position_for.total_seconds() * 1000:
            raise FakeApiError(400, -4509, "TIF GTE can only be used with open positions.")
        if _would_trigger(order_type, side, trigger, self.price(symbol)):
            raise FakeApiError(400, -2021, "Order would immediately trigger.")
        if close_position and any(o["symbol"] == symbol and o["side"] == side and o["orderType"] == order_type
                                  and o["closePosition"] and o["algoStatus"] == "NEW"
                                  for o in self.algo_orders.values()):
            raise FakeApiError(400, -4130, "An open stop or take profit order with GTE and closePosition in the "
                                           "direction is existing.")
        open_count = sum(1 for o in self.algo_orders.values() if o["symbol"] == symbol and o["algoStatus"] == "NEW")
        limit = self._optional_filter(symbol, "MAX_NUM_ALGO_ORDERS")
        if limit is not None and open_count >= int(limit["limit"]):
            raise FakeApiError(400, -4045, "Reach max stop order limit.")
        algo = self._new_algo(symbol, side, order_type, trigger, client_id, params, close_position)
        self._order_count += 1
        return {k: v for k, v in algo.items() if k not in ("actualOrderId", "actualPrice")}

    def _trigger_price(self, symbol: str, params: dict[str, str]) -> Decimal:
        try:
            trigger = Decimal(params["triggerPrice"])
        except (KeyError, ArithmeticError):
            raise FakeApiError(400, -1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or "
                                           "malformed.") from None
        tick = Decimal(self._filter(symbol, "PRICE_FILTER")["tickSize"])
        if trigger <= 0 or trigger % tick != 0:
            raise FakeApiError(400, -4014, "Price not increased by tick size.")
        return trigger

    def _new_algo(self, symbol: str, side: str, order_type: str, trigger: Decimal, client_id: str,
                  params: dict[str, str], close_position: bool) -> dict[str, Any]:
        algo_id = next(self._ids)
        now = self.now_ms()
        algo = {"algoId": algo_id, "clientAlgoId": client_id, "algoType": "CONDITIONAL", "orderType": order_type,
                "symbol": symbol, "side": side, "positionSide": params.get("positionSide", "BOTH"),
                "timeInForce": params.get("timeInForce", "GTC"), "quantity": params.get("quantity", "0"),
                "algoStatus": "NEW", "actualOrderId": "", "actualPrice": "0", "triggerPrice": _s(trigger),
                "price": "0", "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0",
                "slPrice": "0", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
                "workingType": params.get("workingType", "CONTRACT_PRICE"), "priceMatch": "NONE",
                "closePosition": close_position, "priceProtect": params.get("priceProtect", "FALSE") == "TRUE",
                "reduceOnly": params.get("reduceOnly", "false") == "true", "activatePrice": "",
                "callbackRate": "", "createTime": now, "updateTime": now, "triggerTime": 0, "goodTillDate": 0}
        self.algo_orders[algo_id] = algo
        return algo

    def _find_algo(self, params: dict[str, str]) -> dict[str, Any]:
        for algo in reversed(self.algo_orders.values()):  # a client id reused after its order closed: newest
            if str(algo["algoId"]) == params.get("algoId") or algo["clientAlgoId"] == params.get("clientAlgoId"):
                return algo
        raise FakeApiError(400, -2013, "Order does not exist.")

    def _get_algo(self, params: dict[str, str]) -> dict[str, Any]:
        if "algoId" not in params and "clientAlgoId" not in params:
            raise FakeApiError(400, -1102, "Either algoId or clientAlgoId must be sent.")
        return dict(self._find_algo(params))

    def _cancel_algo(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            algo = self._find_algo(params)
        except FakeApiError:
            raise FakeApiError(400, -2011, "Unknown order sent.") from None
        if algo["algoStatus"] != "NEW":
            raise FakeApiError(400, -2011, "Unknown order sent.")
        algo.update(algoStatus="CANCELED", updateTime=self.now_ms())
        return {"algoId": algo["algoId"], "clientAlgoId": algo["clientAlgoId"], "code": "200", "msg": "success"}

    def _open_algos(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        return [dict(a) for a in self.algo_orders.values()
                if a["algoStatus"] == "NEW" and (symbol is None or a["symbol"] == symbol)]

    def _all_algos(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params)
        return [dict(a) for a in self.algo_orders.values() if a["symbol"] == symbol]

    def _cancel_all_algos(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        for algo in self.algo_orders.values():
            if algo["symbol"] == symbol and algo["algoStatus"] == "NEW":
                algo.update(algoStatus="CANCELED", updateTime=self.now_ms())
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------------------------ history
    def _user_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params)
        start, end = _time_range(params, self.now_ms())
        if end - start > SEVEN_DAYS_MS:
            raise FakeApiError(400, -1127, "More than 7 days between startTime and endTime.")
        limit = min(int(params.get("limit", 500)), 1000)
        visible = self.now_ms() - int(self.trades_lag.total_seconds() * 1000)
        shown = [t for t in self.trades if t["symbol"] == symbol and t["time"] <= visible]
        rows = [t for t in shown if start <= t["time"] <= end]
        if "fromId" in params:
            rows = [t for t in shown if t["id"] >= int(params["fromId"])]
        return [dict(t) for t in rows[:limit]]

    def _all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Plain orders (Vigil's, the operator's, liquidations) whose last update is in the time range."""
        symbol = self._symbol(params)
        start, end = _time_range(params, self.now_ms())
        if end - start > SEVEN_DAYS_MS:
            raise FakeApiError(400, -1127, "More than 7 days between startTime and endTime.")
        limit = min(int(params.get("limit", 500)), 1000)
        rows = [o for o in self.orders.values() if o["symbol"] == symbol and start <= o["updateTime"] <= end]
        return [dict(o) for o in sorted(rows, key=lambda o: o["updateTime"])[:limit]]

    def _income(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        start, end = _time_range(params, self.now_ms())
        limit = min(int(params.get("limit", 100)), 1000)
        kind = params.get("incomeType")
        rows = [r for r in self.income if start <= r["time"] <= end and (symbol is None or r["symbol"] == symbol)
                and (kind is None or r["incomeType"] == kind)]
        return [dict(r) for r in rows[:limit]]

    # ------------------------------------------------------------------ simulation
    def _walk(self, from_ms: int, to_ms: int) -> None:
        """Replay the market between two instants: funding first at its time, then each candle's range."""
        for when, kind, symbol, payload in sorted(self._events(from_ms, to_ms), key=lambda e: (e[0], e[1])):
            if kind == 0:
                self._pay_funding(symbol, when, Decimal(payload))
            else:
                o, h, low = payload
                self._trigger_candle(symbol, when, o, h, low)

    def _events(self, from_ms: int, to_ms: int) -> Iterator[tuple[int, int, str, Any]]:
        """Funding for symbols holding a position, candles for symbols with pending algo orders (nothing
        else can change during a walk: positions only shrink, no request is served meanwhile)."""
        watched = {a["symbol"] for a in self.algo_orders.values() if a["algoStatus"] == "NEW"}
        for symbol in self.symbols:
            if self.positions[symbol].amount:
                times, rates = load_funding(self.source_of(symbol), self.data_dir)
                lo = int(np.searchsorted(times, from_ms, side="right"))
                hi = int(np.searchsorted(times, to_ms, side="right"))
                for i in range(lo, hi):
                    yield int(times[i]), 0, symbol, rates[i]
            if symbol not in watched:
                continue
            c = load_candles(self.source_of(symbol), self.data_dir)
            lo = int(np.searchsorted(c.open_time, from_ms // FIVE_MIN * FIVE_MIN, side="left"))
            hi = int(np.searchsorted(c.open_time, to_ms, side="right"))
            for i in range(lo, hi):
                t = int(c.open_time[i])
                if t + FIVE_MIN <= to_ms:  # a candle fully passed: its whole range
                    yield t, 1, symbol, tuple(self._tick(symbol, Decimal(str(float(x))))
                                              for x in (c.open[i], c.high[i], c.low[i]))
                elif t > from_ms:  # the candle we land in: only its open so far
                    p = self._tick(symbol, Decimal(str(float(c.open[i]))))
                    yield t, 1, symbol, (p, p, p)

    def _pay_funding(self, symbol: str, when: int, rate: Decimal) -> None:
        pos = self.positions[symbol]
        if pos.amount == 0:
            return
        amount = (-pos.amount * self._price_at(symbol, when) * rate).quantize(Decimal("0.00000001"))
        self.wallet += amount
        self._add_income(symbol, "FUNDING_FEE", amount, "FUNDING_FEE", when)

    def _trigger_candle(self, symbol: str, when: int, o: Decimal, high: Decimal, low: Decimal) -> None:
        pending = [a for a in self.algo_orders.values() if a["symbol"] == symbol and a["algoStatus"] == "NEW"]
        pending.sort(key=lambda a: (a["orderType"] != "STOP_MARKET", a["algoId"]))  # stops first: pessimistic
        for algo in pending:
            trigger = Decimal(algo["triggerPrice"])
            fill = _fill_price(algo["orderType"], algo["side"], trigger, o, high, low)
            if fill is not None:
                self._execute_algo(algo, fill, when)

    def _execute_algo(self, algo: dict[str, Any], price: Decimal, when: int) -> None:
        symbol, pos = algo["symbol"], self.positions[algo["symbol"]]
        closes = (pos.amount > 0 and algo["side"] == "SELL") or (pos.amount < 0 and algo["side"] == "BUY")
        algo.update(triggerTime=when, updateTime=when)
        if not algo["closePosition"] or not closes:
            algo["algoStatus"] = "EXPIRED"  # nothing to close any more
            return
        order = self._new_market_order(symbol, algo["side"], abs(pos.amount), f"algo_{algo['algoId']}",
                                       reduce_only=True, at_ms=when)
        order.update(type="MARKET", origType=algo["orderType"], closePosition=True,
                     stopPrice=algo["triggerPrice"], workingType=algo["workingType"])
        self._fill_market(order, price, when)
        algo.update(algoStatus="FINISHED", actualOrderId=str(order["orderId"]), actualPrice=_s(price))


# ---------------------------------------------------------------------------------------------- helpers
def _renamed_entry(entry: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of an exchangeInfo symbol entry (filters included) under another symbol name."""
    out = copy.deepcopy(entry)
    out.update(symbol=name, pair=name, baseAsset=name.removesuffix(str(entry.get("quoteAsset", "USDT"))))
    return out


def _s(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value else "0"
    return text


def _kline_row(open_time: int, o: float, h: float, low: float, c: float, v: float, ims: int) -> list[Any]:
    return [open_time, str(float(o)), str(float(h)), str(float(low)), str(float(c)), f"{float(v):.3f}",
            open_time + ims - 1, f"{float(v) * float(c):.4f}", 100, f"{float(v) / 2:.3f}",
            f"{float(v) * float(c) / 2:.4f}", "0"]


def _klines_weight(params: dict[str, str]) -> int:
    limit = int(params.get("limit", 500))
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _time_params(params: dict[str, str]) -> tuple[int | None, int | None]:
    """startTime/endTime of a market-data request; Binance refuses a start after the end (-1023)."""
    start = int(params["startTime"]) if "startTime" in params else None
    end = int(params["endTime"]) if "endTime" in params else None
    if start is not None and end is not None and start > end:
        raise FakeApiError(400, -1023, "Start time is greater than end time.")
    return start, end


def _time_range(params: dict[str, str], now: int) -> tuple[int, int]:
    start, end = params.get("startTime"), params.get("endTime")
    if start is None and end is None:
        return now - SEVEN_DAYS_MS, now
    if end is None:
        return int(start), int(start) + SEVEN_DAYS_MS  # type: ignore[arg-type]
    if start is None:
        return int(end) - SEVEN_DAYS_MS, int(end)
    return int(start), int(end)


def _would_trigger(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    stop = order_type.startswith("STOP")
    if side == "SELL":
        return trigger >= price if stop else trigger <= price
    return trigger <= price if stop else trigger >= price


def _fill_price(order_type: str, side: str, trigger: Decimal, o: Decimal, high: Decimal,
                low: Decimal) -> Decimal | None:
    """Where a conditional market order fills in a candle, or None if it does not trigger (gaps fill at open)."""
    stop = order_type.startswith("STOP")
    falls = (side == "SELL") == stop  # fires on a fall: SELL stop or BUY take-profit
    if falls:
        return None if low > trigger else (o if o <= trigger else trigger)
    return None if high < trigger else (o if o >= trigger else trigger)


class FakeSleep:
    """Injectable async sleep: records each delay and moves a ``ManualClock`` (and, if given, the fake
    exchange's clock too) instead of waiting."""

    def __init__(self, clock: Any, fake: FakeBinanceFutures | None = None) -> None:
        self.clock = clock
        self.fake = fake
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))
        if self.fake is not None:
            await self.fake.advance(timedelta(seconds=seconds))
        await asyncio.sleep(0)
