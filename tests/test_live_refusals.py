"""Correct Binance answers that must never make Vigil close a position at market (or leave it without a stop):
-4130 (one close-position stop per side), a 429 whose cooldown outlasts the retry window, and a position read
that fails right after an entry. Each through the real ``AsyncClient`` against the fake Binance server, taught
first."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import aiohttp
import pytest

from engine.exchange.errors import ProtectionExists
from engine.exchange.types import ProtectiveKind, Side
from storage.records import OrderPurpose, OrderState, TradeStatus
from tests import test_live_survival as survival
from tests.test_live_survival import BTC, ETH, Live, opened

live = survival.live  # the live rig fixture: the real adapter and trader against the fake Binance server

MSG_4130 = "An open stop or take profit order with GTE and closePosition in the direction is existing."


# ----------------------------------------------------------------------------------------- -4130
async def test_fake_refuses_a_second_close_position_order_of_a_kind_on_the_same_side_with_4130(live: Live):
    ex, mark = live.exchange, live.fake.price(BTC)
    below, above = (mark * Decimal("0.8")).quantize(Decimal("0.1")), (mark * Decimal("1.2")).quantize(Decimal("0.1"))
    await ex.place_protective_order(BTC, Side.SELL, ProtectiveKind.STOP_LOSS, below, "operator-stop")
    with pytest.raises(ProtectionExists):
        await ex.place_protective_order(BTC, Side.SELL, ProtectiveKind.STOP_LOSS, below - 1, "second-stop")
    await ex.place_protective_order(BTC, Side.SELL, ProtectiveKind.TAKE_PROFIT, above, "operator-take")
    with pytest.raises(ProtectionExists):
        await ex.place_protective_order(BTC, Side.SELL, ProtectiveKind.TAKE_PROFIT, above + 1, "second-take")
    await ex.place_protective_order(BTC, Side.BUY, ProtectiveKind.STOP_LOSS, above, "other-side")  # other side: fine
    assert len(live.fake.calls("/fapi/v1/algoOrder", "POST")) == 5 and len(live.algos(BTC)) == 3


async def test_adoption_keeps_the_operators_resting_stop_and_never_closes(live: Live):
    live.fake.open_position_by_hand(BTC, "BUY", "0.01")
    below = (live.fake.price(BTC) * Decimal("0.9")).quantize(Decimal("0.1"))
    await live.exchange.place_protective_order(BTC, Side.SELL, ProtectiveKind.STOP_LOSS, below, "operator-stop")
    posts_before = len(live.fake.calls("/fapi/v1/algoOrder", "POST"))
    report = await live.trader.reconcile()
    (trade_id,) = report.adopted
    assert live.closes(BTC) == [] and live.amount(BTC) == Decimal("0.01") and live.critical() == []
    assert [s["clientAlgoId"] for s in live.stops(BTC)] == ["operator-stop"]
    stop_posts = [r for r in live.fake.calls("/fapi/v1/algoOrder", "POST")[posts_before:]
                  if r.params["type"] == "STOP_MARKET"]
    assert stop_posts == []  # looked before placing: no refused second stop
    trade = await live.repos.trades.get(trade_id)
    assert trade.stop_price == below and trade.status is TradeStatus.OPEN
    kept = await live.repos.orders.get("operator-stop")
    assert kept is not None and kept.trade_id == trade_id and kept.status is OrderState.OPEN
    assert (await live.trader.reconcile()).stops_replaced == []  # it counts as the protection from then on


async def test_new_entry_refused_with_4130_keeps_the_resting_stop_and_never_closes(live: Live):
    above = (live.fake.price(ETH) * Decimal("1.1")).quantize(Decimal("0.01"))  # the signal is a short
    await live.exchange.place_protective_order(ETH, Side.BUY, ProtectiveKind.STOP_LOSS, above, "operator-stop")
    trade_id = await opened(live)
    assert live.closes() == [] and live.amount() != 0 and live.critical() == []
    refused = [r for r in live.fake.calls("/fapi/v1/algoOrder", "POST")
               if r.params["type"] == "STOP_MARKET" and r.params["clientAlgoId"] != "operator-stop"]
    assert len(refused) == 1  # Binance said -4130 once; Vigil read the open orders instead of closing
    assert [s["clientAlgoId"] for s in live.stops()] == ["operator-stop"]
    trade = await live.repos.trades.get(trade_id)
    assert trade.status is TradeStatus.OPEN and trade.stop_price == above
    (own,) = [o for o in await live.repos.orders.for_trade(trade_id, OrderPurpose.STOP_LOSS)
              if o.client_id != "operator-stop"]
    assert own.status is OrderState.REJECTED


@pytest.mark.hangs
async def test_lost_stop_answer_then_4130_keeps_vigils_own_stop(live: Live):
    live.fake.faults.next("/fapi/v1/algoOrder", "timeout", method="POST", accept=True, delay=2)
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="GET", status=400, code=-1099,
                          msg="Not found, unauthenticated, or unauthorized.")
    live.fake.faults.next("/fapi/v1/algoOrder", "error", method="POST", status=400, code=-4130, msg=MSG_4130)
    trade_id = await opened(live)
    assert live.closes() == [] and live.amount() != 0 and live.critical() == []
    (stop,) = live.stops()
    (record,) = await live.repos.orders.for_trade(trade_id, OrderPurpose.STOP_LOSS)
    assert record.client_id == stop["clientAlgoId"] and record.status is OrderState.OPEN


# ----------------------------------------------------------------------------------------- 429 cooldowns
@pytest.mark.parametrize("retry_after", [30, None])
async def test_stop_refused_with_429_waits_out_the_cooldown_and_sends_it_again(live: Live, retry_after: int | None):
    live.fake.faults.next("/fapi/v1/algoOrder", "429", method="POST", retry_after=retry_after,
                          retry_after_header=retry_after is not None)
    trade_id = await opened(live)
    assert live.closes() == [] and live.amount() != 0 and live.critical() == []
    assert len(live.stops()) == 1
    posts = [r for r in live.fake.calls("/fapi/v1/algoOrder", "POST") if r.params["type"] == "STOP_MARKET"]
    cooldown = retry_after or 60  # no Retry-After: Vigil waits a minute
    assert len(posts) == 2 and posts[1].time_ms - posts[0].time_ms >= cooldown * 1000
    assert (await live.repos.trades.get(trade_id)).status is TradeStatus.OPEN


async def test_fake_can_answer_429_without_retry_after(live: Live):
    live.fake.faults.next("/fapi/v1/premiumIndex", "429", method="GET", retry_after_header=False)
    async with aiohttp.ClientSession() as http, http.get(live.fake.base_url + "/fapi/v1/premiumIndex",
                                                          params={"symbol": BTC}) as resp:
        assert resp.status == 429 and "Retry-After" not in resp.headers
        assert (await resp.json())["code"] == -1003


# ----------------------------------------------------------------------------------------- stop before the read
async def test_failed_position_read_after_the_entry_never_stands_before_the_stop(live: Live):
    # the scan reads positions once before its entry; the read after the entry fails (a definite refusal)
    live.fake.faults.next("/fapi/v3/positionRisk", "error", method="GET", status=400, code=-1099, skip=1,
                          msg="Not found, unauthenticated, or unauthorized.")
    result = await live.trader.scan()
    assert len(result.opened) == 1 and live.fake.faults.pending == []
    assert len(live.stops()) == 1 and live.closes() == [] and live.amount() != 0
    trade = await live.repos.trades.get(result.opened[0])
    assert trade.status is TradeStatus.OPEN and trade.liquidation_price is None


# ----------------------------------------------------------------------------------------- filters that change
async def test_stop_refused_for_a_new_tick_size_is_re_rounded_and_sent_again(live: Live):
    live.fake.set_tick_size(ETH, "0.1")  # Binance widened the grid after Vigil loaded the filters (tick 0.01)
    trade_id = await opened(live)  # a short: its stop is a BUY above the price, rounded up on the new grid
    assert live.closes() == [] and live.amount() != 0 and live.critical() == []
    (stop,) = live.stops()
    refused, placed = [r.params["triggerPrice"] for r in live.fake.calls("/fapi/v1/algoOrder", "POST")
                       if r.params["type"] == "STOP_MARKET"]
    assert Decimal(placed) == (Decimal(refused) / Decimal("0.1")).to_integral_value(ROUND_CEILING) * Decimal("0.1")
    assert Decimal(stop["triggerPrice"]) == Decimal(placed) != Decimal(refused)
    trade = await live.repos.trades.get(trade_id)
    assert trade.status is TradeStatus.OPEN and trade.stop_price == Decimal(placed)
    assert len(live.algos(ETH, "TAKE_PROFIT_MARKET")) == 1  # the take-profit too, on the new grid


# ----------------------------------------------------------------------------------------- closing without a stop
async def test_close_after_giving_up_on_the_stop_is_sent_again_when_refused(live: Live):
    live.fake.stop_needs_position_for = timedelta(minutes=5)  # the stop keeps being refused (-4509)
    live.fake.faults.next("/fapi/v1/order", "503_unavailable", method="POST", skip=1)  # the close, not the entry
    report = await live.trader.scan()
    assert report.opened == [] and live.amount() == 0
    (trade,) = await live.repos.trades.closed("live")
    assert trade.exit_reason == "stop_unplaceable"
    exits = [o.status for o in await live.repos.orders.for_trade(trade.id, OrderPurpose.EXIT)]
    assert exits == [OrderState.REJECTED, OrderState.FILLED]


async def test_close_that_never_goes_through_says_the_position_has_no_stop(live: Live):
    live.fake.stop_needs_position_for = timedelta(minutes=5)
    live.fake.faults.next("/fapi/v1/order", "503_unavailable", method="POST", skip=1, times=50)
    await live.trader.scan()
    assert live.amount() != 0 and live.stops() == []
    (trade,) = await live.repos.trades.active("live")
    assert len(await live.repos.orders.for_trade(trade.id, OrderPurpose.EXIT)) >= 2  # sent again, in the window
    last = live.critical()[-1]
    assert "NO stop-loss" in last.message and "exchange-side stop" not in last.message
