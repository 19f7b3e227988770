"""BinanceFutures over real HTTP against FakeBinanceFutures (the real python-binance AsyncClient)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from binance import AsyncClient

from core.clock import ManualClock, to_ms
from engine.exchange.binance import BinanceFutures
from engine.exchange.errors import AccountConfigError, AuthenticationError, OrderNotFound, UnknownSymbol
from engine.exchange.protocol import Exchange
from engine.exchange.types import MarginType, OrderStatus, PositionSide, ProtectiveKind, ProtectiveStatus, Side
from tests.fakes.binance_server import (
    DEFAULT_START,
    TEST_API_KEY,
    TEST_API_SECRET,
    FakeBinanceFutures,
    FakeSleep,
    load_candles,
    load_funding,
)

T0 = DEFAULT_START  # 2025-03-03 00:00:30 UTC on the fake's clock




def price(fake: FakeBinanceFutures, symbol: str = "BTCUSDT") -> Decimal:
    return fake.price(symbol)


# ------------------------------------------------------------------------------------------ start-up
async def test_satisfies_the_exchange_protocol(ex: BinanceFutures) -> None:
    assert isinstance(ex, Exchange)


async def test_open_syncs_clock_from_futures_time_and_never_calls_spot(ex: BinanceFutures,
                                                                      fake: FakeBinanceFutures) -> None:
    assert fake.requests[0].path == "/fapi/v1/time"
    assert all(r.path.startswith("/fapi/") for r in fake.requests)
    expected = fake.now_ms() - int(time.time() * 1000)
    assert abs(ex.time_offset_ms - expected) < 2000


async def test_rules_parsed_from_exchange_info_with_brackets(ex: BinanceFutures) -> None:
    rules = await ex.symbol_rules()
    assert set(rules) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    btc = rules["BTCUSDT"]
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (
        Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("5"))
    assert btc.market_max_qty == Decimal("120")
    assert btc.brackets[0].initial_leverage == 125
    assert btc.brackets[0].maint_margin_ratio == Decimal("0.004")
    assert ex.weight.limit == 2400  # from exchangeInfo rateLimits


async def test_connect_with_wrong_key_fails_clearly(fake: FakeBinanceFutures) -> None:
    with pytest.raises(AuthenticationError, match="API key"):
        await BinanceFutures.connect("wrong-key", TEST_API_SECRET, base_url=fake.base_url)


async def test_from_settings_uses_env_keys_and_base_url(fake: FakeBinanceFutures) -> None:
    from settings import Settings

    settings = Settings(_env_file=None, binance_api_key=TEST_API_KEY, binance_api_secret=TEST_API_SECRET,
                        binance_base_url=fake.base_url, binance_env="testnet")
    adapter = BinanceFutures.from_settings(settings, request_timeout=1.0)
    assert TEST_API_SECRET not in repr(adapter) and TEST_API_KEY not in repr(adapter)
    async with adapter:
        assert adapter.env == "testnet"
        assert (await adapter.balance()).wallet_balance == Decimal(1000)


@pytest.mark.parametrize(("env", "host"), [("live", "https://fapi.binance.com/fapi"),
                                           ("testnet", "https://testnet.binancefuture.com/fapi"),
                                           ("demo", "https://demo-fapi.binance.com/fapi")])
async def test_env_selects_the_futures_url_and_base_url_overrides_it(env: str, host: str) -> None:
    adapter = BinanceFutures(env=env)  # type: ignore[arg-type]
    overridden = BinanceFutures(env=env, base_url="http://127.0.0.1:9000/")  # type: ignore[arg-type]
    try:
        assert adapter._require_client()._create_futures_api_uri("time") == f"{host}/v1/time"
        assert overridden._require_client()._create_futures_api_uri("time", 3) == "http://127.0.0.1:9000/fapi/v3/time"
    finally:
        await adapter.close()
        await overridden.close()


# ------------------------------------------------------------------------------------------ market data
async def test_latest_klines_end_with_the_forming_candle(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    batch = await ex.klines("BTCUSDT", "5m", limit=10)
    assert len(batch) == 10
    now = fake.now_ms()
    assert batch.open_time[-1] == now // 300_000 * 300_000
    assert np.all(np.diff(batch.open_time) == 300_000)
    assert batch.close[-1] == float(price(fake))
    data = load_candles("BTCUSDT")
    i = int(np.searchsorted(data.open_time, batch.open_time[-2]))
    assert batch.close[-2] == data.close[i] and batch.high[-2] == data.high[i]


async def test_klines_from_start_and_paging_past_1500(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    start = to_ms(datetime(2025, 2, 1, tzinfo=UTC))
    batch = await ex.klines("ETHUSDT", "5m", start_ms=start, limit=2000)
    assert len(batch) == 2000
    assert batch.open_time[0] == start
    assert np.all(np.diff(batch.open_time) == 300_000)
    assert len(fake.calls("/fapi/v1/klines")) == 2
    latest = await ex.klines("ETHUSDT", "5m", limit=1600)
    assert len(latest) == 1600 and np.all(np.diff(latest.open_time) == 300_000)


async def test_hourly_klines_aggregate_the_real_5m_data(ex: BinanceFutures) -> None:
    hourly = await ex.klines("BTCUSDT", "1h", limit=3)
    five = await ex.klines("BTCUSDT", "5m", start_ms=int(hourly.open_time[0]), limit=12)
    assert hourly.open[0] == five.open[0]
    assert hourly.high[0] == five.high.max() and hourly.low[0] == five.low.min()
    assert hourly.close[0] == five.close[-1]
    assert hourly.volume[0] == pytest.approx(five.volume.sum(), rel=1e-6)


async def test_tickers_and_mark_price(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    tickers = {t.symbol: t for t in await ex.tickers_24h()}
    assert set(tickers) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert tickers["BTCUSDT"].last_price == price(fake)
    assert tickers["BTCUSDT"].quote_volume > 1_000_000_000
    mark = await ex.mark_price("ETHUSDT")
    assert mark.mark_price == price(fake, "ETHUSDT")
    assert mark.next_funding_time == datetime(2025, 3, 3, 8, tzinfo=UTC)
    assert mark.time > T0 - timedelta(seconds=1)


async def test_unknown_symbol(ex: BinanceFutures) -> None:
    with pytest.raises(UnknownSymbol):
        await ex.mark_price("FOOUSDT")


async def test_funding_rates_match_the_bundled_history(ex: BinanceFutures) -> None:
    start, end = datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 2, 3, 16, tzinfo=UTC)
    rates = await ex.funding_rates("SOLUSDT", start, end)
    times, values = load_funding("SOLUSDT")
    expected = [(t, Decimal(v)) for t, v in zip(times.tolist(), values, strict=True)
                if to_ms(start) <= t <= to_ms(end)]
    assert [(to_ms(r.funding_time), r.rate) for r in rates] == expected
    assert len(rates) == 9


# ------------------------------------------------------------------------------------------ account
async def test_account_config_balance_and_no_positions(ex: BinanceFutures) -> None:
    config = await ex.account_config()
    assert (config.can_trade, config.hedge_mode, config.multi_assets_margin) == (True, False, False)
    balance = await ex.balance()
    assert balance.wallet_balance == balance.available_balance == Decimal(1000)
    assert await ex.positions() == []


async def test_hedge_and_multi_assets_switches(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.set_hedge_mode()
    fake.set_multi_assets()
    config = await ex.account_config()
    assert config.hedge_mode and config.multi_assets_margin
    with pytest.raises(AccountConfigError, match="Hedge mode"):
        await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.002"), "hedge-1")


async def test_leverage_and_margin_type_are_idempotent(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.set_leverage("BTCUSDT", 7)
    await ex.set_margin_type("BTCUSDT", MarginType.ISOLATED)
    await ex.set_margin_type("BTCUSDT", MarginType.ISOLATED)  # -4046 "No need to change" is success
    assert fake.leverage["BTCUSDT"] == 7 and fake.margin_type["BTCUSDT"] == "ISOLATED"
    assert fake.calls("/fapi/v1/leverage")[0].params["leverage"] == "7"
    assert len(fake.calls("/fapi/v1/marginType")) == 2


async def test_positions_carry_leverage_and_margin_type(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.set_leverage("SOLUSDT", 4)
    await ex.set_margin_type("SOLUSDT", MarginType.ISOLATED)
    await ex.place_market_order("SOLUSDT", Side.SELL, Decimal("1"), "sol-open-1")
    # an open algo order on ETH (no position) makes v3 positionRisk list ETH with amount 0
    eth = price(fake, "ETHUSDT")
    await ex.place_protective_order("ETHUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, eth - 100, "eth-sl-1")
    [pos] = await ex.positions()
    assert (pos.symbol, pos.side, pos.quantity) == ("SOLUSDT", PositionSide.SHORT, Decimal("1"))
    assert pos.leverage == 4 and pos.margin_type is MarginType.ISOLATED
    assert pos.entry_price == price(fake, "SOLUSDT")
    assert pos.liquidation_price > pos.entry_price
    assert fake.calls("/fapi/v3/positionRisk") and fake.calls("/fapi/v1/symbolConfig")


async def test_position_opened_and_closed_by_hand(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    fake.open_position_by_hand("ETHUSDT", "BUY", "0.5")
    [pos] = await ex.positions()
    assert (pos.symbol, pos.side, pos.quantity) == ("ETHUSDT", PositionSide.LONG, Decimal("0.5"))
    await fake.advance(timedelta(hours=2))
    fake.close_position_by_hand("ETHUSDT")
    assert await ex.positions() == []
    fills = await ex.fills("ETHUSDT", T0 - timedelta(hours=1))
    assert [f.side for f in fills] == [Side.BUY, Side.SELL]
    assert fills[1].realized_pnl == (fills[1].price - fills[0].price) * Decimal("0.5")


# ------------------------------------------------------------------------------------------ orders
async def test_market_order_sends_client_id_and_result_type(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    result = await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.010"), "T42-entry-1")
    [sent] = fake.calls("/fapi/v1/order", "POST")
    assert sent.params["type"] == "MARKET" and sent.params["side"] == "BUY"
    assert sent.params["newClientOrderId"] == "T42-entry-1"
    assert sent.params["newOrderRespType"] == "RESULT"
    assert sent.params["quantity"] == "0.01"
    assert "reduceOnly" not in sent.params
    assert result.status is OrderStatus.FILLED and result.client_id == "T42-entry-1"
    assert result.filled_quantity == Decimal("0.01") and result.avg_price == price(fake)
    close = await ex.place_market_order("BTCUSDT", Side.SELL, Decimal("0.01"), "T42-exit-1", reduce_only=True)
    assert fake.calls("/fapi/v1/order", "POST")[-1].params["reduceOnly"] == "true"
    assert close.reduce_only and await ex.positions() == []


async def test_get_order_by_client_id(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    placed = await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.002"), "T1-entry-1")
    found = await ex.get_order("BTCUSDT", "T1-entry-1")
    assert found == placed
    assert fake.calls("/fapi/v1/order", "GET")[0].params["origClientOrderId"] == "T1-entry-1"
    assert await ex.get_order("BTCUSDT", "never-sent") is None


async def test_client_ids_that_break_signing_are_refused_before_sending(ex: BinanceFutures,
                                                                       fake: FakeBinanceFutures) -> None:
    before = len(fake.requests)
    with pytest.raises(ValueError, match="client id"):
        await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.002"), "T1:entry/1")
    assert len(fake.requests) == before


async def test_why_colons_are_refused_python_binance_signs_raw_but_sends_encoded(fake: FakeBinanceFutures) -> None:
    client = AsyncClient(TEST_API_KEY, TEST_API_SECRET)
    client.FUTURES_URL = f"{fake.base_url}/fapi"
    client.timestamp_offset = fake.now_ms() - int(time.time() * 1000)
    try:
        from binance.exceptions import BinanceAPIException

        with pytest.raises(BinanceAPIException) as info:
            await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002",
                                              newClientOrderId="T1:entry")
        assert info.value.code == -1022
    finally:
        await client.close_connection()


async def test_protective_stop_goes_to_the_algo_api_with_exact_parameters(ex: BinanceFutures,
                                                                         fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "T7-entry-1")
    trigger = price(fake) - Decimal("1500.3")
    stop = await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, trigger, "T7-sl-1")
    [sent] = fake.calls("/fapi/v1/algoOrder", "POST")
    assert {k: v for k, v in sent.params.items() if k not in ("timestamp", "recvWindow")} == {
        "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
        "triggerPrice": str(trigger), "closePosition": "true", "workingType": "MARK_PRICE",
        "clientAlgoId": "T7-sl-1"}
    assert len(fake.calls("/fapi/v1/order", "POST")) == 1  # only the entry
    assert stop.exchange_id == str(next(iter(fake.algo_orders)))
    assert (stop.kind, stop.status, stop.trigger_price, stop.side) == (
        ProtectiveKind.STOP_LOSS, ProtectiveStatus.NEW, trigger, Side.SELL)


async def test_query_list_and_cancel_algo_orders(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("ETHUSDT", Side.SELL, Decimal("0.1"), "T8-entry-1")
    p = price(fake, "ETHUSDT")
    await ex.place_protective_order("ETHUSDT", Side.BUY, ProtectiveKind.STOP_LOSS, p + 50, "T8-sl-1")
    await ex.place_protective_order("ETHUSDT", Side.BUY, ProtectiveKind.TAKE_PROFIT, p - 80, "T8-tp-1")
    got = await ex.get_protective_order("ETHUSDT", "T8-tp-1")
    assert got is not None and got.kind is ProtectiveKind.TAKE_PROFIT and got.status is ProtectiveStatus.NEW
    assert fake.calls("/fapi/v1/algoOrder", "GET")[0].params["clientAlgoId"] == "T8-tp-1"
    assert [o.client_id for o in await ex.open_protective_orders("ETHUSDT")] == ["T8-sl-1", "T8-tp-1"]
    assert fake.calls("/fapi/v1/openAlgoOrders")[0].params["symbol"] == "ETHUSDT"
    assert len(await ex.open_protective_orders()) == 2
    await ex.cancel_protective_order("ETHUSDT", "T8-sl-1")
    assert fake.calls("/fapi/v1/algoOrder", "DELETE")[0].params["clientAlgoId"] == "T8-sl-1"
    cancelled = await ex.get_protective_order("ETHUSDT", "T8-sl-1")
    assert cancelled is not None and cancelled.status is ProtectiveStatus.CANCELED
    assert [o.client_id for o in await ex.open_protective_orders()] == ["T8-tp-1"]
    with pytest.raises(OrderNotFound):
        await ex.cancel_protective_order("ETHUSDT", "T8-sl-1")
    assert await ex.get_protective_order("ETHUSDT", "nope") is None


async def test_stop_triggers_on_price_and_books_the_exit(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "T9-entry-1")
    entry = price(fake)
    sl, tp = entry - 1000, entry + 2000
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, sl, "T9-sl-1")
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.TAKE_PROFIT, tp, "T9-tp-1")
    await fake.set_price("BTCUSDT", entry - 1200)  # a jump through the stop: fills at the new price (gap)
    assert await ex.positions() == []
    stop = await ex.get_protective_order("BTCUSDT", "T9-sl-1")
    assert stop is not None and stop.status is ProtectiveStatus.FINISHED and stop.triggered_order_id
    assert [o.client_id for o in await ex.open_protective_orders()] == ["T9-tp-1"]  # the trader cancels it
    fills = await ex.fills("BTCUSDT", T0 - timedelta(minutes=5))
    exit_fill = fills[-1]
    assert (exit_fill.side, exit_fill.price, exit_fill.order_id) == (Side.SELL, entry - 1200,
                                                                      stop.triggered_order_id)
    assert exit_fill.realized_pnl == Decimal("-12.0")
    balance = await ex.balance()
    assert balance.wallet_balance == Decimal(1000) - 12 - sum(f.fee for f in fills)


async def test_walking_candles_triggers_stops_at_their_time(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "T10-entry-1")
    sl = price(fake) * Decimal("0.97")
    sl = sl.quantize(Decimal("0.1"))
    await ex.place_protective_order("BTCUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, sl, "T10-sl-1")
    await fake.advance(timedelta(days=3))
    stop = await ex.get_protective_order("BTCUSDT", "T10-sl-1")
    assert stop is not None and stop.status is ProtectiveStatus.FINISHED
    data = load_candles("BTCUSDT")
    i = int(np.argmax((data.open_time >= to_ms(T0) - 30_000) & (data.low <= float(sl))))
    assert to_ms(stop.time) == data.open_time[i]  # the first real candle whose low reached the stop
    fills = await ex.fills("BTCUSDT", T0 - timedelta(minutes=5))
    assert to_ms(fills[-1].time) == data.open_time[i]


async def test_funding_payments_at_funding_time(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("ETHUSDT", Side.BUY, Decimal("1"), "T11-entry-1")
    await fake.set_time(datetime(2025, 3, 3, 8, 1, tzinfo=UTC))
    [payment] = await ex.funding_payments("ETHUSDT", T0)
    times, rates = load_funding("ETHUSDT")
    t8 = to_ms(datetime(2025, 3, 3, 8, tzinfo=UTC))
    rate = Decimal(rates[int(np.searchsorted(times, t8))])
    mark_at_8 = fake._price_at("ETHUSDT", t8)
    assert payment.time == datetime(2025, 3, 3, 8, tzinfo=UTC)
    assert payment.amount == (-1 * mark_at_8 * rate).quantize(Decimal("0.00000001"))
    assert fake.calls("/fapi/v1/income")[0].params["incomeType"] == "FUNDING_FEE"


async def test_fills_query_in_windows_of_at_most_seven_days(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.place_market_order("BTCUSDT", Side.BUY, Decimal("0.002"), "T12-entry-1")
    fills = await ex.fills("BTCUSDT", T0 - timedelta(days=20))
    assert [f.quantity for f in fills] == [Decimal("0.002")]
    calls = fake.calls("/fapi/v1/userTrades")
    assert len(calls) == 3
    for call in calls:
        assert int(call.params["endTime"]) - int(call.params["startTime"]) < 7 * 86_400_000


# ------------------------------------------------------------------------------------------ weight
async def test_weight_header_is_tracked(ex: BinanceFutures, fake: FakeBinanceFutures) -> None:
    await ex.tickers_24h()
    assert ex.used_weight == fake.used_weight
    ex.begin_scan()
    await ex.tickers_24h()
    await ex.klines("BTCUSDT", "5m", limit=500)
    await ex.mark_price("BTCUSDT")
    assert ex.scan_weight == 40 + 5 + 1
    assert ex.weight.scan_requests == 3
    assert ex.used_weight == fake.used_weight


async def test_weight_budget_pauses_until_the_next_minute(clock: ManualClock, sleeper: FakeSleep) -> None:
    async with FakeBinanceFutures(weight_limit=100) as fake:
        adapter = await BinanceFutures.connect(None, None, base_url=fake.base_url, clock=clock, sleep=sleeper,
                                               weight_budget_pct=80)
        try:
            assert adapter.weight.budget == 80
            await adapter.tickers_24h()
            assert sleeper.calls == []
            await adapter.tickers_24h()  # 2 + 40 + 40 > 80: wait for the minute to roll instead of a 429
            assert sleeper.calls == [pytest.approx(55.0)]
            assert adapter.weight.throttle_waits == 1
        finally:
            await adapter.close()


# ------------------------------------------------------------------------------------------ public mode
async def test_public_only_mode_serves_market_data_and_refuses_private_calls(fake: FakeBinanceFutures) -> None:
    adapter = await BinanceFutures.connect(base_url=fake.base_url)
    try:
        assert not adapter.has_keys
        assert not fake.calls("/fapi/v1/leverageBracket")
        assert (await adapter.symbol_rules())["BTCUSDT"].brackets == ()
        assert len(await adapter.klines("BTCUSDT", "15m", limit=20)) == 20
        assert await adapter.tickers_24h()
        assert (await adapter.mark_price("BTCUSDT")).mark_price == fake.price("BTCUSDT")
        before = len(fake.requests)
        for call in (adapter.balance(), adapter.positions(), adapter.account_config(),
                     adapter.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), "x-1"),
                     adapter.open_protective_orders()):
            with pytest.raises(AuthenticationError, match="needs Binance API keys"):
                await call
        assert len(fake.requests) == before
        assert all(r.api_key is None for r in fake.requests)
    finally:
        await adapter.close()
