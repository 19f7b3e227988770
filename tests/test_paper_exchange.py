"""PaperExchange: fills, fees, triggers, funding, liquidation and restarts, against hand-computed numbers.

Most tests run over ``FakeMarket`` below (hand-built 1m candles, a settable mark price and funding), on a
real SQLite file. One test runs over HistoricalMarket on the bundled real data.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock, from_ms, to_ms
from core.intervals import interval_ms
from engine.exchange.errors import (
    FilterViolation,
    InsufficientMargin,
    MinNotionalError,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
    WouldTrigger,
)
from engine.exchange.historical import HistoricalMarket
from engine.exchange.paper import PaperExchange
from engine.exchange.protocol import Exchange, MarketData
from engine.exchange.types import (
    FundingRate,
    KlineBatch,
    LeverageBracket,
    MarginType,
    MarkPrice,
    OrderStatus,
    PositionSide,
    ProtectiveKind,
    ProtectiveStatus,
    Side,
    SymbolRules,
    Ticker24h,
)
from storage.db import Database

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
SYM = "TESTUSDT"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
MIN = 60_000
STOP = ProtectiveKind.STOP_LOSS
TP = ProtectiveKind.TAKE_PROFIT

RULES = SymbolRules(
    symbol=SYM, status="TRADING", base_asset="TEST", quote_asset="USDT", tick_size=D("0.01"),
    min_price=D("0.01"), max_price=D("1000000"), step_size=D("0.001"), min_qty=D("0.001"),
    max_qty=D("1000000"), market_step_size=D("0.001"), market_min_qty=D("0.001"),
    market_max_qty=D("1000000"), min_notional=D(5),
    brackets=(LeverageBracket(1, 50, D(0), D("50000"), D("0.005"), D(0)),
              LeverageBracket(2, 20, D("50000"), D("1000000"), D("0.01"), D("250"))))


class FakeMarket:
    """Hand-built 1m candles (only closed ones are served), a settable mark price and funding events."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.candles: list[tuple[int, float, float, float, float]] = []
        self.mark = D(100)
        self.funding: list[tuple[datetime, D]] = []
        self.closed = False

    def candle(self, minute: int, o: float, h: float, low: float, c: float) -> None:
        """Add the 1m candle opening ``minute`` minutes after T0."""
        self.candles.append((to_ms(T0) + minute * MIN, o, h, low, c))
        self.candles.sort()

    async def symbol_rules(self) -> dict[str, SymbolRules]:
        return {SYM: RULES}

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     limit: int = 500) -> KlineBatch:
        assert interval == "1m"
        now_ms = to_ms(self.clock.now())
        closed = [c for c in self.candles if c[0] + interval_ms(interval) <= now_ms]
        if start_ms is not None:
            i = bisect.bisect_left([c[0] for c in closed], start_ms)
            rows = closed[i:i + limit]
        else:
            rows = closed[-limit:]
        return KlineBatch.from_rows(symbol, interval, [[*r, 1.0] for r in rows])

    async def tickers_24h(self) -> list[Ticker24h]:
        return []

    async def mark_price(self, symbol: str) -> MarkPrice:
        if symbol != SYM:
            raise UnknownSymbol(symbol)
        return MarkPrice(symbol, self.mark, D(0), T0 + timedelta(hours=8), self.clock.now())

    async def funding_rates(self, symbol: str, start: datetime, end: datetime) -> list[FundingRate]:
        now = self.clock.now()
        return [FundingRate(symbol, t, r) for t, r in self.funding if start <= t <= end and t <= now]

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def market(clock: ManualClock) -> FakeMarket:
    return FakeMarket(clock)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database(tmp_path / "paper.sqlite3").open()
    yield database
    await database.close()


async def make(db: Database, market: MarketData, clock: ManualClock, *, balance: str = "1000",
               leverage: int = 10, margin: MarginType = MarginType.ISOLATED, **kw: object) -> PaperExchange:
    return await PaperExchange(db, market, clock, start_balance=D(balance), trigger_interval="1m",
                               default_leverage=leverage, default_margin_type=margin, **kw).open()  # type: ignore[arg-type]


