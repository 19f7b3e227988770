"""The trader with the real live adapter (binance.AsyncClient over HTTP) against the fake Binance server,
with every injected fault: the bot keeps running, no order is lost or sent twice, the operator is told
when they must act, and a 418 ban stops every call until it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.runtime import build_trader
from core.clock import ManualClock
from core.enums import Mode
from engine.events import Alert, EventBus, Level, RecordingSink
from engine.exchange.binance import BinanceFutures
from engine.exchange.errors import IpBanned
from engine.scheduler import EngineScheduler
from engine.trading.trader import Trader
from settings import Settings
from storage.db import Database
from storage.records import OrderPurpose, OrderState, TradeStatus
from storage.repositories import Repositories
from tests.binance_fixtures import REQUEST_TIMEOUT
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures, FakeSleep
from tests.trading_fixtures import RULE_PANEL

SIGNAL_TIME = datetime(2025, 3, 3, 21, 15, 1, tzinfo=UTC)  # the real voter signals an ETHUSDT short here


@dataclass
class LiveRig:
    fake: FakeBinanceFutures
    exchange: BinanceFutures
    trader: Trader
    repos: Repositories
    sink: RecordingSink
    bus: EventBus
    clock: ManualClock
    sleep: FakeSleep

    def algos(self, order_type: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.fake.algo_orders.values() if a["symbol"] == "ETHUSDT" and a["algoStatus"] == "NEW"
                and (order_type is None or a["orderType"] == order_type)]

    def entry_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.fake.orders.values() if o["symbol"] == "ETHUSDT"]


async def open_live(fake: FakeBinanceFutures, db_path: Path, clock: ManualClock | None = None, *,
                    request_timeout: float = REQUEST_TIMEOUT) -> LiveRig:
    """Vigil's live stack (adapter, database, trader) on ``db_path``: call again on the same file to restart."""
    clock = clock or ManualClock(fake.now)
    sleep = FakeSleep(clock)
    exchange = await BinanceFutures.connect(TEST_API_KEY, TEST_API_SECRET, base_url=fake.base_url, clock=clock,
                                            sleep=sleep, request_timeout=request_timeout)
    db = await Database(db_path).open()
    repos = Repositories(db)
    bus = EventBus()
    sink = RecordingSink()
    bus.subscribe(sink)
    settings = Settings(_env_file=None, symbols=["ETHUSDT", "BTCUSDT"], universe_size=2,  # type: ignore[call-arg]
                        trading_mode="paper", **RULE_PANEL)
    trader = build_trader(settings, mode=Mode.LIVE, exchange=exchange, repos=repos, bus=bus, clock=clock)
    await trader.start()
    return LiveRig(fake, exchange, trader, repos, sink, bus, clock, sleep)


async def close_live(rig: LiveRig) -> None:
    await rig.exchange.close()
    await rig.repos.db.close()


@pytest.fixture
async def rig(tmp_path: Path, request_timeout: float) -> AsyncIterator[LiveRig]:
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        live = await open_live(fake, tmp_path / "live.sqlite3", request_timeout=request_timeout)
        try:
            yield live
        finally:
            await close_live(live)


def critical_alerts(rig: LiveRig) -> list[Alert]:
    return [a for a in rig.sink.of(Alert) if a.level is Level.CRITICAL]


async def test_clean_entry_for_reference(rig: LiveRig):
    report = await rig.trader.scan()
    assert len(report.opened) == 1
    assert len(rig.algos("STOP_MARKET")) == 1 and len(rig.algos("TAKE_PROFIT_MARKET")) == 1


@pytest.mark.parametrize("kind", ["503_unknown", pytest.param("timeout", marks=pytest.mark.hangs), "drop"])
async def test_entry_answer_lost_is_resolved_by_client_id_not_resent(rig: LiveRig, kind: str):
    rig.fake.faults.next("/fapi/v1/order", kind, method="POST", delay=3)
    report = await rig.trader.scan()
    assert len(rig.entry_orders()) == 1  # accepted once, never re-sent
    if report.opened:
        trade = await rig.repos.trades.get(report.opened[0])
    else:  # the query found nothing yet: reconciliation resolves it on the next monitor tick
        await rig.trader.monitor()
        (trade,) = await rig.repos.trades.active("live")
    assert trade.status is TradeStatus.OPEN
    assert len(rig.algos("STOP_MARKET")) == 1
    assert len(rig.entry_orders()) == 1
    assert rig.fake.positions["ETHUSDT"].amount == -trade.quantity


