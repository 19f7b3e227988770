"""The pure fill model (engine/exchange/fills.py), on hand-built candles."""

from __future__ import annotations

from decimal import Decimal

from core.enums import PositionSide, Side
from engine.exchange import fills
from engine.exchange.fills import Candle, Holding
from engine.exchange.types import LeverageBracket, MarginType, ProtectiveKind, SymbolRules

D = Decimal
RULES = SymbolRules("XUSDT", "TRADING", "X", "USDT", D("0.1"), D("0.1"), D(10**6), D("0.001"), D("0.001"), D(10**6),
                    D("0.001"), D("0.001"), D(10**6), D(5))
BRACKETS = (LeverageBracket(1, 20, D(0), D(10**9), D("0.005"), D(0)),)


def long_stop_and_take(stop: str, take: str) -> list[fills.Trigger]:
    return [fills.protective_trigger("stop", Side.SELL, ProtectiveKind.STOP_LOSS, D(stop)),
            fills.protective_trigger("take", Side.SELL, ProtectiveKind.TAKE_PROFIT, D(take))]


def test_a_long_candle_goes_down_first_so_the_stop_fills_before_the_take_profit() -> None:
    candle = Candle(0, D(100), D(110), D(90), D(105))
    hit = fills.first_hit(long_stop_and_take("95", "108"), candle, None, fills.up_first(PositionSide.LONG))
    assert hit is not None and (hit.trigger.ref, hit.price, hit.distance) == ("stop", D(95), D(5))


def test_a_short_candle_goes_up_first() -> None:
    candle = Candle(0, D(100), D(110), D(90), D(95))
    triggers = [fills.protective_trigger("stop", Side.BUY, ProtectiveKind.STOP_LOSS, D(108)),
                fills.protective_trigger("take", Side.BUY, ProtectiveKind.TAKE_PROFIT, D(92))]
    hit = fills.first_hit(triggers, candle, None, fills.up_first(PositionSide.SHORT))
    assert hit is not None and (hit.trigger.ref, hit.price) == ("stop", D(108))
    # the hit's time is interpolated along the path 100 → 110 → 90 → 95 (10 + 20 + 5): 8 of 35
    assert fills.event_ms(candle, hit, 300_000, True) == int(D(8) / D(35) * 299_999)


def test_a_gap_beyond_the_trigger_fills_at_the_open_and_a_liquidation_comes_first_on_a_tie() -> None:
    candle = Candle(0, D(80), D(85), D(75), D(82))
    triggers = [*long_stop_and_take("95", "108"), fills.liquidation_trigger(PositionSide.LONG, D(90))]
    hit = fills.first_hit(triggers, candle, None, False)
    assert hit is not None and hit.trigger.ref is None and hit.price == D(80) and hit.distance == 0
    assert fills.first_hit(long_stop_and_take("95", "108"), candle, None, False).price == D(80)  # type: ignore[union-attr]


def test_prices_slip_against_the_taker_and_round_away_from_it() -> None:
    assert fills.slipped(RULES, D("100.03"), Side.BUY, D("0.02")) == D("100.1")   # 100.05 → up to the tick
    assert fills.slipped(RULES, D("100.03"), Side.SELL, D("0.02")) == D("100.0")  # 100.009994 → down
    assert fills.taker_fee(D(100), D(2), D("0.0005")) == D("0.1")


def test_funding_longs_pay_a_positive_rate_shorts_receive_it() -> None:
    assert fills.funding_amount(PositionSide.LONG, D(2), D(100), D("0.0001")) == D("-0.02")
    assert fills.funding_amount(PositionSide.SHORT, D(2), D(100), D("0.0001")) == D("0.02")


def test_an_isolated_liquidation_costs_exactly_the_isolated_margin() -> None:
    liq = fills.liquidation_fill(RULES, PositionSide.LONG, D(1), D(100), D("95.47"), MarginType.ISOLATED, D(5),
                                 BRACKETS)
    assert (liq.price, liq.realized, liq.fee) == (D("95.5"), D("-4.5"), D("0.5"))  # rounded up against the long
    assert liq.realized - liq.fee == -D(5)
    cross = fills.liquidation_fill(RULES, PositionSide.LONG, D(1), D(100), D("95.47"), MarginType.CROSSED, D(0),
                                   BRACKETS)
    assert cross.fee == D("95.5") * D("0.005")                                     # maintenance margin at that price


def test_executions_average_in_release_margin_pro_rata_and_flip() -> None:
    realized, h, opened = fills.execute(None, Side.BUY, D(2), D(100), leverage=5, margin_type=MarginType.ISOLATED)
    assert (realized, opened, h) == (0, True, Holding(PositionSide.LONG, D(2), D(100), 5, MarginType.ISOLATED, D(40)))
    realized, h, _ = fills.execute(h, Side.BUY, D(2), D(110), leverage=5, margin_type=MarginType.ISOLATED)
    assert h is not None and (h.quantity, h.entry_price, h.isolated_margin) == (D(4), D(105), D(84))
    realized, h, _ = fills.execute(h, Side.SELL, D(1), D(115), leverage=5, margin_type=MarginType.ISOLATED)
    assert realized == D(10) and h is not None and (h.quantity, h.isolated_margin) == (D(3), D(63))
    realized, h, opened = fills.execute(h, Side.SELL, D(4), D(100), leverage=5, margin_type=MarginType.ISOLATED)
    assert realized == D(-15) and opened and h is not None and (h.side, h.quantity) == (PositionSide.SHORT, D(1))