@pytest.fixture
async def ex(db: Database, market: FakeMarket, clock: ManualClock) -> PaperExchange:
    return await make(db, market, clock)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def long_one(ex: PaperExchange) -> None:
    """Buy 1 at mark 100: fills at 100.02 (0.02 % slippage), fee 0.05001, isolated margin 10.002 at 10x."""
    await ex.place_market_order(SYM, Side.BUY, D(1), "entry")


# --- market orders -----------------------------------------------------------------------------------------
async def test_implements_the_exchange_protocol(ex):
    assert isinstance(ex, Exchange)
    config = await ex.account_config()
    assert config.can_trade and not config.hedge_mode and not config.multi_assets_margin


async def test_long_entry_fill_price_fee_and_balance(ex, market):
    result = await ex.place_market_order(SYM, Side.BUY, D(1), "t1-entry-0")
    assert result.status is OrderStatus.FILLED
    assert result.avg_price == D("100.02")  # 100 × 1.0002
    assert result.fee == D("0.05001")  # 100.02 × 1 × 0.0005
    assert result.filled_quantity == D(1) and result.quantity == D(1)
    bal = await ex.balance()
    assert bal.wallet_balance == D("999.94999")
    market.mark = D(101)
    bal = await ex.balance()
    assert bal.unrealized_pnl == D("0.98")
    assert bal.available_balance == D("999.94999") - D("10.002")  # isolated margin 100.02/10
    [pos] = await ex.positions()
    assert (pos.side, pos.quantity, pos.entry_price, pos.leverage) == (PositionSide.LONG, D(1), D("100.02"), 10)
    assert pos.isolated_margin == D("10.002") and pos.margin_type is MarginType.ISOLATED
    # LP = (100.02 − 10.002) / (1 − 0.005)
    assert pos.liquidation_price == D("90.018") / D("0.995")
    [fill] = await ex.fills(SYM, T0)
    assert (fill.price, fill.quantity, fill.fee, fill.realized_pnl, fill.side) == (
        D("100.02"), D(1), D("0.05001"), D(0), Side.BUY)
    assert fill.client_id == "t1-entry-0"


async def test_sell_slippage_and_close_realises_pnl(ex, market):
    await long_one(ex)
    market.mark = D(110)
    result = await ex.place_market_order(SYM, Side.SELL, D(1), "exit", reduce_only=True)
    assert result.avg_price == D("109.97")  # 110 × 0.9998 = 109.978, floored to the tick
    assert result.fee == D("0.054985")
    assert await ex.positions() == []
    # 1000 − 0.05001 + (109.97 − 100.02) − 0.054985
    assert (await ex.balance()).wallet_balance == D("1009.845005")
    assert [f.realized_pnl for f in await ex.fills(SYM, T0)] == [D(0), D("9.95")]


async def test_increase_averages_entry_and_partial_reduce_releases_margin(ex, market):
    await long_one(ex)
    market.mark = D(110)
    await ex.place_market_order(SYM, Side.BUY, D(1), "add")  # fills at 110.03 (110.022 ceiled)
    [pos] = await ex.positions()
    assert pos.entry_price == (D("100.02") + D("110.03")) / 2
    assert pos.isolated_margin == D("10.002") + D("11.003")
    await ex.place_market_order(SYM, Side.SELL, D("0.5"), "part", reduce_only=True)
    [pos] = await ex.positions()
    assert pos.quantity == D("1.5")
    assert pos.isolated_margin == (D("10.002") + D("11.003")) * D("1.5") / 2


async def test_idempotent_client_id(ex):
    first = await ex.place_market_order(SYM, Side.BUY, D(1), "same-id")
    again = await ex.place_market_order(SYM, Side.BUY, D(1), "same-id")
    assert again == first
    [pos] = await ex.positions()
    assert pos.quantity == D(1)
    assert (await ex.balance()).wallet_balance == D("999.94999")
    assert await ex.get_order(SYM, "same-id") == first
    assert await ex.get_order(SYM, "never-sent") is None


