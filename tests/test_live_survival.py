"""Issue 10: live trading that survives what real Binance does. Each rule through the real ``AsyncClient`` over
HTTP against the fake Binance server, taught where real Binance is harder than an ideal exchange (-4509 right
after an entry, userTrades lag, BNB commissions, ADL, EXPIRED partial fills, resting plain orders)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.runtime import MONITOR_FAILURE_STREAK, MonitorDegraded, Runtime, build_trader
from core.clock import ManualClock
from core.enums import Mode
from engine.events import Alert, BreakerTripped, EventBus, Level, RecordingSink, TradeClosed
from engine.exchange.binance import BinanceFutures
from engine.exchange.errors import InsufficientMargin, OrderRejected
from engine.exchange.types import ProtectiveKind, Side
from engine.service import EngineService
from engine.trading.reconciler import UNRESOLVED_TICKS
from engine.trading.trader import Trader
from settings import Settings
from storage.db import Database
from storage.records import OrderPurpose, OrderState, TradeStatus
from storage.repositories import Repositories
from tests.binance_fixtures import REQUEST_TIMEOUT
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures, FakeSleep
from tests.trading_fixtures import RULE_PANEL

SIGNAL_TIME = datetime(2025, 3, 3, 21, 15, 1, tzinfo=UTC)  # the real voter signals an ETHUSDT short here
ETH = "ETHUSDT"
BTC = "BTCUSDT"


@dataclass
class Live:
    fake: FakeBinanceFutures
    exchange: BinanceFutures
    trader: Trader
    repos: Repositories
    sink: RecordingSink
    bus: EventBus
    clock: ManualClock
    sleep: FakeSleep
    settings: Settings

    def algos(self, symbol: str = ETH, order_type: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.fake.algo_orders.values() if a["symbol"] == symbol and a["algoStatus"] == "NEW"
                and (order_type is None or a["orderType"] == order_type)]

    def stops(self, symbol: str = ETH) -> list[dict[str, Any]]:
        return self.algos(symbol, "STOP_MARKET")

    def orders(self, symbol: str = ETH) -> list[dict[str, Any]]:
        return [o for o in self.fake.orders.values() if o["symbol"] == symbol]

    def closes(self, symbol: str = ETH) -> list[dict[str, Any]]:
        return [o for o in self.orders(symbol) if o["reduceOnly"] is True and o["type"] == "MARKET"]

    def amount(self, symbol: str = ETH) -> Decimal:
        return self.fake.positions[symbol].amount

    def critical(self) -> list[Alert]:
        return [a for a in self.sink.of(Alert) if a.level is Level.CRITICAL]

    async def tick(self, seconds: float = 60) -> None:
        """Time passes on both clocks (the engine's and the exchange's)."""
        self.clock.advance(timedelta(seconds=seconds))
        await self.fake.advance(timedelta(seconds=seconds))

    def runtime(self) -> Runtime:
        return Runtime.from_parts(self.settings, self.repos, self.bus, self.clock, exchange=self.exchange,
                                  trader=self.trader)


async def open_live(fake: FakeBinanceFutures, db_path: Path, *, request_timeout: float = REQUEST_TIMEOUT,
                    **settings: Any) -> Live:
    clock = ManualClock(fake.now)
    sleep = FakeSleep(clock, fake)  # a retry's wait passes on the exchange too (-4509 is about time)
    exchange = await BinanceFutures.connect(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock,
                                            sleep=sleep, request_timeout=request_timeout)
    db = await Database(db_path).open()
    repos = Repositories(db)
    bus = EventBus()
    sink = RecordingSink()
    bus.subscribe(sink)
    config = Settings(_env_file=None, symbols=[ETH, BTC], universe_size=2, trading_mode="paper",  # type: ignore[call-arg]
                      **{**RULE_PANEL, **settings})
    trader = build_trader(config, mode=Mode.LIVE, exchange=exchange, repos=repos, bus=bus, clock=clock, sleep=sleep)
    await trader.start()
    return Live(fake, exchange, trader, repos, sink, bus, clock, sleep, config)


@pytest.fixture
async def live(tmp_path: Path, request_timeout: float) -> AsyncIterator[Live]:
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        rig = await open_live(fake, tmp_path / "live.sqlite3", request_timeout=request_timeout)
        try:
            yield rig
        finally:
            await rig.exchange.close()
            await rig.repos.db.close()


async def opened(live: Live) -> int:
    (trade_id,) = (await live.trader.scan()).opened
    return trade_id


# ----------------------------------------------------------------------------------------- 1. protect first
async def test_stop_refused_with_4509_right_after_the_entry_is_retried_not_market_closed(live: Live):
    live.fake.stop_needs_position_for = timedelta(seconds=3)
    trade_id = await opened(live)
    assert len(live.stops()) == 1 and live.closes() == []
    stop_posts = [r for r in live.fake.calls("/fapi/v1/algoOrder", "POST") if r.params["type"] == "STOP_MARKET"]
    assert len(stop_posts) >= 2  # refused, then accepted once Binance registered the position
    assert (await live.repos.trades.get(trade_id)).status is TradeStatus.OPEN
    assert live.critical() == []


async def test_stop_retries_503_then_429_honouring_retry_after(live: Live):
    live.fake.faults.next("/fapi/v1/algoOrder", "503_unavailable", method="POST")
    live.fake.faults.next("/fapi/v1/algoOrder", "429", method="POST", retry_after=4)
    await opened(live)
    assert len(live.stops()) == 1 and live.closes() == []
    assert 4.0 in live.sleep.calls  # Retry-After waited before the next request
    assert live.amount() != 0 and live.critical() == []


@pytest.mark.parametrize("accept", [False, True])
@pytest.mark.hangs
async def test_lost_stop_answer_is_queried_by_client_id_before_every_retry(live: Live, accept: bool):
    live.fake.faults.next("/fapi/v1/algoOrder", "timeout", method="POST", accept=accept, delay=2)
    await opened(live)
    assert len(live.stops()) == 1 and live.closes() == []
    calls = [(r.method, r.params.get("clientAlgoId")) for r in live.fake.requests if r.path == "/fapi/v1/algoOrder"]
    first_post = calls.index(next(c for c in calls if c[0] == "POST"))
    assert calls[first_post + 1] == ("GET", calls[first_post][1])  # asked before anything else
    stop_ids = [a["clientAlgoId"] for a in live.fake.algo_orders.values() if a["orderType"] == "STOP_MARKET"]
    assert len(stop_ids) == 1  # never two stops for one intent


@pytest.mark.hangs
async def test_lost_stop_answer_and_an_unexpected_query_error_still_end_with_one_stop(live: Live):
    """The stop lands but its answer is lost, and the query by clientAlgoId fails with an unexpected code: the
    retry with the same clientAlgoId is refused as a duplicate of the open order, which the next query finds."""
    live.fake.faults.next("/fapi/v1/algoOrder", "timeout", method="POST", accept=True, delay=2)
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="GET", status=400, code=-1099,
                          msg="Not found, unauthenticated, or unauthorized.")
    trade_id = await opened(live)
    assert len(live.stops()) == 1 and live.closes() == [] and live.critical() == []
    stop_posts = [r for r in live.fake.calls("/fapi/v1/algoOrder", "POST") if r.params["type"] == "STOP_MARKET"]
    assert len(stop_posts) == 2 and stop_posts[0].params["clientAlgoId"] == stop_posts[1].params["clientAlgoId"]
    rows = await live.repos.orders.for_trade(trade_id, OrderPurpose.STOP_LOSS)
    assert [r.status for r in rows] == [OrderState.OPEN]


async def test_own_close_waits_a_moment_for_lagging_fills_before_booking(live: Live):
    trade_id = await opened(live)
    live.fake.trades_lag = timedelta(seconds=3)
    (closed,) = await live.trader.close_all("manual_close")
    assert closed.id == trade_id and closed.status is TradeStatus.CLOSED
    exits = [t for t in live.fake.trades if t["symbol"] == ETH and t["side"] == "BUY"]
    assert closed.exit_price == Decimal(exits[0]["price"]) and closed.exit_reason == "manual_close"


async def test_stop_still_refused_after_the_budget_closes_at_market_with_the_reason(live: Live):
    live.fake.stop_needs_position_for = timedelta(minutes=5)
    report = await live.trader.scan()
    assert report.opened == [] and live.amount() == 0
    (trade,) = await live.repos.trades.closed("live")
    assert trade.exit_reason == "stop_unplaceable"
    (alert,) = live.critical()
    assert "-4509" in alert.message and "retrying" in alert.message
    assert 8 <= sum(live.sleep.calls) <= 12  # about ten seconds of backoff first


async def test_missing_stop_is_re_placed_through_a_transient_refusal(live: Live):
    trade_id = await opened(live)
    stop = live.stops()[0]
    live.fake.algo_orders[stop["algoId"]]["algoStatus"] = "CANCELED"  # removed behind our back
    live.fake.faults.next("/fapi/v1/algoOrder", "503_unavailable", method="POST")
    report = await live.trader.reconcile()
    assert report.stops_replaced == [trade_id]
    assert len(live.stops()) == 1 and live.closes() == [] and live.amount() != 0


async def test_adopted_position_survives_503_then_4509(live: Live):
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")
    live.fake.faults.next("/fapi/v1/algoOrder", "503_unavailable", method="POST")
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="POST", status=400, code=-4509,
                          msg="TIF GTE can only be used with open positions.")
    report = await live.trader.reconcile()
    assert len(report.adopted) == 1
    assert live.amount(BTC) == Decimal("0.01") and len(live.stops(BTC)) == 1 and live.closes(BTC) == []


# ----------------------------------------------------------------------------------------- 2. stop moves
async def _trade(live: Live, trade_id: int):
    return await live.repos.trades.get(trade_id)


@pytest.mark.parametrize("processed", [True, False])
async def test_stop_move_with_an_unexpected_cancel_answer_never_strands_the_position(live: Live, processed: bool):
    """The cancel's answer is an unexpected 500: either it was processed (the query says CANCELED: the new stop
    is placed) or it keeps failing (the query says NEW: the old stop stays). Never no stop, never two."""
    trade_id = await opened(live)
    trade = await _trade(live, trade_id)
    old = trade.stop_price
    new = old - Decimal("1")  # a short's stop moves down
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="DELETE", status=500, code=-1000,
                          msg="An unknown error occurred while processing the request.", accept=processed,
                          times=1 if processed else 1000)
    moved = await live.trader.exits.move_stop(trade, new, "trailing")
    (stop,) = live.stops()  # exactly one stop, never none
    assert Decimal(stop["triggerPrice"]) == (new if processed else old)
    assert moved is processed
    assert (await _trade(live, trade_id)).stop_price == Decimal(stop["triggerPrice"])
    queried = [r for r in live.fake.calls("/fapi/v1/algoOrder", "GET") if r.params["clientAlgoId"] == stop_id(live)]
    assert queried  # the cancel was resolved by asking for its clientAlgoId


def stop_id(live: Live) -> str:
    return live.trader.client_id(1, OrderPurpose.STOP_LOSS, 1)


async def test_stop_move_whose_new_stop_is_refused_restores_the_old_one_in_the_same_call(live: Live):
    trade_id = await opened(live)
    trade = await _trade(live, trade_id)
    old = trade.stop_price
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="POST", status=400, code=-4014,
                          msg="Price not increased by tick size.")
    live.fake.faults.next("/fapi/v1/algoOrder", "503_unavailable", method="POST")  # and the restore, once
    assert await live.trader.exits.move_stop(trade, old - Decimal("1"), "trailing") is False
    (stop,) = live.stops()
    assert Decimal(stop["triggerPrice"]) == old and live.closes() == []


# ----------------------------------------------------------------------------------------- 3. kill-switch
def flat(fake: FakeBinanceFutures) -> bool:
    return (all(p.amount == 0 for p in fake.positions.values())
            and not [a for a in fake.algo_orders.values() if a["algoStatus"] == "NEW"]
            and not fake.open_orders())


async def test_kill_flattens_the_whole_account_and_opens_nothing_afterwards(live: Live):
    await opened(live)  # Vigil's ETH short, with its stop and take-profit
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")  # the operator's, unknown to the books
    live.fake.place_limit_by_hand("SOLUSDT", "BUY", "1", "50")  # a resting plain order of the operator's
    below = (live.fake.price(BTC) * Decimal("0.8")).quantize(Decimal("0.1"))
    await live.exchange.place_protective_order(BTC, Side.SELL, ProtectiveKind.STOP_LOSS, below, "operator-stop")
    # one symbol fails once on its cancel-all: the others go on, it is retried
    live.fake.faults.next("/fapi/v1/algoOpenOrders", "error", method="DELETE", status=500, code=-1000, symbol=BTC)
    service = EngineService(live.runtime())
    closed = await service.kill()
    assert flat(live.fake)
    assert sorted(t.symbol for t in closed) == [BTC, ETH]
    assert {t.exit_reason for t in closed} == {"kill_switch"}
    assert live.critical() == []
    await live.tick()
    assert (await live.trader.scan()).opened == [] and flat(live.fake)
    await live.trader.monitor()
    assert flat(live.fake)


async def test_kill_goes_past_a_symbol_it_cannot_close_and_reports_it(live: Live):
    await opened(live)
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")
    live.fake.faults.next("/fapi/v1/order", "error", method="POST", status=400, code=-2022, symbol=ETH,
                          msg="ReduceOnly Order is rejected.", times=1000)
    await EngineService(live.runtime()).kill()
    assert live.amount(BTC) == 0 and live.stops(BTC) == []  # the others are flattened regardless
    assert live.amount(ETH) != 0
    closes = [r for r in live.fake.calls("/fapi/v1/order", "POST") if r.params["symbol"] == ETH
              and r.params.get("reduceOnly") == "true"]
    assert len(closes) == 3  # retried, a bounded number of times
    (report,) = [a for a in live.critical() if "kill-switch could not finish" in a.message]
    assert ETH in report.message and BTC not in report.message


# ----------------------------------------------------------------------------------------- 4. monitor isolation
async def test_one_trade_that_keeps_failing_does_not_stop_the_others(live: Live):
    eth_id = await opened(live)
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")
    btc_id = (await live.trader.reconcile()).adopted[0]
    live.fake.close_position_by_hand(ETH)  # ETH must be booked, but its fills cannot be read
    live.fake.faults.next("/fapi/v1/userTrades", "error", status=400, code=-1000, symbol=ETH, times=1000)
    btc_stop = live.stops(BTC)[0]
    live.fake.algo_orders[btc_stop["algoId"]]["algoStatus"] = "CANCELED"  # BTC's stop must be re-placed
    report = await live.trader.monitor()
    assert report.stops_replaced == [btc_id] and len(live.stops(BTC)) == 1
    assert any(f"trade {eth_id}" in f for f in report.failures)
    assert (await _trade(live, eth_id)).status is TradeStatus.OPEN  # left for a later tick


async def test_exit_management_isolates_trades(tmp_path: Path):
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        live = await open_live(fake, tmp_path / "x.sqlite3", time_stop_hours=0.01, trail_enabled=False,
                               partial_ladder="")
        try:
            eth_id = await opened(live)
            fake.open_position_by_hand(BTC, "BUY", "0.01")
            await live.trader.reconcile()
            live.fake.faults.next("/fapi/v1/userTrades", "error", status=400, code=-1000, symbol=ETH, times=1000)
            await live.tick(120)  # both reach their time stop; ETH's booking keeps failing
            report = await live.trader.monitor()
            assert live.amount(BTC) == 0 and live.amount(ETH) == 0
            btc = [t for t in await live.repos.trades.closed("live") if t.symbol == BTC]
            assert len(btc) == 1 and btc[0].exit_reason == "time_stop"
            assert any(f"trade {eth_id}" in f for f in report.failures)
        finally:
            await live.exchange.close()
            await live.repos.db.close()


async def test_monitor_failing_ticks_in_a_row_halt_entries_alert_and_trip_the_breaker(live: Live):
    await opened(live)
    live.fake.close_position_by_hand(ETH)
    live.fake.faults.next("/fapi/v1/userTrades", "error", status=400, code=-1000, symbol=ETH, times=1000)
    runtime = live.runtime()
    for _ in range(MONITOR_FAILURE_STREAK):
        with pytest.raises(MonitorDegraded):
            await runtime.run_monitor()
    assert [e.breaker for e in live.sink.of(BreakerTripped)] == ["api_errors"]
    assert any("monitor failed 3 ticks in a row" in a.message for a in live.critical())
    assert await live.trader.breakers.entries_blocked(None, live.clock.now()) is not None


# ----------------------------------------------------------------------------------------- 5. books match reality
async def test_close_is_booked_only_when_the_exit_fills_add_up(live: Live):
    trade_id = await opened(live)
    live.fake.trades_lag = timedelta(seconds=90)
    live.fake.close_position_by_hand(ETH)
    report = await live.trader.reconcile()
    assert report.closed == [] and (await _trade(live, trade_id)).status is TradeStatus.OPEN
    await live.tick(120)
    report = await live.trader.reconcile()
    assert report.closed == [trade_id]
    trade = await _trade(live, trade_id)
    exits = [t for t in live.fake.trades if t["symbol"] == ETH and t["side"] == "BUY"]
    assert trade.exit_price == Decimal(exits[0]["price"])
    assert trade.realized_pnl == sum(Decimal(t["realizedPnl"]) for t in live.fake.trades if t["symbol"] == ETH)


async def test_bnb_commissions_are_booked_in_usdt_at_the_fill_time(tmp_path: Path):
    async with FakeBinanceFutures(start=SIGNAL_TIME, clones={"BNBUSDT": "SOLUSDT"}) as fake:
        fake.fee_asset = "BNB"
        live = await open_live(fake, tmp_path / "bnb.sqlite3")
        try:
            trade_id = await opened(live)
            await live.tick(600)
            fake.close_position_by_hand(ETH)
            await live.trader.reconcile()
            trade = await _trade(live, trade_id)
            eth = [t for t in fake.trades if t["symbol"] == ETH]
            assert {t["commissionAsset"] for t in eth} == {"BNB"}
            in_usdt = sum(Decimal(t["commission"]) * fake._price_at("BNBUSDT", t["time"]) for t in eth)
            assert trade.status is TradeStatus.CLOSED
            assert abs(trade.fees - in_usdt) <= Decimal("0.000001")
            assert trade.fees > 10 * sum(Decimal(t["commission"]) for t in eth)  # not summed as if USDT
        finally:
            await live.exchange.close()
            await live.repos.db.close()


async def test_auto_deleverage_is_booked_as_adl(live: Live):
    trade_id = await opened(live)
    live.fake.adl(ETH)
    assert (await live.trader.reconcile()).closed == [trade_id]
    assert (await _trade(live, trade_id)).exit_reason == "adl"
    assert [e.reason for e in live.sink.of(TradeClosed)] == ["adl"]


async def test_expired_partial_exit_with_executed_quantity_counts_as_done(live: Live):
    trade_id = await opened(live)
    trade = await _trade(live, trade_id)
    one_r = trade.entry_price - (trade.initial_stop_price - trade.entry_price)  # a short's 1R
    live.fake.expire_next_market = Decimal("0.5")
    await live.fake.set_price(ETH, one_r - Decimal("1"))
    await live.trader.monitor()
    (partial,) = [o for o in live.closes() if o["status"] == "EXPIRED"]
    assert Decimal(partial["executedQty"]) > 0
    await live.trader.monitor()  # the same ladder step is not taken again
    assert len(live.closes()) == 1
    rows = await live.repos.orders.for_trade(trade_id, OrderPurpose.PARTIAL)
    assert [r.status for r in rows] == [OrderState.EXPIRED]
    assert (await _trade(live, trade_id)).quantity == -live.amount()


async def test_reduce_only_margin_check_4118_is_not_insufficient_margin(live: Live):
    await opened(live)
    live.fake.faults.next("/fapi/v1/order", "error", method="POST", status=400, code=-4118,
                          msg="ReduceOnly Order Failed. Please check your existing position and open orders.")
    with pytest.raises(OrderRejected) as caught:
        await live.exchange.place_market_order(ETH, Side.BUY, Decimal("0.01"), "vg-test-1", reduce_only=True)
    assert not isinstance(caught.value, InsufficientMargin) and "margin" not in type(caught.value).__name__.lower()


# ----------------------------------------------------------------------------------------- 6. not Vigil's
async def test_long_adopted_ten_percent_under_water_gets_a_stop_below_the_mark_and_nothing_is_sold(live: Live):
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")
    entry = live.fake.positions[BTC].entry
    await live.fake.set_price(BTC, entry * Decimal("0.9"))
    report = await live.trader.reconcile()
    assert len(report.adopted) == 1
    (stop,) = live.stops(BTC)
    assert stop["side"] == "SELL" and Decimal(stop["triggerPrice"]) < live.fake.price(BTC)
    assert live.closes(BTC) == [] and live.amount(BTC) == Decimal("0.01")
    assert live.algos(BTC, "TAKE_PROFIT_MARKET")[0]["side"] == "SELL"


async def test_only_a_stop_on_the_closing_side_counts_as_protection(live: Live):
    trade_id = await opened(live)  # a short: its stop is a BUY above the mark
    stop = live.stops()[0]
    live.fake.algo_orders[stop["algoId"]]["algoStatus"] = "CANCELED"
    below = (live.fake.price(ETH) * Decimal("0.8")).quantize(Decimal("0.01"))
    await live.exchange.place_protective_order(ETH, Side.SELL, ProtectiveKind.STOP_LOSS, below, "operator-wrong-side")
    report = await live.trader.reconcile()
    assert report.stops_replaced == [trade_id]
    assert sorted(s["side"] for s in live.stops()) == ["BUY", "SELL"]  # the operator's left alone


async def test_orphan_cleanup_cancels_only_vigils_own_orders(live: Live):
    desk = live.trader.desk
    above = (live.fake.price(BTC) * Decimal("1.2")).quantize(Decimal("0.1"))
    own = desk.own_prefix + "77-S1"
    below = (live.fake.price(BTC) * Decimal("0.8")).quantize(Decimal("0.1"))
    await live.exchange.place_protective_order(BTC, Side.BUY, ProtectiveKind.STOP_LOSS, above, own)
    # Binance holds one close-position stop per side (-4130): the operator's rests on the other one
    await live.exchange.place_protective_order(BTC, Side.SELL, ProtectiveKind.STOP_LOSS, below, "operator-stop")
    report = await live.trader.reconcile()
    assert report.orphans_cancelled == [desk.own_prefix + "77-S1"]
    assert [s["clientAlgoId"] for s in live.stops(BTC)] == ["operator-stop"]


# ----------------------------------------------------------------------------------------- 7. unknown stays unknown
@pytest.mark.hangs
async def test_lost_entry_stays_unresolved_and_a_late_position_gets_the_planned_stop(live: Live):
    live.fake.faults.next("/fapi/v1/order", "timeout", method="POST", accept=False, delay=2)
    assert (await live.trader.scan()).opened == []
    (trade,) = await live.repos.trades.active("live")
    for _ in range(UNRESOLVED_TICKS - 2):
        await live.trader.reconcile()
        assert (await _trade(live, trade.id)).status is TradeStatus.PENDING
    live.fake.open_position_by_hand(ETH, "SELL", str(trade.quantity))  # the entry shows up late
    report = await live.trader.reconcile()
    assert report.adopted == [trade.id]
    opened_trade = await _trade(live, trade.id)
    planned = trade.initial_stop_price - trade.entry_price
    assert opened_trade.stop_price - opened_trade.entry_price == pytest.approx(planned, abs=Decimal("0.02"))
    (stop,) = live.stops()
    assert Decimal(stop["triggerPrice"]) == opened_trade.stop_price
    assert opened_trade.stop_price < opened_trade.entry_price * Decimal("1.05")  # not the 5 % adoption stop


@pytest.mark.hangs
async def test_lost_entry_that_never_appears_fails_after_a_bounded_window(live: Live):
    live.fake.faults.next("/fapi/v1/order", "timeout", method="POST", accept=False, delay=2)
    await live.trader.scan()
    (trade,) = await live.repos.trades.active("live")
    for _ in range(UNRESOLVED_TICKS):
        await live.trader.reconcile()
    assert (await _trade(live, trade.id)).status is TradeStatus.FAILED


# ----------------------------------------------------------------------------------------- 8. fresh rules
async def test_symbol_filters_reload_after_a_filter_error_and_daily(live: Live):
    loads = len(live.fake.calls("/fapi/v1/exchangeInfo"))
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="POST", status=400, code=-4014,
                          msg="Price not increased by tick size.", skip=1)  # the take-profit
    await opened(live)
    assert len(live.fake.calls("/fapi/v1/exchangeInfo")) == loads + 1
    await live.trader.monitor()
    assert len(live.fake.calls("/fapi/v1/exchangeInfo")) == loads + 1
    live.clock.advance(timedelta(days=1))
    await live.trader.monitor()
    assert len(live.fake.calls("/fapi/v1/exchangeInfo")) == loads + 2


# ----------------------------------------------------------------------------------------- 9. the fake itself
async def test_fake_rejects_a_duplicate_client_algo_id_only_among_open_orders(live: Live):
    await opened(live)
    # the trade's own stop is a BUY: a second BUY close-position stop would get -4130, so these are SELLs
    below = (live.fake.price(ETH) * Decimal("0.8")).quantize(Decimal("0.01"))
    await live.exchange.place_protective_order(ETH, Side.SELL, ProtectiveKind.STOP_LOSS, below, "dup-1")
    with pytest.raises(OrderRejected) as caught:
        await live.exchange.place_protective_order(ETH, Side.SELL, ProtectiveKind.STOP_LOSS, below, "dup-1")
    assert caught.value.code == -4116
    await live.exchange.cancel_protective_order(ETH, "dup-1")
    again = await live.exchange.place_protective_order(ETH, Side.SELL, ProtectiveKind.STOP_LOSS, below, "dup-1")
    assert (await live.exchange.get_protective_order(ETH, "dup-1")).exchange_id == again.exchange_id
