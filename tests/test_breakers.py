"""Each circuit breaker trips, blocks entries and resets by its own rule, with its state in a real SQLite
database (storage.db + StateRepository) that survives a reopen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.clock import ManualClock
from engine.events import BreakerReset, BreakerTripped, TradeClosed, TradeOpened
from engine.exchange.types import ProtectiveKind
from engine.trading.breakers import (
    API_ERRORS,
    CONSECUTIVE_LOSSES,
    DAILY_LOSS,
    DRAWDOWN,
    VOLATILITY,
    AccountSnapshot,
    BreakerConfig,
    BreakerResetRefused,
    Breakers,
    ClosedTrade,
)
from storage.db import Database
from storage.repositories import StateRepository
from tests.trading_fixtures import Rig, build_rig

T0 = datetime(2025, 4, 7, 0, 1, tzinfo=UTC)
CFG = BreakerConfig()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database(tmp_path / "b.sqlite3").open()
    yield database
    await database.close()


async def reopen(path: Path, cfg: BreakerConfig = CFG) -> tuple[Database, Breakers]:
    database = await Database(path).open()
    return database, Breakers(StateRepository(database), cfg)


def kinds(events: list) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.breaker) for e in events]


def loss(symbol: str = "BTCUSDT", pnl: str = "-10", reason: str = "stop_loss") -> ClosedTrade:
    return ClosedTrade(symbol, D(pnl), reason)


# ------------------------------------------------------------------------------------------- daily loss
async def test_daily_loss_trips_survives_reopen_and_resets_at_utc_midnight(db: Database, tmp_path: Path):
    b = Breakers(StateRepository(db), CFG)
    assert await b.evaluate(AccountSnapshot(D("1000")), T0) == []             # the day starts at 1000
    assert await b.evaluate(AccountSnapshot(D("975")), T0 + timedelta(hours=3)) == []   # −2.5 %
    events = await b.evaluate(AccountSnapshot(D("970")), T0 + timedelta(hours=4))       # −3 %: trips
    assert kinds(events) == [("BreakerTripped", DAILY_LOSS)]
    assert "3.00%" in events[0].reason
    assert (await b.entries_blocked("BTCUSDT", T0 + timedelta(hours=5))).startswith("daily_loss")
    assert await b.entries_blocked(None, T0 + timedelta(hours=5)) is not None
    # recovering the same day does not reset it
    assert await b.evaluate(AccountSnapshot(D("1010")), T0 + timedelta(hours=6)) == []
    await db.close()

    db2, b2 = await reopen(tmp_path / "b.sqlite3")
    try:
        stored = await StateRepository(db2).get("breaker:daily_loss")
        assert stored["tripped"] and stored["start_equity"] == "1000" and stored["day"] == "2025-04-07"
        assert await b2.entries_blocked("ETHUSDT", T0 + timedelta(hours=23)) is not None
        midnight = datetime(2025, 4, 8, 0, 0, 30, tzinfo=UTC)
        assert await b2.entries_blocked("ETHUSDT", midnight) is None          # its day is over
        events = await b2.evaluate(AccountSnapshot(D("960")), midnight)
        assert kinds(events) == [("BreakerReset", DAILY_LOSS)]
        status = {s.name: s for s in await b2.states(midnight)}[DAILY_LOSS]
        assert not status.tripped and status.detail["start_equity"] == "960"
    finally:
        await db2.close()


async def test_operator_reset_of_daily_loss_rebases_the_start(db: Database):
    b = Breakers(StateRepository(db), CFG)
    await b.evaluate(AccountSnapshot(D("1000")), T0)
    await b.evaluate(AccountSnapshot(D("960")), T0 + timedelta(hours=1))
    assert kinds(await b.reset(DAILY_LOSS, by_operator=True, now=T0 + timedelta(hours=2))) == [
        ("BreakerReset", DAILY_LOSS)]
    # the day now starts at 960: 940 is only −2.08 %
    assert await b.evaluate(AccountSnapshot(D("940")), T0 + timedelta(hours=3)) == []
    assert await b.entries_blocked("BTCUSDT", T0 + timedelta(hours=3)) is None


# ------------------------------------------------------------------------------------------- drawdown
async def test_drawdown_from_peak_equity_resets_only_by_operator(db: Database, tmp_path: Path):
    b = Breakers(StateRepository(db), replace(CFG, daily_loss_pct=D(0), drawdown_close_all=True))
    await b.evaluate(AccountSnapshot(D("1000")), T0)
    await b.evaluate(AccountSnapshot(D("1100")), T0 + timedelta(days=1))            # new peak
    assert await b.evaluate(AccountSnapshot(D("936")), T0 + timedelta(days=2)) == []  # −14.9 %
    events = await b.evaluate(AccountSnapshot(D("935")), T0 + timedelta(days=3))     # −15 % of 1100
    assert kinds(events) == [("BreakerTripped", DRAWDOWN)]
    assert (await b.close_all_request() or "").startswith("drawdown")
    await db.close()

    db2, b2 = await reopen(tmp_path / "b.sqlite3", replace(CFG, daily_loss_pct=D(0), drawdown_close_all=True))
    try:
        assert await b2.close_all_request() is not None                             # survives a restart
        await b2.close_all_done(T0 + timedelta(days=3))
        assert await b2.close_all_request() is None
        later = T0 + timedelta(days=5)
        assert await b2.evaluate(AccountSnapshot(D("1200")), later) == []            # no automatic reset
        assert await b2.entries_blocked("BTCUSDT", later) is not None
        with pytest.raises(BreakerResetRefused):
            await b2.reset(DRAWDOWN, by_operator=False, now=later)
        assert kinds(await b2.reset(DRAWDOWN, by_operator=True, now=later)) == [("BreakerReset", DRAWDOWN)]
        assert await b2.entries_blocked("BTCUSDT", later) is None
        # the peak was re-based on the last equity seen (1200): 1100 is −8.3 %
        assert await b2.evaluate(AccountSnapshot(D("1100")), later + timedelta(minutes=1)) == []
    finally:
        await db2.close()


# ------------------------------------------------------------------------------------------- consecutive losses
async def test_consecutive_losses_trip_and_reset_after_the_pause(db: Database):
    b = Breakers(StateRepository(db), replace(CFG, symbol_cooldown=timedelta(0), symbol_daily_loss_pct=D(0)))
    for i in range(3):
        assert await b.record_trade_closed(loss(reason="manual"), T0 + timedelta(minutes=i)) == []
    await b.record_trade_closed(ClosedTrade("ETHUSDT", D("5"), "take_profit"), T0 + timedelta(minutes=5))  # resets
    for i in range(3):
        assert await b.record_trade_closed(loss(), T0 + timedelta(minutes=10 + i)) == []
    events = await b.record_trade_closed(loss(), T0 + timedelta(minutes=20))
    assert kinds(events) == [("BreakerTripped", CONSECUTIVE_LOSSES)]
    status = {s.name: s for s in await b.states(T0 + timedelta(minutes=21))}[CONSECUTIVE_LOSSES]
    assert status.tripped and status.until == T0 + timedelta(minutes=20, hours=12)
    assert await b.entries_blocked("SOLUSDT", T0 + timedelta(hours=12, minutes=19)) is not None
    assert await b.entries_blocked("SOLUSDT", T0 + timedelta(hours=12, minutes=20)) is None
    events = await b.evaluate(AccountSnapshot(D("1000")), T0 + timedelta(hours=12, minutes=20))
    assert ("BreakerReset", CONSECUTIVE_LOSSES) in kinds(events)
    # the count starts again from zero
    assert await b.record_trade_closed(loss(), T0 + timedelta(hours=13)) == []


async def test_trade_closed_event_is_accepted(db: Database):
    b = Breakers(StateRepository(db), replace(CFG, max_consecutive_losses=1))
    closed = TradeClosed(time=T0, trade_id=1, mode="paper", symbol="BTCUSDT", side="LONG", quantity=D("0.01"),
                         entry_price=D("80000"), exit_price=D("79000"), reason="stop_loss", realized_pnl=D("-10"),
                         fees=D("0.8"), funding=D("0"))
    events = await b.record_trade_closed(closed, T0)
    assert kinds(events) == [("BreakerTripped", CONSECUTIVE_LOSSES), ("BreakerTripped", "symbol_cooldown:BTCUSDT")]


# ------------------------------------------------------------------------------------------- volatility
async def test_volatility_spike_trips_and_resets_with_hysteresis(db: Database):
    b = Breakers(StateRepository(db), CFG)
    assert await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=2.4), T0) == []
    events = await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=2.6), T0 + timedelta(minutes=1))
    assert kinds(events) == [("BreakerTripped", VOLATILITY)]
    assert await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=1.4), T0 + timedelta(minutes=30)) == []  # pause
    assert await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=2.0), T0 + timedelta(hours=2)) == []  # > 1.5
    assert await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=None), T0 + timedelta(hours=2)) == []
    assert await b.entries_blocked("ETHUSDT", T0 + timedelta(hours=2)) is not None
    events = await b.evaluate(AccountSnapshot(D("1000"), btc_atr_ratio=1.4), T0 + timedelta(hours=2))
    assert kinds(events) == [("BreakerReset", VOLATILITY)]
    assert await b.entries_blocked("ETHUSDT", T0 + timedelta(hours=2)) is None


# ------------------------------------------------------------------------------------------- API errors
async def test_api_error_rate(db: Database):
    b = Breakers(StateRepository(db), CFG)
    for i in range(9):
        assert await b.record_api_error(T0 + timedelta(seconds=i)) == []
    # the first nine fall out of the 5-minute window: the tenth, 6 minutes later, does not trip
    assert await b.record_api_error(T0 + timedelta(minutes=6)) == []
    for i in range(8):  # with the one at +6 min: 9 within the window
        assert await b.record_api_error(T0 + timedelta(minutes=7, seconds=i)) == []
    events = await b.record_api_error(T0 + timedelta(minutes=8))
    assert kinds(events) == [("BreakerTripped", API_ERRORS)]
    # still failing at +18 min: the pause now ends 15 min after that error
    assert await b.record_api_error(T0 + timedelta(minutes=18)) == []
    assert await b.evaluate(AccountSnapshot(D("1000")), T0 + timedelta(minutes=32)) == []
    assert await b.entries_blocked(None, T0 + timedelta(minutes=32)) is not None
    events = await b.evaluate(AccountSnapshot(D("1000")), T0 + timedelta(minutes=33))
    assert kinds(events) == [("BreakerReset", API_ERRORS)]
    assert await b.entries_blocked(None, T0 + timedelta(minutes=33)) is None


# ------------------------------------------------------------------------------------------- per symbol
async def test_symbol_cooldown_after_a_losing_stop(db: Database, tmp_path: Path):
    b = Breakers(StateRepository(db), CFG)
    assert await b.record_trade_closed(loss(pnl="12", reason="stop_loss"), T0) == []       # trailing stop in profit
    assert await b.record_trade_closed(loss(pnl="-3", reason="time_stop"), T0) == []       # not a stop-loss
    events = await b.record_trade_closed(loss(pnl="-10", reason="stop_loss"), T0 + timedelta(minutes=1))
    assert kinds(events) == [("BreakerTripped", "symbol_cooldown:BTCUSDT")]
    assert (await b.entries_blocked("BTCUSDT", T0 + timedelta(hours=1))).startswith("symbol_cooldown:BTCUSDT")
    assert await b.entries_blocked("ETHUSDT", T0 + timedelta(hours=1)) is None
    assert await b.entries_blocked(None, T0 + timedelta(hours=1)) is None
    await db.close()
    db2, b2 = await reopen(tmp_path / "b.sqlite3")
    try:
        assert await b2.entries_blocked("BTCUSDT", T0 + timedelta(hours=2)) is not None
        done = T0 + timedelta(hours=2, minutes=1)
        assert await b2.entries_blocked("BTCUSDT", done) is None
        events = await b2.evaluate(AccountSnapshot(D("1000")), done)
        assert ("BreakerReset", "symbol_cooldown:BTCUSDT") in kinds(events)
    finally:
        await db2.close()


async def test_symbol_daily_loss_limit(db: Database):
    b = Breakers(StateRepository(db), replace(CFG, symbol_cooldown=timedelta(0)))
    await b.evaluate(AccountSnapshot(D("1000")), T0)                  # limit: 2 % of 1000 = 20 USDT per symbol
    assert await b.record_trade_closed(loss("ETHUSDT", "-12", "manual"), T0 + timedelta(hours=1)) == []
    assert await b.record_trade_closed(loss("ETHUSDT", "4", "take_profit"), T0 + timedelta(hours=2)) == []
    assert await b.record_trade_closed(loss("BTCUSDT", "-15", "manual"), T0 + timedelta(hours=2)) == []
    events = await b.record_trade_closed(loss("ETHUSDT", "-12", "manual"), T0 + timedelta(hours=3))  # net −20
    assert kinds(events) == [("BreakerTripped", "symbol_daily_loss:ETHUSDT")]
    assert await b.entries_blocked("ETHUSDT", T0 + timedelta(hours=4)) is not None
    assert await b.entries_blocked("BTCUSDT", T0 + timedelta(hours=4)) is None
    events = await b.evaluate(AccountSnapshot(D("1000")), datetime(2025, 4, 8, 0, 0, 5, tzinfo=UTC))
    assert ("BreakerReset", "symbol_daily_loss:ETHUSDT") in kinds(events)
    assert await b.entries_blocked("ETHUSDT", datetime(2025, 4, 8, 0, 1, tzinfo=UTC)) is None


async def test_operator_resets_symbol_breakers(db: Database):
    b = Breakers(StateRepository(db), CFG)
    await b.evaluate(AccountSnapshot(D("1000")), T0)
    await b.record_trade_closed(loss("ETHUSDT", "-25"), T0)
    await b.record_trade_closed(loss("SOLUSDT", "-5"), T0)
    blocked = {s.name for s in await b.states(T0) if s.tripped}
    assert blocked == {"symbol_cooldown:ETHUSDT", "symbol_cooldown:SOLUSDT", "symbol_daily_loss:ETHUSDT"}
    assert kinds(await b.reset("symbol_cooldown:ETHUSDT", by_operator=True, now=T0)) == [
        ("BreakerReset", "symbol_cooldown:ETHUSDT")]
    assert kinds(await b.reset("all", by_operator=True, now=T0)) == [
        ("BreakerReset", "symbol_cooldown:SOLUSDT"), ("BreakerReset", "symbol_daily_loss:ETHUSDT")]
    assert await b.entries_blocked("ETHUSDT", T0) is None
    # ETH's loss so far is forgiven with the reset: a small loss does not trip it again
    assert kinds(await b.record_trade_closed(loss("ETHUSDT", "-1", "manual"), T0)) == []


async def test_states_list_every_breaker_with_thresholds(db: Database):
    b = Breakers(StateRepository(db), CFG)
    states = await b.states(T0)
    assert [s.name for s in states] == [DAILY_LOSS, DRAWDOWN, CONSECUTIVE_LOSSES, VOLATILITY, API_ERRORS]
    assert all(s.threshold and s.reset_rule and not s.tripped for s in states)
    with pytest.raises(KeyError):
        await b.reset("nonsense", by_operator=True, now=T0)
    assert await b.reset(VOLATILITY, by_operator=False, now=T0) == []        # not tripped: nothing to do


async def test_disabled_breakers_never_trip(db: Database):
    off = BreakerConfig(daily_loss_pct=D(0), max_drawdown_pct=D(0), max_consecutive_losses=0, volatility_ratio=0,
                        api_errors_max=0, symbol_cooldown=timedelta(0), symbol_daily_loss_pct=D(0))
    b = Breakers(StateRepository(db), off)
    events = [*await b.evaluate(AccountSnapshot(D("1000"), 9.0), T0),
              *await b.evaluate(AccountSnapshot(D("100"), 9.0), T0 + timedelta(minutes=1))]
    for _ in range(20):
        events += await b.record_trade_closed(loss(pnl="-100"), T0)
        events += await b.record_api_error(T0)
    assert not [e for e in events if isinstance(e, BreakerTripped | BreakerReset)]
    assert await b.entries_blocked("BTCUSDT", T0) is None


# ------------------------------------------------------------------------------------------- real crash day
CRASH_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


class CrashDay:
    """The paper trader on the bundled real data with its own production breakers (settings defaults): the
    monitor evaluates them on account equity, the scan asks them before every entry, closed trades feed back."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.breakers = rig.trader.breakers

    @property
    def events(self) -> list:
        return [e for e in self.rig.sink.events if isinstance(e, BreakerTripped | BreakerReset)]

    async def tick(self) -> None:
        await self.rig.trader.monitor()
        await self.rig.trader.scan()
        self.rig.clock.advance(timedelta(minutes=5))

    def opened_since(self, when: datetime) -> list[TradeOpened]:
        return [e for e in self.rig.sink.of(TradeOpened) if e.time >= when]

    async def protected(self) -> bool:
        stops = {o.symbol for o in await self.rig.exchange.open_protective_orders()
                 if o.kind is ProtectiveKind.STOP_LOSS and o.status.is_open}
        return all(p.symbol in stops for p in await self.rig.exchange.positions())