async def test_min_notional_and_filters(ex):
    with pytest.raises(MinNotionalError) as err:
        await ex.place_market_order(SYM, Side.BUY, D("0.001"), "tiny")  # 0.1 USDT < 5
    assert err.value.code == -4164
    with pytest.raises(FilterViolation):
        await ex.place_market_order(SYM, Side.BUY, D("1.0005"), "bad-step")
    with pytest.raises(UnknownSymbol):
        await ex.place_market_order("NOPEUSDT", Side.BUY, D(1), "unknown")
    assert await ex.get_order(SYM, "tiny") is None  # rejected orders are never recorded


async def test_insufficient_margin(ex):
    # 100 × 100.02 / 10 = 1000.2 initial margin + 5.001 fee > 1000
    with pytest.raises(InsufficientMargin) as err:
        await ex.place_market_order(SYM, Side.BUY, D(100), "big")
    assert err.value.code == -2019
    assert await ex.positions() == []
    assert (await ex.balance()).wallet_balance == D(1000)
    await ex.place_market_order(SYM, Side.BUY, D(99), "fits")  # 990.198 + 4.95099 ≤ 1000


async def test_reduce_only_rules(ex, market):
    with pytest.raises(OrderRejected) as err:
        await ex.place_market_order(SYM, Side.SELL, D(1), "ro", reduce_only=True)
    assert err.value.code == -2022
    await long_one(ex)
    with pytest.raises(OrderRejected):
        await ex.place_market_order(SYM, Side.BUY, D(1), "ro2", reduce_only=True)  # would increase
    result = await ex.place_market_order(SYM, Side.SELL, D(3), "ro3", reduce_only=True)
    assert result.filled_quantity == D(1)  # cut to the position size
    assert await ex.positions() == []


async def test_flip_without_reduce_only(ex, market):
    await long_one(ex)
    await ex.place_market_order(SYM, Side.SELL, D(3), "flip")  # fills 3 at 99.98
    [pos] = await ex.positions()
    assert (pos.side, pos.quantity, pos.entry_price) == (PositionSide.SHORT, D(2), D("99.98"))
    assert pos.isolated_margin == D("19.996")


async def test_market_close_expires_protective_orders(ex, market):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    await ex.place_protective_order(SYM, Side.SELL, TP, D(105), "tp")
    await ex.place_market_order(SYM, Side.SELL, D("0.4"), "part", reduce_only=True)
    assert len(await ex.open_protective_orders(SYM)) == 2  # a partial exit keeps them
    await ex.place_market_order(SYM, Side.SELL, D("0.6"), "rest", reduce_only=True)
    assert await ex.open_protective_orders() == []
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.EXPIRED
    assert (await ex.get_protective_order(SYM, "tp")).status is ProtectiveStatus.EXPIRED


# --- protective orders -----------------------------------------------------------------------------------------
async def test_protective_order_placement_rules(ex, market):
    await long_one(ex)
    for side, kind, price in [(Side.SELL, STOP, "100.5"), (Side.SELL, STOP, "100"), (Side.SELL, TP, "99"),
                              (Side.BUY, STOP, "99"), (Side.BUY, TP, "101")]:
        with pytest.raises(WouldTrigger) as err:
            await ex.place_protective_order(SYM, side, kind, D(price), f"wt-{side}-{kind}-{price}")
        assert err.value.code == -2021
    with pytest.raises(FilterViolation):
        await ex.place_protective_order(SYM, Side.SELL, STOP, D("95.005"), "off-tick")
    sl = await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    assert (sl.status, sl.kind, sl.trigger_price, sl.side) == (ProtectiveStatus.NEW, STOP, D(95), Side.SELL)
    assert int(sl.exchange_id) > 0
    assert await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl") == sl  # idempotent
    with pytest.raises(OrderRejected):
        await ex.place_protective_order(SYM, Side.SELL, STOP, D(94), "entry")  # a market order's id
    assert [o.client_id for o in await ex.open_protective_orders(SYM)] == ["sl"]
    await ex.cancel_protective_order(SYM, "sl")
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.CANCELED
    with pytest.raises(OrderNotFound):
        await ex.cancel_protective_order(SYM, "sl")
    assert await ex.get_protective_order(SYM, "unknown") is None
    assert await ex.get_order(SYM, "sl") is None  # algo orders are not plain orders


