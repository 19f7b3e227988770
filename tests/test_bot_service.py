"""The façade methods added for the operator's UI: performance, equity series, settings, mode checks,
breakers, last scan — on the real trader over the paper exchange."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.events import BreakerReset, BreakerTripped
from engine.service import CommandRefused, performance_of
from engine.trading.breakers import AccountSnapshot, BreakerConfig, Breakers
from storage.records import TradeRecord, TradeStatus
from tests.test_bot_harness import service_for
from tests.trading_fixtures import Rig, build_rig

T0 = datetime(2025, 3, 20, tzinfo=UTC)


def closed(i: int, symbol: str, pnl: str, fees: str = "0", funding: str = "0") -> TradeRecord:
    return TradeRecord(
        id=i, mode="paper", symbol=symbol, side="LONG", status=TradeStatus.CLOSED, quantity=Decimal(0),
        initial_quantity=Decimal(1), entry_price=Decimal(100), stop_price=Decimal(90), initial_stop_price=Decimal(90),
        take_profit_price=None, leverage=3, liquidation_price=None, score=None, votes=(), opened_at=T0,
        closed_at=T0 + timedelta(hours=i), exit_price=Decimal(100), exit_reason="x", realized_pnl=Decimal(pnl),
        fees=Decimal(fees), funding=Decimal(funding), created_at=T0)


def test_performance_by_hand():
    report = performance_of([closed(1, "BTCUSDT", "10", fees="1"), closed(2, "BTCUSDT", "-4"),
                             closed(3, "ETHUSDT", "-6", funding="-1"), closed(4, "ETHUSDT", "20", fees="2")])
    total = report.total
    # nets: +9, -4, -7, +18 → cumulative 9, 5, -2, 16: peak 9, deepest -2 → drawdown -11
    assert (total.trades, total.wins, total.net_pnl) == (4, 2, Decimal(16))
    assert total.gross_profit == Decimal(27) and total.gross_loss == Decimal(-11)
    assert total.profit_factor == Decimal(27) / Decimal(11) and total.win_rate == 0.5
    assert (total.best, total.worst, total.fees, total.funding) == (Decimal(18), Decimal(-7), Decimal(3), Decimal(-1))
    assert report.max_drawdown == Decimal(-11)
    assert [(s.symbol, s.net_pnl) for s in report.by_symbol] == [("ETHUSDT", Decimal(11)), ("BTCUSDT", Decimal(5))]
    empty = performance_of([])
    assert empty.total.trades == 0 and empty.total.profit_factor is None and empty.max_drawdown == 0


async def test_set_setting_validates_applies_stores_and_reapplies(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = service_for(rig)
        for key, value, why in [("FOO", "1", "cannot be changed"), ("LEVERAGE", "0", "greater than or equal"),
                                ("leverage", "x", "valid integer"), ("MIN_STOP_PCT", "9", "MAX_STOP_PCT"),
                                ("RISK_PER_TRADE_PCT", "nan", "finite"), ("TELEGRAM_BOT_TOKEN", "x", "cannot")]:
            with pytest.raises(CommandRefused, match=why):
                await service.set_setting(key, value)
        assert service.runtime.settings == rig.settings

        preview = await service.preview_setting("leverage", "10")
        assert preview.risky and rig.trader.config.risk.leverage == 3
        change = await service.set_setting("leverage", "4")
        assert (change.key, change.old, change.new, change.risky) == ("LEVERAGE", "3", "4", False)
        await service.set_setting("ENTRY_THRESHOLD", "0.75")
        await service.set_setting("MAX_OPEN_POSITIONS", "1")
        assert rig.trader.config.risk.leverage == 4 and rig.trader.config.max_open_positions == 1
        assert rig.trader.consensus.threshold == 0.75

        fresh = service_for(rig)
        fresh.runtime.settings = rig.settings
        rig.trader.config = replace(rig.trader.config, risk=replace(rig.trader.config.risk, leverage=3))
        applied = await fresh.apply_stored_settings()
        assert applied == {"LEVERAGE": "4", "ENTRY_THRESHOLD": "0.75", "MAX_OPEN_POSITIONS": "1"}
        assert rig.trader.config.risk.leverage == 4 and fresh.runtime.settings.leverage == 4
    finally:
        await rig.close()


async def test_new_leverage_is_used_by_the_next_entry(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = service_for(rig)
        await service.set_setting("LEVERAGE", "5")
        await rig.trader.scan()
        (position,) = await service.positions()
        assert position.leverage == 5
    finally:
        await rig.close()


async def test_mode_switch_check_reports_what_set_mode_would_refuse(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = service_for(rig)
        await service.check_mode_switch("paper")  # no change: fine
        with pytest.raises(CommandRefused, match="BINANCE_API_KEY"):
            await service.check_mode_switch("live")
        with pytest.raises(CommandRefused, match="paper or live"):
            await service.check_mode_switch("demo")
        service.runtime.settings = rig.settings.model_copy(update={"binance_api_key": "k", "binance_api_secret": "s"})
        await service.check_mode_switch("live")
        await rig.trader.scan()
        with pytest.raises(CommandRefused, match="1 paper position"):
            await service.check_mode_switch("live")
    finally:
        await rig.close()


async def test_equity_series_last_scan_open_symbols_and_config(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = service_for(rig)
        assert await service.last_scan() is None and await service.open_symbols() == []
        await rig.trader.scan()
        for _ in range(4):
            await rig.step(5)
            await rig.trader.monitor()
        assert (await service.last_scan() or {})["opened"] == 1
        assert await service.open_symbols() == ["BTCUSDT"]
        series = await service.equity_series(1)
        assert len(series) >= 2 and all(p.equity > 0 for p in series)
        with pytest.raises(CommandRefused):
            await service.equity_series(0)
        config = service.config()
        assert config["TELEGRAM_BOT_TOKEN"] == "" and config["LEVERAGE"] == "3"
    finally:
        await rig.close()


async def trip_daily_loss(rig: Rig) -> Breakers:
    """Give the trader a breaker board with a 1 % daily-loss limit and trip it with a 3 % fall."""
    board = Breakers(rig.repos.state, BreakerConfig(daily_loss_pct=Decimal(1)), key_prefix="breaker:test:")
    rig.trader.breakers = board
    now = rig.clock.now()
    await board.evaluate(AccountSnapshot(Decimal(1000)), now)
    for event in await board.evaluate(AccountSnapshot(Decimal(970)), now + timedelta(minutes=1)):
        await rig.bus.publish(event)
    return board


async def test_breakers_show_state_threshold_and_reset_by_the_operator(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = service_for(rig)
        await trip_daily_loss(rig)
        views = await service.breakers()
        tripped = views[0]
        assert (tripped.name, tripped.tripped) == ("daily_loss", True) and "1" in tripped.threshold
        assert tripped.reset_rule and tripped.reason and not any(v.tripped for v in views[1:])
        assert await service.reset_breakers() == ["daily_loss"]
        assert not any(v.tripped for v in await service.breakers())
        assert [e.breaker for e in rig.sink.of(BreakerReset)] == ["daily_loss"]
        assert await service.reset_breakers() == []
    finally:
        await rig.close()


async def test_breakers_without_a_board_come_from_the_event_log(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        from engine.console import EventLogSink

        rig.trader.breakers = None
        rig.bus.subscribe(EventLogSink(rig.repos.events))
        service = service_for(rig)
        assert await service.breakers() == []
        now = rig.clock.now()
        await rig.bus.publish(BreakerTripped(time=now, breaker="daily_loss", reason="-3.1 % today"))
        await rig.bus.publish(BreakerTripped(time=now, breaker="consecutive_losses", reason="4 in a row"))
        await rig.bus.publish(BreakerReset(time=now + timedelta(minutes=1), breaker="consecutive_losses",
                                           reason="operator"))
        views = await service.breakers()
        assert [(b.name, b.tripped) for b in views] == [("daily_loss", True), ("consecutive_losses", False)]
        assert views[0].reason == "-3.1 % today"
        with pytest.raises(CommandRefused, match="no circuit breakers"):
            await service.reset_breakers()
    finally:
        await rig.close()
