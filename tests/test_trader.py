"""Trader over the paper exchange and real data: entries are protected, crashes resolve by client id,
the books follow the exchange, halts persist, a restart resumes the same account and positions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from engine.events import Alert, TradeClosed, TradeOpened
from engine.exchange.types import PositionSide, ProtectiveKind, Side
from engine.trading.halts import HaltState, load_halts, save_halts
from engine.trading.reconciler import UNRESOLVED_TICKS
from storage.records import OrderPurpose, OrderState, TradeStatus
from strategies.types import Direction
from tests.trading_fixtures import START, build_rig


async def stops_of(rig, symbol: str) -> list:
    return [o for o in await rig.exchange.open_protective_orders(symbol) if o.kind is ProtectiveKind.STOP_LOSS]


async def test_entry_is_protected_by_exactly_one_stop_and_one_take_profit(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        report = await rig.trader.scan()
        assert len(report.opened) == 1
        trade = await rig.repos.trades.get(report.opened[0])
        assert trade.status is TradeStatus.OPEN and trade.symbol == "BTCUSDT" and trade.side == "LONG"
        orders = await rig.exchange.open_protective_orders("BTCUSDT")
        kinds = sorted(o.kind.value for o in orders)
        assert kinds == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        stop = next(o for o in orders if o.kind is ProtectiveKind.STOP_LOSS)
        assert stop.side is Side.SELL and stop.trigger_price == trade.stop_price < trade.entry_price
        # every order was written before it was sent, with deterministic ids
        records = await rig.repos.orders.for_trade(trade.id)
        assert [r.purpose for r in records] == [OrderPurpose.ENTRY, OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT]
        assert [r.client_id.rsplit("-", 1)[1] for r in records] == ["E1", "S1", "T1"]
        assert all(len(r.client_id) <= 36 for r in records)
        opened = rig.sink.of(TradeOpened)
        assert len(opened) == 1 and opened[0].liquidation_price > 0
        # risk: a stop-out loses about 1 % of equity
        loss_at_stop = (trade.entry_price - trade.stop_price) * trade.quantity
        assert Decimal("5") < loss_at_stop <= Decimal("10.0")
        # a second scan does not open a second BTC position
        report2 = await rig.trader.scan()
        assert report2.opened == [] and report2.skipped["BTCUSDT"] == "already in a position"
    finally:
        await rig.close()


async def test_trade_runs_to_its_exit_and_is_booked_from_fills(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        await rig.trader.scan()
        rig.voter.symbols.clear()
        for _ in range(12 * 24 * 10):
            await rig.step()
            report = await rig.trader.monitor()
            if report.closed:
                break
        closed = rig.sink.of(TradeClosed)
        assert len(closed) == 1
        event = closed[0]
        assert event.reason in ("stop_loss", "take_profit")
        trade = await rig.repos.trades.get(event.trade_id)
        assert trade.status is TradeStatus.CLOSED
        # fees: taker 0.05 % on the entry and on the exit
        expected_fees = (trade.entry_price * trade.initial_quantity + trade.exit_price * trade.initial_quantity) \
            * Decimal("0.0005")
        assert abs(trade.fees - expected_fees) < Decimal("0.01")
        assert trade.realized_pnl == (trade.exit_price - trade.entry_price) * trade.initial_quantity
        balance = await rig.exchange.balance()
        assert balance.wallet_balance == Decimal("1000") + trade.net_pnl
        assert await rig.exchange.open_protective_orders() == []
    finally:
        await rig.close()


async def test_restart_resumes_same_paper_account_and_positions(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    rig = await build_rig(path)
    report = await rig.trader.scan()
    trade_id = report.opened[0]
    balance_before = await rig.exchange.balance()
    positions_before = await rig.exchange.positions()
    clock = rig.clock
    await rig.close()

    clock.advance(timedelta(minutes=1))
    rig2 = await build_rig(path, clock=clock)
    try:
        assert (await rig2.exchange.balance()).wallet_balance == balance_before.wallet_balance
        positions = await rig2.exchange.positions()
        assert [(p.symbol, p.quantity, p.entry_price) for p in positions] == [
            (p.symbol, p.quantity, p.entry_price) for p in positions_before]
        assert [t.id for t in await rig2.repos.trades.active("paper")] == [trade_id]
        assert len(await stops_of(rig2, "BTCUSDT")) == 1
        report = await rig2.trader.monitor()
        assert report.adopted == [] and report.stops_replaced == [] and report.closed == []
        assert rig2.sink.of(Alert) == []
    finally:
        await rig2.close()


async def written_entry_intent(rig) -> tuple:
    """A BTC long whose entry intent is in the database, exactly as the trader writes it before sending."""
    trade = await rig.repos.trades.create(mode="paper", symbol="BTCUSDT", side="LONG", quantity=Decimal("0.01"),
                                          stop_price=Decimal("80000"), take_profit_price=Decimal("90000"), leverage=3,
                                          score=0.9, votes=[], now=rig.clock.now(), entry_price=Decimal("84000"))
    cid = rig.trader.client_id(trade.id, OrderPurpose.ENTRY, 1)
    await rig.repos.orders.record_intent(client_id=cid, trade_id=trade.id, mode="paper", symbol="BTCUSDT",
                                         purpose=OrderPurpose.ENTRY, side="BUY", order_type="MARKET",
                                         quantity=Decimal("0.01"), trigger_price=None, reduce_only=False,
                                         now=rig.clock.now())
    return trade, cid


async def test_crash_after_intent_before_send_marks_entry_failed_without_sending(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    rig = await build_rig(path, voted=set())
    trade, cid = await written_entry_intent(rig)
    clock = rig.clock
    await rig.close()  # "crash": the request was never sent

    rig2 = await build_rig(path, clock=clock, voted=set())
    try:
        # an order the exchange does not show may still be in flight: it stays unresolved for a few ticks
        for _ in range(UNRESOLVED_TICKS - 1):
            assert (await rig2.repos.orders.get(cid)).status is OrderState.UNKNOWN
            assert (await rig2.repos.trades.get(trade.id)).status is TradeStatus.PENDING
            await rig2.trader.reconcile()
        assert (await rig2.repos.orders.get(cid)).status is OrderState.REJECTED
        assert (await rig2.repos.trades.get(trade.id)).status is TradeStatus.FAILED
        assert await rig2.exchange.positions() == []
        assert await rig2.exchange.get_order("BTCUSDT", cid) is None
    finally:
        await rig2.close()


async def test_crash_after_fill_before_stop_is_protected_on_restart(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    rig = await build_rig(path, voted=set())
    trade, cid = await written_entry_intent(rig)
    await rig.exchange.place_market_order("BTCUSDT", Side.BUY, Decimal("0.01"), cid)  # filled; then "crash"
    clock = rig.clock
    await rig.close()

    rig2 = await build_rig(path, clock=clock, voted=set())
    try:
        t = await rig2.repos.trades.get(trade.id)
        assert t.status is TradeStatus.OPEN
        assert (await rig2.repos.orders.get(cid)).status is OrderState.FILLED
        assert len(await stops_of(rig2, "BTCUSDT")) == 1
        positions = await rig2.exchange.positions()
        assert len(positions) == 1 and positions[0].quantity == Decimal("0.01")
        # a second restart changes nothing: no duplicate order
        await rig2.trader.reconcile()
        assert len(await stops_of(rig2, "BTCUSDT")) == 1
        assert len(await rig2.repos.orders.for_trade(trade.id, OrderPurpose.ENTRY)) == 1
    finally:
        await rig2.close()


async def test_missing_stop_is_replaced_and_orphans_cancelled(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3")
    try:
        report = await rig.trader.scan()
        trade = await rig.repos.trades.get(report.opened[0])
        stop = (await stops_of(rig, "BTCUSDT"))[0]
        await rig.exchange.cancel_protective_order("BTCUSDT", stop.client_id)  # someone deleted our stop
        mark = (await rig.exchange.mark_price("ETHUSDT")).mark_price
        below = (mark * Decimal("0.9")).quantize(Decimal("0.01"))
        own = rig.trader.desk.own_prefix + "99-S1"  # one of Vigil's own, left without a position
        for cid in (own, "manual-orphan"):  # and one the operator placed: not Vigil's to cancel
            await rig.exchange.place_protective_order("ETHUSDT", Side.SELL, ProtectiveKind.STOP_LOSS, below, cid)
        await rig.step(1)
        rep = await rig.trader.monitor()
        assert rep.stops_replaced == [trade.id]
        assert rep.orphans_cancelled == [own]
        assert [o.client_id for o in await stops_of(rig, "ETHUSDT")] == ["manual-orphan"]
        stops = await stops_of(rig, "BTCUSDT")
        assert len(stops) == 1 and stops[0].client_id.endswith("-S2")
        assert stops[0].trigger_price == trade.stop_price
        assert [a.level.value for a in rig.sink.of(Alert)] == ["WARNING"]
    finally:
        await rig.close()


async def test_unknown_position_is_adopted_and_manual_close_booked(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3", voted=set())
    try:
        await rig.exchange.place_market_order("ETHUSDT", Side.SELL, Decimal("0.1"), "by-hand-1")
        rep = await rig.trader.monitor()
        assert len(rep.adopted) == 1
        trade = await rig.repos.trades.get(rep.adopted[0])
        assert trade.side == "SHORT" and trade.quantity == Decimal("0.1") and trade.status is TradeStatus.OPEN
        stops = await stops_of(rig, "ETHUSDT")
        assert len(stops) == 1 and stops[0].side is Side.BUY and stops[0].trigger_price > trade.entry_price
        # now the operator closes it by hand on the exchange
        await rig.step()
        await rig.exchange.place_market_order("ETHUSDT", Side.BUY, Decimal("0.1"), "by-hand-2", reduce_only=True)
        rep = await rig.trader.monitor()
        assert rep.closed == [trade.id]
        booked = await rig.repos.trades.get(trade.id)
        assert booked.status is TradeStatus.CLOSED and booked.exit_reason == "manual"
        assert booked.fees > 0
        assert await rig.exchange.open_protective_orders() == []
    finally:
        await rig.close()


async def test_pause_blocks_entries_and_persists(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    rig = await build_rig(path)
    await save_halts(rig.repos.state, HaltState(paused=True, reason="test"), rig.clock.now())
    report = await rig.trader.scan()
    assert report.opened == [] and report.halted.startswith("paused")
    clock = rig.clock
    await rig.close()
    rig2 = await build_rig(path, clock=clock)
    try:
        assert (await load_halts(rig2.repos.state)).paused
        assert (await rig2.trader.scan()).opened == []
    finally:
        await rig2.close()


async def test_short_entry_and_close_symbol(tmp_path: Path):
    rig = await build_rig(tmp_path / "t.sqlite3", direction=Direction.SHORT, voted={"ETHUSDT"})
    try:
        report = await rig.trader.scan()
        trade = await rig.repos.trades.get(report.opened[0])
        assert trade.side == PositionSide.SHORT.value and trade.stop_price > trade.entry_price
        await rig.step()
        closed = await rig.trader.close_symbol("ETHUSDT", "manual_close")
        assert closed is not None and closed.exit_reason == "manual_close"
        assert await rig.exchange.positions() == []
        assert await rig.exchange.open_protective_orders() == []
    finally:
        await rig.close()


def test_start_constant_is_aligned():
    assert START.second == 5 and START.minute % 5 == 0