async def test_stop_loss_triggers_on_candle_low(ex, market, clock):
    market.candle(-1, 100, 100, 50, 100)  # before the entry: never walked
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    await ex.place_protective_order(SYM, Side.SELL, TP, D(105), "tp")
    market.candle(0, 100, 101, 99, 100.5)
    market.candle(1, 100.5, 101, 94, 96)
    clock.set(at(1))
    assert len(await ex.positions()) == 1  # minute 0 was quiet
    clock.set(at(2))
    market.mark = D(96)
    assert await ex.positions() == []
    sl = await ex.get_protective_order(SYM, "sl")
    assert sl.status is ProtectiveStatus.FINISHED and sl.triggered_order_id is not None
    assert (await ex.get_protective_order(SYM, "tp")).status is ProtectiveStatus.EXPIRED
    fills = await ex.fills(SYM, T0)
    exit_fill = fills[-1]
    # stop 95 less 0.02 % slippage = 94.981 → 94.98; fee 94.98 × 0.0005
    assert (exit_fill.price, exit_fill.fee, exit_fill.side) == (D("94.98"), D("0.04749"), Side.SELL)
    assert exit_fill.realized_pnl == D("-5.04")
    assert exit_fill.order_id == sl.triggered_order_id and exit_fill.client_id == "sl"
    assert at(1) <= exit_fill.time < at(2)
    # 1000 − 0.05001 (entry fee) − 5.04 − 0.04749
    assert (await ex.balance()).wallet_balance == D("994.8625")