@pytest.mark.slow
async def test_real_crash_day_trips_daily_loss_and_next_utc_day_resets(tmp_path: Path):
    # 2025-04-06: BTC −6 %, ETH −13 %, SOL −14 % from 12:00 UTC (bundled Binance 5m data). Three 2 %-risk longs
    # opened at 00:00 lose 3 % of the day's equity by mid-morning: the daily-loss breaker trips while they are open.
    path = tmp_path / "v.sqlite3"
    clock = ManualClock(datetime(2025, 4, 6, 0, 0, 5, tzinfo=UTC))
    settings = dict(symbols=list(CRASH_SYMBOLS), universe_size=3, max_open_positions=3, risk_per_trade_pct=D("2"),
                    max_correlated_positions=3, symbol_daily_loss_pct=D(0), max_consecutive_losses=0,
                    funding_max_pay_pct=D(0))
    rig = await build_rig(path, clock=clock, voted=set(CRASH_SYMBOLS), full=True, exits=False, **settings)
    day = CrashDay(rig)
    try:
        while not any(isinstance(e, BreakerTripped) and e.breaker == DAILY_LOSS for e in day.events):
            await day.tick()
            assert clock.now() < datetime(2025, 4, 7, tzinfo=UTC), "the crash day did not trip the breaker"
        tripped_at = clock.now() - timedelta(minutes=5)
        assert len(day.opened_since(datetime(2025, 4, 6, tzinfo=UTC))) == 3
        assert len(await rig.exchange.positions()) == 3 and await day.protected()
        assert (await day.breakers.entries_blocked("BTCUSDT", clock.now())).startswith(DAILY_LOSS)
        for _ in range(12):
            await day.tick()
        assert day.opened_since(tripped_at) == []                                  # entries stopped
    finally:
        await rig.close()

    # restart: the breaker is still tripped, the positions still carry their exchange stops
    rig = await build_rig(path, clock=clock, voted=set(CRASH_SYMBOLS), full=True, exits=False, **settings)
    day = CrashDay(rig)
    try:
        assert await day.breakers.entries_blocked(None, clock.now()) is not None
        assert await rig.exchange.positions() and await day.protected()
        while clock.now() < datetime(2025, 4, 7, 0, 5, tzinfo=UTC):
            await day.tick()
        closed = rig.sink.of(TradeClosed)
        # every position open at the trip was closed by its own stop during the sell-off, none re-opened that day
        assert [c.reason for c in closed] == ["stop_loss"] * 3 and all(c.net_pnl < 0 for c in closed)
        assert [o for o in day.opened_since(tripped_at) if o.time < datetime(2025, 4, 7, tzinfo=UTC)] == []
        resets = [e for e in day.events if isinstance(e, BreakerReset) and e.breaker == DAILY_LOSS]
        assert [r.time for r in resets] == [datetime(2025, 4, 7, 0, 0, 5, tzinfo=UTC)]
        assert len(day.opened_since(datetime(2025, 4, 7, tzinfo=UTC))) == 3      # entries resume
    finally:
        await rig.close()
