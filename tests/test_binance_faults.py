"""Fault handling of BinanceFutures: each Binance failure maps to the right error, orders are never retried
blindly, reads are, bans stop all calls. Real HTTP against FakeBinanceFutures plus a table of translations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import aiohttp
import pytest
from binance.exceptions import BinanceAPIException

from core.clock import ManualClock
from engine.exchange import binance_errors
from engine.exchange.binance import BinanceFutures, RetryPolicy
from engine.exchange.errors import (
    AuthenticationError,
    ExchangeError,
    FilterViolation,
    InsufficientMargin,
    IpBanned,
    MinNotionalError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    TimestampOutOfSync,
    TransientError,
    UnknownSymbol,
    WouldTrigger,
)
from engine.exchange.types import OrderStatus, ProtectiveKind, ProtectiveStatus, Side
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures, FakeSleep

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"
MARK = "/fapi/v1/premiumIndex"


#: the fake holds this answer for seconds: the adapter's short timeout (tests/binance_fixtures.py) fires
HANGING = pytest.param("timeout", marks=pytest.mark.hangs)


async def buy(ex: BinanceFutures, client_id: str, qty: str = "0.01") -> object:
    return await ex.place_market_order("BTCUSDT", Side.BUY, Decimal(qty), client_id)


# ------------------------------------------------------------------------------------------ rate limits
async def test_429_on_a_read_waits_retry_after_then_retries(ex: BinanceFutures, fake: FakeBinanceFutures,
                                                            sleeper: FakeSleep) -> None:
    fake.faults.next(MARK, "429", retry_after=7)
    mark = await ex.mark_price("BTCUSDT")
    assert mark.mark_price == fake.price("BTCUSDT")
    assert len(fake.calls(MARK)) == 2
    assert sleeper.calls == [7.0]


async def test_429_on_an_order_is_not_retried_and_later_calls_wait_the_cooldown(
        ex: BinanceFutures, fake: FakeBinanceFutures, sleeper: FakeSleep) -> None:
    fake.faults.next(ORDER, "429", method="POST", retry_after=12)
    with pytest.raises(RateLimited) as info:
        await buy(ex, "rl-1")
    assert info.value.retry_after == 12
    assert len(fake.calls(ORDER, "POST")) == 1 and not fake.orders
    await ex.mark_price("BTCUSDT")
    assert sleeper.calls == [12.0]  # honoured Retry-After before touching the API again


async def test_the_servers_own_weight_limit_429_is_waited_out(clock: ManualClock) -> None:
    async with FakeBinanceFutures(weight_limit=60) as fake:
        sleeper = FakeSleep(clock, fake)  # sleeping also moves the exchange's clock
        adapter = await BinanceFutures.connect(None, None, base_url=fake.base_url, clock=clock, sleep=sleeper,
                                               weight_budget_pct=100)
        try:
            assert adapter.weight.limit == 60  # read from exchangeInfo: the adapter would pause by itself...
            adapter.weight.limit = 2400  # ...so pretend it believes a bigger limit to meet the server's 429
            await adapter.tickers_24h()
            await adapter.tickers_24h()  # 2 + 40 + 40 > 60 on the server: a real 429 with Retry-After
            assert [r.path for r in fake.requests].count("/fapi/v1/ticker/24hr") == 3
            assert len(sleeper.calls) == 1 and 0 < sleeper.calls[0] <= 60
        finally:
            await adapter.close()


async def test_cancel_all_algo_orders_endpoint_of_the_fake(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await buy(ex, "ca-entry")
    p = fake.price("BTCUSDT")
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, p - 900, "ca-sl-1")
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.TAKE_PROFIT, p + 900, "ca-tp-1")
    client = ex._require_client()
    answer = await client.futures_cancel_all_algo_open_orders(symbol="BTCUSDT")
    assert answer["code"] == 200
    assert await ex.open_protective_orders() == []


async def test_418_ban_blocks_every_call_until_it_ends(ex: BinanceFutures, fake: FakeBinanceFutures,
                                                       clock: ManualClock) -> None:
    fake.faults.next(MARK, "418", retry_after=300)
    with pytest.raises(IpBanned) as info:
        await ex.mark_price("BTCUSDT")
    assert info.value.until == clock.now() + timedelta(seconds=300)
    assert ex.banned_until == info.value.until
    sent = len(fake.requests)
    for call in (ex.mark_price("BTCUSDT"), ex.balance(), ex.klines("BTCUSDT", "5m", limit=5),
                 ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "ban-1")):
        with pytest.raises(IpBanned):
            await call
    assert len(fake.requests) == sent  # nothing reached the network
    clock.advance(timedelta(seconds=299))
    with pytest.raises(IpBanned):
        await ex.mark_price("BTCUSDT")
    clock.advance(timedelta(seconds=2))
    fake.lift_ban()
    assert (await ex.mark_price("BTCUSDT")).mark_price > 0
    assert ex.banned_until is None


async def test_418_message_without_retry_after_uses_the_ban_time(clock: ManualClock) -> None:
    exc = _api_exc(418, -1003, "Way too many requests; IP(1.2.3.4) banned until 1700000120000. Please use ...")
    err = binance_errors.api_error(exc, op="klines", now=clock.now(), server_now_ms=1_700_000_000_000)
    assert isinstance(err, IpBanned) and err.until == clock.now() + timedelta(seconds=120)


# ------------------------------------------------------------------------------------------ timestamps
async def test_1021_resyncs_the_clock_and_retries_once(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    times_before = len(fake.calls("/fapi/v1/time"))
    fake.faults.next("/fapi/v1/accountConfig", "-1021")
    assert (await ex.account_config()).can_trade
    assert len(fake.calls("/fapi/v1/time")) == times_before + 1
    assert len(fake.calls("/fapi/v1/accountConfig")) == 2


async def test_1021_twice_raises_after_one_resync(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next("/fapi/v1/accountConfig", "-1021", times=2)
    with pytest.raises(TimestampOutOfSync):
        await ex.account_config()
    assert len(fake.calls("/fapi/v1/accountConfig")) == 2


async def test_real_clock_skew_is_fixed_by_the_resync(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.skew_clock(timedelta(seconds=30))
    balance = await ex.balance()
    assert balance.wallet_balance == Decimal(1000)
    assert [r.path for r in fake.requests[-3:]] == ["/fapi/v3/account", "/fapi/v1/time", "/fapi/v3/account"]


async def test_1021_on_an_order_resyncs_and_sends_it_once_more(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next(ORDER, "-1021", method="POST")
    result = await buy(ex, "ts-1")
    assert result.status is OrderStatus.FILLED
    assert len(fake.calls(ORDER, "POST")) == 2 and len(fake.orders) == 1  # the first was rejected unseen


# ------------------------------------------------------------------------------------------ rejections
async def test_insufficient_margin(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next(ORDER, "-2019", method="POST")
    with pytest.raises(InsufficientMargin):
        await buy(ex, "m-1")
    with pytest.raises(InsufficientMargin, match="not enough margin"):
        await buy(ex, "m-2", qty="5")  # the fake's own check: 5 BTC on 1000 USDT at 20x
    assert not fake.orders


async def test_min_notional(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next(ORDER, "-4164", method="POST")
    with pytest.raises(MinNotionalError):
        await buy(ex, "n-1")
    with pytest.raises(MinNotionalError):
        await ex.place_market_order("ETHUSDT", Side.BUY, Decimal("0.001"), "n-2")  # ~2 USDT < 5


async def test_stop_that_would_trigger_immediately(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await buy(ex, "wt-entry")
    above = fake.price("BTCUSDT") + 100
    with pytest.raises(WouldTrigger):
        await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, above, "wt-sl-1")
    fake.faults.next(ALGO, "-4142", method="POST")
    with pytest.raises(WouldTrigger):
        await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, above - 500, "wt-sl-2")


async def test_filter_and_not_found_and_symbol_errors(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    with pytest.raises(FilterViolation):
        await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.0101"), "f-1")
    with pytest.raises(OrderNotFound):
        await ex.cancel_protective_order("BTCUSDT", "never-placed")
    assert await ex.get_order("BTCUSDT", "never-placed") is None
    with pytest.raises(UnknownSymbol):
        await ex.place_market_order("FOOUSDT", Side.BUY, Decimal("1"), "f-2")


async def test_conditional_type_on_the_plain_order_endpoint_is_refused(fake: FakeBinanceFutures) -> None:
    from binance import AsyncClient

    client = AsyncClient(TEST_API_KEY, TEST_API_SECRET)
    client.FUTURES_URL = f"{fake.base_url}/fapi"
    client.timestamp_offset = fake.now_ms() - int(datetime.now(UTC).timestamp() * 1000)
    try:
        with pytest.raises(BinanceAPIException) as info:
            await client._request_futures_api("post", "order", True, data={
                "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stopPrice": "1000",
                "closePosition": "true"})
        assert info.value.code == -4120
    finally:
        await client.close_connection()


async def test_authentication_errors(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next("/fapi/v3/account", "-2015")
    with pytest.raises(AuthenticationError, match="API key"):
        await ex.balance()


# ------------------------------------------------------------------------------------------ unknown outcomes
async def test_503_unknown_on_an_order_is_status_unknown_and_get_order_finds_it(
        ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.faults.next(ORDER, "503_unknown", method="POST")
    with pytest.raises(OrderStatusUnknown) as info:
        await buy(ex, "u-1")
    assert info.value.client_id == "u-1"
    assert len(fake.calls(ORDER, "POST")) == 1  # never retried blindly
    found = await ex.get_order("BTCUSDT", "u-1")
    assert found is not None and found.status is OrderStatus.FILLED and found.client_id == "u-1"


async def test_503_unknown_on_a_stop_is_status_unknown_and_the_query_finds_it(
        ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await buy(ex, "u-entry")
    fake.faults.next(ALGO, "503_unknown", method="POST")
    trigger = fake.price("BTCUSDT") - 800
    with pytest.raises(OrderStatusUnknown) as info:
        await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, trigger, "u-sl-1")
    assert info.value.client_id == "u-sl-1"
    assert len(fake.calls(ALGO, "POST")) == 1
    stop = await ex.get_protective_order("BTCUSDT", "u-sl-1")
    assert stop is not None and stop.status is ProtectiveStatus.NEW and stop.trigger_price == trigger


@pytest.mark.parametrize("kind", [HANGING, "drop"])
async def test_lost_answer_on_an_order_is_status_unknown(ex: BinanceFutures, fake: FakeBinanceFutures,
                                                         kind: str) -> None:
    fake.faults.next(ORDER, kind, method="POST", delay=3.0)
    with pytest.raises(OrderStatusUnknown, match="may or may not"):
        await buy(ex, f"{kind}-1")
    assert len(fake.calls(ORDER, "POST")) == 1
    found = await ex.get_order("BTCUSDT", f"{kind}-1")
    assert found is not None and found.status is OrderStatus.FILLED


async def test_lost_answer_on_a_stop_is_status_unknown(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await buy(ex, "d-entry")
    fake.faults.next(ALGO, "drop", method="POST")
    with pytest.raises(OrderStatusUnknown):
        await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS,
                                        fake.price("BTCUSDT") - 700, "d-sl-1")
    assert await ex.get_protective_order("BTCUSDT", "d-sl-1") is not None


async def test_service_unavailable_on_an_order_is_a_certain_failure(ex: BinanceFutures,
                                                                    fake: FakeBinanceFutures) -> None:
    fake.faults.next(ORDER, "503_unavailable", method="POST")
    with pytest.raises(TransientError) as info:
        await buy(ex, "su-1")
    assert not isinstance(info.value, OrderStatusUnknown)
    assert len(fake.calls(ORDER, "POST")) == 1 and not fake.orders


# ------------------------------------------------------------------------------------------ read retries
@pytest.mark.parametrize("kind", [HANGING, "drop", "502", "-1001", "503_unavailable", "-1008"])
async def test_reads_are_retried_through_transient_failures(ex: BinanceFutures, fake: FakeBinanceFutures,
                                                            sleeper: FakeSleep, kind: str) -> None:
    fake.faults.next(MARK, kind, delay=3.0)
    assert (await ex.mark_price("BTCUSDT")).mark_price == fake.price("BTCUSDT")
    assert len(fake.calls(MARK)) == 2
    # aiohttp itself resends a GET once when a kept-alive connection drops (never a POST)
    assert sleeper.calls == ([] if kind == "drop" else [0.5])


async def test_reads_give_up_after_capped_exponential_backoff(fake: FakeBinanceFutures, clock: ManualClock,
                                                              sleeper: FakeSleep) -> None:
    adapter = await BinanceFutures.connect(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock,
                                           sleep=sleeper, retry=RetryPolicy(max_retries=5, base_delay=1,
                                                                            max_delay=4))
    try:
        fake.faults.next(MARK, "502", times=10)
        with pytest.raises(TransientError, match="HTTP 502") as info:
            await adapter.mark_price("BTCUSDT")
        assert "bound method" not in str(info.value)
        assert sleeper.calls == [1, 2, 4, 4, 4]
        assert len(fake.calls(MARK)) == 6
    finally:
        await adapter.close()


async def test_cancel_is_not_retried_automatically(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await buy(ex, "c-entry")
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, fake.price("BTCUSDT") - 900,
                                    "c-sl-1")
    fake.faults.next(ALGO, "-1001", method="DELETE")
    with pytest.raises(TransientError):
        await ex.cancel_protective_order("BTCUSDT", "c-sl-1")
    assert len(fake.calls(ALGO, "DELETE")) == 1


@pytest.mark.hangs
async def test_errors_never_carry_secrets(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    errors: list[ExchangeError] = []
    for path, kind, method in ((ORDER, "-2019", "POST"), (ORDER, "503_unknown", "POST"), (ORDER, "timeout", "POST"),
                               (ORDER, "429", "POST"), (ORDER, "-2015", "POST"), (ORDER, "418", "POST")):
        fake.faults.next(path, kind, method=method, delay=3.0, retry_after=0.01)
        try:
            await buy(ex, f"s-{len(errors)}")
        except ExchangeError as exc:
            errors.append(exc)
    assert len(errors) == 6
    for exc in errors:
        text = f"{exc} {exc!r} {exc.reason} {exc.args}"
        assert TEST_API_SECRET not in text and TEST_API_KEY not in text and "signature" not in text


# ------------------------------------------------------------------------------------------ translation table
def _api_exc(status: int, code: int | None, msg: str, headers: dict[str, str] | None = None) -> BinanceAPIException:
    body = json.dumps({"code": code, "msg": msg}) if code is not None else msg
    return BinanceAPIException(SimpleNamespace(headers=headers or {}, text=body), status, body)


@pytest.mark.parametrize(("status", "code", "msg", "expected"), [
    (429, -1003, "Too many requests", RateLimited),
    (418, -1003, "banned", IpBanned),
    (400, -1021, "Timestamp outside recvWindow", TimestampOutOfSync),
    (503, -1008, "Request throttled", TransientError),
    (400, -2019, "Margin is insufficient.", InsufficientMargin),
    (400, -2021, "Order would immediately trigger.", WouldTrigger),
    (400, -4142, "will be triggered immediately", WouldTrigger),
    (400, -4164, "notional", MinNotionalError),
    (400, -2011, "Unknown order sent.", OrderNotFound),
    (400, -2013, "Order does not exist.", OrderNotFound),
    (401, -2014, "API-key format invalid.", AuthenticationError),
    (401, -2015, "Invalid API-key", AuthenticationError),
    (400, -1022, "Signature for this request is not valid.", AuthenticationError),
    (400, -1121, "Invalid symbol.", UnknownSymbol),
    (400, -1111, "Precision is over the maximum", FilterViolation),
    (400, -2022, "ReduceOnly Order is rejected.", OrderRejected),
    (400, -4120, "use the Algo Order API", OrderRejected),
    (500, -1001, "Internal error", TransientError),
    (503, None, "Service Unavailable.", TransientError),
])
def test_translation_of_reads(status: int, code: int | None, msg: str, expected: type) -> None:
    err = binance_errors.api_error(_api_exc(status, code, msg, {"Retry-After": "3"}), op="read",
                                   now=datetime(2026, 1, 1, tzinfo=UTC))
    assert type(err) is expected
    assert err.reason.startswith("read: ")


@pytest.mark.parametrize(("status", "code", "msg"), [
    (503, -1000, "Unknown error, please check your request or try again later."),
    (500, -1001, "Internal error; unable to process your request."),
    (408, -1007, "Timeout waiting for response from backend server."),
    (502, None, "<html>Bad Gateway</html>"),
])
def test_unknown_outcomes_on_orders(status: int, code: int | None, msg: str) -> None:
    err = binance_errors.api_error(_api_exc(status, code, msg), op="order", now=datetime(2026, 1, 1, tzinfo=UTC),
                                   order_client_id="T1-entry-1")
    assert isinstance(err, OrderStatusUnknown) and err.client_id == "T1-entry-1"


@pytest.mark.parametrize(("exc", "unknown"), [
    (TimeoutError(), True),
    (aiohttp.ServerDisconnectedError(), True),
    (aiohttp.ClientPayloadError("cut"), True),
    (aiohttp.ClientConnectorError(SimpleNamespace(ssl=None, host="h", port=1), OSError(111, "refused")), False),
])
def test_network_errors_on_orders(exc: BaseException, unknown: bool) -> None:
    err = binance_errors.network_error(exc, op="order", order_client_id="T1-entry-1")
    assert isinstance(err, OrderStatusUnknown) is unknown
    assert isinstance(binance_errors.network_error(exc, op="read"), TransientError)