async def test_take_profit_triggers(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    await ex.place_protective_order(SYM, Side.SELL, TP, D(105), "tp")
    market.candle(0, 100, 106, 99, 105.5)
    clock.set(at(1))
    assert await ex.positions() == []
    tp = await ex.get_protective_order(SYM, "tp")
    assert tp.status is ProtectiveStatus.FINISHED
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.EXPIRED
    exit_fill = (await ex.fills(SYM, T0))[-1]
    assert (exit_fill.price, exit_fill.fee, exit_fill.realized_pnl) == (D("104.97"), D("0.052485"), D("4.95"))
    assert (await ex.balance()).wallet_balance == D("1004.847505")


async def test_gap_through_the_stop_fills_at_the_open(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    market.candle(0, 100, 100.5, 99.5, 99.8)
    market.candle(1, 93, 93.5, 92, 93)
    clock.set(at(2))
    exit_fill = (await ex.fills(SYM, T0))[-1]
    assert exit_fill.price == D("92.98")  # open 93 less slippage (92.9814 → 92.98), not the trigger
    assert exit_fill.time == at(1)
    assert (await ex.balance()).wallet_balance == D(1000) - D("0.05001") + (D("92.98") - D("100.02")) - D("0.04649")


async def test_stop_and_take_profit_in_one_candle_stop_first(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    await ex.place_protective_order(SYM, Side.SELL, TP, D(105), "tp")
    market.candle(0, 100, 106, 94, 100)
    clock.set(at(1))
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.FINISHED
    assert (await ex.get_protective_order(SYM, "tp")).status is ProtectiveStatus.EXPIRED


async def test_short_stop_and_take_profit_in_one_candle_stop_first(ex, market, clock):
    await ex.place_market_order(SYM, Side.SELL, D(1), "short")  # 99.98
    await ex.place_protective_order(SYM, Side.BUY, STOP, D(105), "sl")
    await ex.place_protective_order(SYM, Side.BUY, TP, D(95), "tp")
    market.candle(0, 100, 106, 94, 100)
    clock.set(at(1))
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.FINISHED
    exit_fill = (await ex.fills(SYM, T0))[-1]
    assert (exit_fill.side, exit_fill.price) == (Side.BUY, D("105.03"))  # 105 × 1.0002 = 105.021 → 105.03
    assert exit_fill.realized_pnl == D("99.98") - D("105.03")


async def test_gap_through_take_profit_fills_at_the_open(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, TP, D(105), "tp")
    market.candle(0, 107, 108, 90, 100)  # opens beyond the TP: that happens first
    clock.set(at(1))
    assert (await ex.fills(SYM, T0))[-1].price == D("106.97")  # 107 × 0.9998 = 106.9786 → 106.97


async def test_mark_price_beyond_the_stop_triggers_before_candles_close(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    clock.set(T0 + timedelta(seconds=30))  # no closed candle yet
    market.mark = D(94)
    assert await ex.positions() == []
    assert (await ex.fills(SYM, T0))[-1].price == D("93.98")  # 94 × 0.9998 = 93.9812 → 93.98


async def test_triggered_order_with_no_position_expires(ex, market, clock):
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "orphan")
    market.candle(0, 100, 100, 94, 95)
    clock.set(at(1))
    assert (await ex.get_protective_order(SYM, "orphan")).status is ProtectiveStatus.EXPIRED
    assert await ex.fills(SYM, T0) == []


# --- funding ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, D("-0.0101")), (Side.SELL, D("0.0101"))])
async def test_funding_charged_once_with_the_right_sign(ex, market, clock, side, expected):
    await ex.place_market_order(SYM, side, D(1), "entry")
    wallet = (await ex.balance()).wallet_balance
    market.funding.append((at(2), D("0.0001")))
    market.funding.append((T0 - timedelta(hours=8), D("0.05")))  # before the position: never charged
    for minute in range(5):
        market.candle(minute, 100 + minute, 100 + minute, 100 + minute, 100 + minute)
    clock.set(at(2))
    assert await ex.funding_payments(SYM, T0) == []  # the funding candle has not closed yet
    for minute in (3, 4, 5):
        clock.set(at(minute))
        await ex.balance()
    [payment] = await ex.funding_payments(SYM, T0 - timedelta(days=1))
    # notional at the open of the 00:02 candle (102) × 0.0001, paid by longs, received by shorts
    assert payment.amount == expected * D(102) / D(101)
    assert payment.time == at(2) and payment.rate == D("0.0001")
    assert (await ex.balance()).wallet_balance == wallet + payment.amount
    [pos] = await ex.positions()
    assert pos.isolated_margin == D(1) * (D("100.02") if side is Side.BUY else D("99.98")) / 10 + payment.amount


# --- liquidation -----------------------------------------------------------------------------------------------
async def test_isolated_liquidation_loses_exactly_the_margin(db, market, clock):
    ex = await make(db, market, clock, leverage=20)
    await long_one(ex)  # 100.02, isolated margin 100.02 / 20 = 5.001
    [pos] = await ex.positions()
    expected_lp = (D("100.02") - D("5.001")) / D("0.995")  # 95.4964824...
    assert pos.liquidation_price == expected_lp
    wallet = (await ex.balance()).wallet_balance
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(94), "late-stop")  # below the LP
    market.candle(0, 100, 100, 90, 91)
    clock.set(at(1))
    assert await ex.positions() == []
    assert (await ex.balance()).wallet_balance == wallet - D("5.001")
    liq = (await ex.fills(SYM, T0))[-1]
    assert liq.price == D("95.50")  # LP rounded to the tick, toward the position
    assert liq.realized_pnl == D("95.50") - D("100.02")
    assert liq.fee == D("5.001") + liq.realized_pnl
    assert liq.client_id.startswith("autoclose-")
    assert (await ex.get_protective_order(SYM, "late-stop")).status is ProtectiveStatus.EXPIRED


async def test_stop_above_the_liquidation_price_fills_first(db, market, clock):
    ex = await make(db, market, clock, leverage=20)
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(96), "sl")
    market.candle(0, 100, 100, 90, 91)
    clock.set(at(1))
    assert (await ex.get_protective_order(SYM, "sl")).status is ProtectiveStatus.FINISHED
    assert (await ex.fills(SYM, T0))[-1].price == D("95.98")


async def test_cross_liquidation_realises_the_loss_at_lp(db, market, clock):
    ex = await make(db, market, clock, balance="12", margin=MarginType.CROSSED)
    await long_one(ex)  # wallet 12 − 0.05001 = 11.94999
    [pos] = await ex.positions()
    assert pos.margin_type is MarginType.CROSSED and pos.isolated_margin == 0
    assert pos.liquidation_price == (D("100.02") - D("11.94999")) / D("0.995")  # 88.5125...
    market.candle(0, 100, 100, 80, 85)
    clock.set(at(1))
    assert await ex.positions() == []
    liq = (await ex.fills(SYM, T0))[-1]
    assert liq.price == D("88.52")
    assert liq.realized_pnl == D("-11.50")
    assert liq.fee == D("88.52") * D("0.005")  # maintenance margin at the liquidation price
    assert (await ex.balance()).wallet_balance == D("11.94999") - D("11.50") - D("0.44260")


# --- configuration -----------------------------------------------------------------------------------------------
async def test_leverage_and_margin_type(ex, market):
    with pytest.raises(OrderRejected) as err:
        await ex.set_leverage(SYM, 51)
    assert err.value.code == -4028
    await ex.set_leverage(SYM, 5)
    await ex.set_margin_type(SYM, MarginType.CROSSED)
    await ex.set_margin_type(SYM, MarginType.CROSSED)  # no need to change: fine
    await long_one(ex)
    [pos] = await ex.positions()
    assert (pos.leverage, pos.margin_type) == (5, MarginType.CROSSED)
    with pytest.raises(OrderRejected) as err:
        await ex.set_margin_type(SYM, MarginType.ISOLATED)
    assert err.value.code == -4048


# --- persistence -------------------------------------------------------------------------------------------------
async def test_restart_resumes_wallet_position_and_stop(tmp_path, market, clock):
    path = tmp_path / "restart.sqlite3"
    db = await Database(path).open()
    ex = await make(db, market, clock)
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    market.candle(0, 100, 101, 99, 100)
    clock.set(at(1))
    before = (await ex.balance(), await ex.positions(), await ex.open_protective_orders())
    await ex.close()
    await db.close()
    assert market.closed

    db = await Database(path).open()
    again = await make(db, market, clock, balance="5")  # start balance only counts the first time
    assert (await again.balance(), await again.positions(), await again.open_protective_orders()) == before
    market.candle(1, 100, 100, 94, 95)
    clock.set(at(2))
    assert await again.positions() == []
    sl = await again.get_protective_order(SYM, "sl")
    assert sl.status is ProtectiveStatus.FINISHED
    new = await again.place_protective_order(SYM, Side.SELL, STOP, D(90), "sl-2")
    assert int(new.exchange_id) > int(sl.triggered_order_id)  # ids are never reused
    await db.close()


async def test_crash_replays_quiet_candles_to_the_same_state(tmp_path, market, clock):
    path = tmp_path / "crash.sqlite3"
    db = await Database(path).open()
    ex = await make(db, market, clock)
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    market.funding.append((at(3), D("0.001")))
    for minute in range(6):
        market.candle(minute, 100, 101, 99, 100)
    clock.set(at(6))
    await ex.positions()
    await db.close()  # "crash": the exchange is never closed, quiet cursor moves are lost
    db = await Database(path).open()
    again = await make(db, market, clock)
    [payment] = await again.funding_payments(SYM, T0)
    assert payment.amount == D("-0.1")
    assert (await again.balance()).wallet_balance == D("999.94999") - D("0.1")
    await db.close()


# --- over the real sample data ------------------------------------------------------------------------------------
async def test_stop_on_real_btc_data(db):
    start = datetime(2025, 2, 2, 20, tzinfo=UTC)  # before the 2025-02-03 sell-off
    clock = ManualClock(start)
    market = HistoricalMarket(SAMPLE, clock, ["BTCUSDT"])
    ex = await PaperExchange(db, market, clock, start_balance=D(10000), trigger_interval="1m",
                             default_leverage=5).open()
    assert ex.trigger_interval == "5m"  # the data is 5m: the trigger interval follows it
    mark = (await ex.mark_price("BTCUSDT")).mark_price
    entry = await ex.place_market_order("BTCUSDT", Side.BUY, D("0.010"), "real-entry")
    assert entry.avg_price == (mark * D("1.0002")).quantize(D("0.1"), rounding="ROUND_CEILING")
    stop = (mark * D("0.97")).quantize(D("0.1"))
    await ex.place_protective_order("BTCUSDT", Side.SELL, STOP, stop, "real-sl")

    raw = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz")
    after = raw[raw.open_time >= to_ms(start)]
    hit = after[after.low <= float(stop)].iloc[0]  # first real candle reaching the stop
    while await ex.positions():
        clock.advance(timedelta(minutes=5))
        assert clock.now() < start + timedelta(days=2)
    exit_fill = (await ex.fills("BTCUSDT", start))[-1]
    assert int(hit.open_time) <= to_ms(exit_fill.time) < int(hit.open_time) + 300_000
    trigger_price = min(stop, D(repr(float(hit.open))))
    assert exit_fill.price == (trigger_price * D("0.9998")).quantize(D("0.1"), rounding="ROUND_FLOOR")
    expected = D(10000) - entry.fee + (exit_fill.price - entry.avg_price) * D("0.010") - exit_fill.fee
    payments = await ex.funding_payments("BTCUSDT", start)
    expected += sum((p.amount for p in payments), D(0))
    assert (await ex.balance()).wallet_balance == expected
    assert all(start <= p.time <= exit_fill.time for p in payments)
    assert np.isfinite(float(expected))
    assert from_ms(int(hit.open_time)) > start


async def test_long_jump_walks_every_page_of_candles_in_order(ex, market, clock):
    await long_one(ex)
    await ex.place_protective_order(SYM, Side.SELL, STOP, D(95), "sl")
    for minute in range(2500):
        low = 94 if minute in (1400, 2000) else 99
        market.candle(minute, 100, 101, low, 100)
    clock.set(at(2500))  # one catch-up over three pages of klines
    exit_fill = (await ex.fills(SYM, T0))[-1]
    assert at(1400) <= exit_fill.time < at(1401)
    assert exit_fill.price == D("94.98")


async def test_a_candle_never_fires_an_order_born_inside_it(tmp_path: Path):
    """Causality: a stop placed 30 s into a 1m candle is not filled by that candle's earlier dip, only by
    what comes after (a later candle's range, or the mark)."""
    clock = ManualClock(T0 + timedelta(seconds=30))
    market = FakeMarket(clock)
    market.candle(0, 100, 100.5, 98.5, 100)   # the dip to 98.5 came before the entry at 00:00:30
    market.candle(1, 100, 100.2, 99.8, 100)
    market.candle(2, 100, 100.1, 98.9, 99.5)  # this one reaches the stop
    db = await Database(tmp_path / "p.sqlite3").open()
    ex = await PaperExchange.create(db, market, clock, start_balance=D(1000))
    try:
        await ex.place_market_order(SYM, Side.BUY, D(1), "entry")
        await ex.place_protective_order(SYM, Side.SELL, ProtectiveKind.STOP_LOSS, D(99), "stop")
        clock.advance(timedelta(seconds=95))      # 00:02:05: candles 0 and 1 closed
        assert [p.quantity for p in await ex.positions()] == [D(1)]
        clock.advance(timedelta(minutes=1))       # candle 2 closed
        assert await ex.positions() == []
        stop = await ex.get_protective_order(SYM, "stop")
        assert stop is not None and stop.status is ProtectiveStatus.FINISHED
        (exit_fill,) = [f for f in await ex.fills(SYM, T0) if f.side is Side.SELL]
        assert exit_fill.time >= T0 + timedelta(minutes=2)
    finally:
        await ex.close()
        await db.close()


async def test_the_liquidation_level_follows_a_position_that_grew(db, market, clock):
    """The triggers of a quiet candle are kept while the position and its orders are the same; a grown position
    has a new liquidation level and the next candle is judged on it."""
    ex = await make(db, market, clock, leverage=20)
    await long_one(ex)  # liquidation at 95.50
    market.candle(0, 100, 100, 99, 99.5)
    clock.set(at(1))
    [pos] = await ex.positions()  # a quiet candle: walked with the first position's triggers
    assert pos.quantity == D(1) and pos.liquidation_price < D(96)
    market.mark = D(110)
    await ex.place_market_order(SYM, Side.BUY, D(1), "add")  # 110.022: entry 105.021, margin 10.5021
    [pos] = await ex.positions()
    assert pos.quantity == D(2) and D(100) < pos.liquidation_price < D(101)
    for minute in (1, 2):
        market.candle(minute, 100.5, 100.5, 99, 99.5)  # below the new level, far above the first
    clock.set(at(3))
    assert await ex.positions() == []
    assert (await ex.fills(SYM, T0))[-1].client_id.startswith("autoclose-")