async def test_stop_answer_lost_is_found_by_client_algo_id(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/algoOrder", "503_unknown", method="POST")
    report = await rig.trader.scan()
    assert len(report.opened) == 1
    assert len(rig.algos("STOP_MARKET")) == 1
    await rig.trader.monitor()
    assert len(rig.algos("STOP_MARKET")) == 1


async def test_stop_that_would_trigger_closes_the_position_and_alerts(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/algoOrder", "-2021", method="POST")
    report = await rig.trader.scan()
    assert report.opened == []
    assert rig.fake.positions["ETHUSDT"].amount == 0
    (trade,) = await rig.repos.trades.closed("live")
    assert trade.exit_reason == "stop_unplaceable"
    assert len(critical_alerts(rig)) == 1
    assert rig.algos() == []


async def test_insufficient_margin_fails_the_entry_with_an_alert(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/order", "-2019", method="POST")
    report = await rig.trader.scan()
    assert report.opened == [] and rig.fake.positions["ETHUSDT"].amount == 0
    assert [t.status for t in await rig.repos.trades.closed("live")] == []
    failed = await rig.repos.db.fetchall("SELECT status, exit_reason FROM trades")
    assert [tuple(r) for r in failed] == [("FAILED", "entry REJECTED")]
    assert any("rejected" in a.message for a in rig.sink.of(Alert))
    assert await rig.repos.orders.unresolved("live") == []


async def test_min_notional_rejection_leaves_nothing_behind(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/order", "-4164", method="POST")
    report = await rig.trader.scan()
    assert report.opened == [] and rig.fake.positions["ETHUSDT"].amount == 0
    rows = await rig.repos.db.fetchall("SELECT status FROM orders")
    assert [r[0] for r in rows] == [OrderState.REJECTED.value]


async def test_timestamp_error_is_resynced_and_retried_once(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/order", "-1021", method="POST")
    report = await rig.trader.scan()
    assert len(report.opened) == 1 and len(rig.entry_orders()) == 1


async def test_rate_limit_on_market_data_backs_off_and_the_next_scan_trades(rig: LiveRig):
    rig.fake.faults.next("/fapi/v1/klines", "429", retry_after=7, times=1)
    report = await rig.trader.scan()
    assert rig.sleep.calls == [7.0]  # honoured Retry-After, then the read was retried
    assert report.rejected == {} and len(report.opened) == 1


async def test_ip_ban_stops_all_calls_until_it_ends_and_the_scheduler_survives(rig: LiveRig):
    await rig.trader.scan()
    rig.fake.faults.next("/fapi/v1/premiumIndex", "418", retry_after=120)
    with pytest.raises(IpBanned):
        await rig.exchange.mark_price("ETHUSDT")
    sent = len(rig.fake.requests)
    scheduler = EngineScheduler(clock=rig.clock, bus=rig.bus, scan=rig.trader.scan, monitor=rig.trader.monitor,
                                scan_interval=300, monitor_interval=60, scan_delay=5)
    await scheduler.run_job("monitor")
    await scheduler.run_job("scan")
    assert len(rig.fake.requests) == sent  # nothing reached the exchange during the ban
    assert scheduler.stats["monitor"].failures == 1
    assert sorted(a.detail["job"] for a in rig.sink.of(Alert)) == ["monitor", "scan"]  # both told the operator
    # the ban ends: calls resume and the position is still protected
    rig.clock.advance(timedelta(seconds=121))
    await rig.fake.advance(timedelta(seconds=121))
    await scheduler.run_job("monitor")
    assert scheduler.stats["monitor"].consecutive_failures == 0
    assert len(rig.algos("STOP_MARKET")) == 1
    assert len(rig.fake.requests) > sent


async def test_position_never_unprotected_after_a_failed_stop_replacement(rig: LiveRig):
    report = await rig.trader.scan()
    (trade_id,) = report.opened
    stop = rig.algos("STOP_MARKET")[0]
    rig.fake.algo_orders[stop["algoId"]]["algoStatus"] = "CANCELED"  # removed behind our back
    rig.fake.faults.next("/fapi/v1/algoOrder", "-2021", method="POST")  # and price is already beyond it
    await rig.trader.monitor()
    trade = await rig.repos.trades.get(trade_id)
    assert trade.status is TradeStatus.CLOSED and rig.fake.positions["ETHUSDT"].amount == 0
    assert len(critical_alerts(rig)) == 1
    assert Decimal(0) == rig.fake.positions["ETHUSDT"].amount


# ----------------------------------------------------------------------------------------- crashes during an exit
EXIT_CRASHES = {
    # moment → (fault on the exit's path, "the process is now at that moment")
    "exit_intent_written": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=False, delay=60),
                            lambda fake: len(fake.held) == 1),
    "exit_sent_answer_lost": (dict(path="/fapi/v1/order", kind="timeout", method="POST", accept=True, delay=60),
                              lambda fake: len(fake.orders) == 2),
    "exit_filled_orders_not_cancelled": (dict(path="/fapi/v1/algoOrder", kind="timeout", method="DELETE",
                                              accept=False, delay=60), lambda fake: len(fake.held) == 1),
}


@pytest.mark.parametrize("moment", list(EXIT_CRASHES))
async def test_crash_during_an_exit_recovers_from_the_exchange(tmp_path: Path, moment: str):
    """The process dies at each moment of a manual close (the task is abandoned mid-request and every
    connection closed, as a kill would); a fresh trader on the same database must agree with the exchange."""
    fault, reached = EXIT_CRASHES[moment]
    async with FakeBinanceFutures(start=SIGNAL_TIME) as fake:
        live = await open_live(fake, tmp_path / "live.sqlite3")
        (trade_id,) = (await live.trader.scan()).opened
        fake.faults.next(**fault)
        closing = asyncio.create_task(live.trader.close_symbol("ETHUSDT", "manual_close"))
        async with asyncio.timeout(30):
            while not reached(fake):
                await asyncio.sleep(0.02)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await close_live(live)

        live = await open_live(fake, tmp_path / "live.sqlite3", live.clock)  # restart: start() reconciles
        try:
            trade = await live.repos.trades.get(trade_id)
            exit_orders = [o for o in fake.orders.values() if o["reduceOnly"] is True]
            assert len(exit_orders) <= 1  # never sent twice
            if moment == "exit_intent_written":
                # the close never reached the exchange: the position is still there, still protected
                assert fake.positions["ETHUSDT"].amount != 0 and trade.status is TradeStatus.OPEN
                assert len(live.algos("STOP_MARKET")) == 1
                assert exit_orders == []
            else:
                # the close happened exactly once: booked with its own reason, nothing left on the exchange
                assert len(exit_orders) == 1
                assert fake.positions["ETHUSDT"].amount == 0 and trade.status is TradeStatus.CLOSED
                assert trade.exit_reason == "manual_close" and trade.fees > 0
                assert live.algos() == []
            assert await live.repos.orders.unresolved("live") == []
        finally:
            await close_live(live)


async def test_position_opened_by_hand_is_adopted_and_closed_by_hand_is_booked(rig: LiveRig):
    rig.fake.open_position_by_hand("BTCUSDT", "BUY", Decimal("0.01"))
    report = await rig.trader.reconcile()
    (trade_id,) = report.adopted
    trade = await rig.repos.trades.get(trade_id)
    assert (trade.symbol, trade.side, trade.quantity) == ("BTCUSDT", "LONG", Decimal("0.01"))
    stops = [a for a in rig.fake.algo_orders.values() if a["symbol"] == "BTCUSDT" and a["algoStatus"] == "NEW"
             and a["orderType"] == "STOP_MARKET"]
    assert len(stops) == 1 and Decimal(stops[0]["triggerPrice"]) < trade.entry_price
    assert [a.level for a in rig.sink.of(Alert)] == [Level.WARNING]  # the operator is told
    rig.fake.close_position_by_hand("BTCUSDT")
    report = await rig.trader.reconcile()
    assert report.closed == [trade_id]
    booked = await rig.repos.trades.get(trade_id)
    assert booked.status is TradeStatus.CLOSED and booked.exit_reason == "manual"
    assert [a for a in rig.fake.algo_orders.values() if a["symbol"] == "BTCUSDT" and a["algoStatus"] == "NEW"] == []


async def test_api_error_streak_trips_the_breaker_and_blocks_entries(rig: LiveRig):
    from app.runtime import Runtime
    from engine.events import BreakerTripped

    runtime = Runtime.from_parts(Settings(_env_file=None), rig.repos, rig.bus, rig.clock,  # type: ignore[call-arg]
                                 exchange=rig.exchange, trader=rig.trader)
    rig.fake.faults.next("/fapi/v3/account", "418", retry_after=600)
    for _ in range(10):  # API_ERRORS_MAX default: 10 within 5 minutes
        with pytest.raises(IpBanned):
            await runtime.run_monitor()
    tripped = rig.sink.of(BreakerTripped)
    assert [e.breaker for e in tripped] == ["api_errors"]
    assert await rig.trader.breakers.entries_blocked(None, rig.clock.now()) is not None


async def test_a_liquidation_is_booked_as_one(rig: LiveRig):
    """Binance's liquidation order (client id autoclose-…, found through allOrders since userTrades has no
    client ids) is told apart from a manual close, so the breakers and the reports see it."""
    from engine.events import TradeClosed

    (trade_id,) = (await rig.trader.scan()).opened
    rig.fake.liquidate("ETHUSDT")
    report = await rig.trader.reconcile()
    assert report.closed == [trade_id]
    (closed,) = rig.sink.of(TradeClosed)
    assert closed.reason == "liquidation"
    assert rig.algos() == []  # its stop and take-profit were cancelled


async def test_fills_carry_their_client_order_ids(rig: LiveRig):
    (trade_id,) = (await rig.trader.scan()).opened
    fills = await rig.exchange.fills("ETHUSDT", SIGNAL_TIME)
    assert [f.client_id for f in fills] == [rig.trader.client_id(trade_id, OrderPurpose.ENTRY, 1)]
