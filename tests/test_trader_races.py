"""Races and partial outcomes found in review, each pinned: a halt during a scan's snapshot, an entry that
fills only partly, a stop that fires while being moved, fees after a crash between fill and booking."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from app.runtime import Runtime
from engine.events import TradeClosed
from engine.exchange.paper import PaperExchange
from engine.exchange.types import OrderResult, OrderStatus, ProtectiveKind, Side
from engine.market import MarketDataService, MarketSnapshot
from engine.policy.exits import ExitConfig
from engine.service import EngineService
from engine.trading.exit_manager import ExitManager
from storage.records import OrderPurpose, TradeStatus
from tests.trading_fixtures import build_rig


class GatedMarket(MarketDataService):
    """Market data whose snapshot waits at a gate, like a slow 50-symbol fetch on a real VPS."""

    def __init__(self, inner: MarketDataService) -> None:
        self.__dict__.update(inner.__dict__)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def snapshot(self, symbols: list[str]) -> MarketSnapshot:  # type: ignore[override]
        snap = await super().snapshot(symbols)
        self.entered.set()
        await self.release.wait()
        return snap


class ExpiringEntries:
    """The paper exchange, except market entries come back EXPIRED with part executed (Binance does this
    when a market order reaches its price band)."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_id: str, *,
                                 reduce_only: bool = False) -> OrderResult:
        result = await self.inner.place_market_order(symbol, side, quantity, client_id, reduce_only=reduce_only)
        return result if reduce_only else replace(result, status=OrderStatus.EXPIRED)


async def test_kill_during_a_scan_snapshot_opens_nothing(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        service = EngineService(Runtime.from_parts(rig.settings, rig.repos, rig.bus, rig.clock,
                                                   exchange=rig.exchange, trader=rig.trader))
        gated = GatedMarket(rig.trader.market)
        rig.trader.market = gated
        scan = asyncio.create_task(rig.trader.scan())
        await gated.entered.wait()
        await service.kill("operator kill-switch")  # /kill confirmed while the scan is fetching
        gated.release.set()
        report = await scan
        assert report.opened == [] and report.halted.startswith("halted")
        assert await rig.exchange.positions() == []
    finally:
        await rig.close()


async def test_a_partly_filled_entry_is_protected_not_failed(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        rig.trader.desk.exchange = ExpiringEntries(rig.exchange)  # type: ignore[assignment]
        (trade_id,) = (await rig.trader.scan()).opened
        trade = await rig.repos.trades.get(trade_id)
        assert trade.status is TradeStatus.OPEN
        stops = [o for o in await rig.exchange.open_protective_orders() if o.kind is ProtectiveKind.STOP_LOSS]
        assert len(stops) == 1 and stops[0].trigger_price == trade.stop_price
        assert (await rig.trader.monitor()).adopted == []  # not mistaken for a foreign position
    finally:
        await rig.close()


async def stop_out_time(path: Path) -> object:
    rig = await build_rig(path)
    try:
        await rig.trader.scan()
        rig.voter.symbols.clear()
        for _ in range(12 * 24 * 10):
            await rig.step()
            if (await rig.trader.monitor()).closed:
                assert rig.sink.of(TradeClosed)[0].reason == "stop_loss"
                return rig.clock.now()
        raise AssertionError("no stop-out in ten days")
    finally:
        await rig.close()


async def test_a_stop_that_fires_while_being_moved_is_booked_as_a_stop(tmp_path: Path):
    when = await stop_out_time(tmp_path / "reference.sqlite3")
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        (trade_id,) = (await rig.trader.scan()).opened
        rig.voter.symbols.clear()
        trade = await rig.repos.trades.get(trade_id)
        rig.clock.set(when)  # the stop has fired on the exchange; the exit manager, unaware, moves it
        moved = await ExitManager(rig.trader.desk, ExitConfig()).move_stop(trade, trade.stop_price, "trailing_stop")
        assert moved is False
        await rig.trader.monitor()
        (closed,) = rig.sink.of(TradeClosed)
        assert closed.reason == "stop_loss"  # so the symbol cooldown and the reports see a stop-out
    finally:
        await rig.close()


async def test_fees_and_funding_count_from_the_entry_after_a_crash_before_booking(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3", voted=set())
    try:
        trade = await rig.repos.trades.create(mode="paper", symbol="BTCUSDT", side="LONG", quantity=Decimal("0.01"),
                                              stop_price=Decimal("80000"), take_profit_price=Decimal("90000"),
                                              leverage=3, score=1.0, votes=[], now=rig.clock.now(),
                                              entry_price=Decimal("84000"))
        await rig.trader.desk.market_order(trade, OrderPurpose.ENTRY, Side.BUY, Decimal("0.01"), reduce_only=False)
        rig.clock.advance(timedelta(minutes=10))  # crash right after the fill; back ten minutes later
        await rig.trader.reconcile()
        assert (await rig.repos.trades.get(trade.id)).opened_at == trade.created_at
        (booked,) = await rig.trader.close_all("manual_close")
        wallet = (await rig.exchange.balance()).wallet_balance
        assert booked.net_pnl == wallet - Decimal(1000)  # the entry fee is in the books
    finally:
        await rig.close()
