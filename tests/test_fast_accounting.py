"""The fast engine's accounting on hand-built candles, checked to the cent against numbers computed by hand.

Symbol rules: tick 0.01, step 0.001; one leverage bracket (20x, maintenance 0.5 %, cum 0). Taker fee 0.05 %,
slippage 0.1 %, risk 1 % of a 1000 USDT account, stop = 2 ATR, take-profit = 4 ATR, ladder ⅓ at 1R, trailing
stop keeping half the peak profit from 1R; time / stale / signal exits, breakers, adaptive levels and the
liquidation guard off so that each number below follows from the candles alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import numpy as np

from core.enums import ExitReason, PositionSide
from engine.backtest.account import SymbolData
from engine.backtest.fast import FastConfig, run_engine
from engine.backtest.results import BacktestResult
from engine.exchange.types import LeverageBracket, MarginType, SymbolRules
from engine.policy.adaptive import AdaptiveConfig
from engine.policy.breakers import BreakerConfig
from engine.policy.exits import ExitConfig
from engine.policy.risk import LimitsConfig, RiskConfig
from strategies.scanner import SymbolContext
from strategies.types import Direction, Signal

D = Decimal
T0 = datetime(2024, 1, 1, 7, 0, tzinfo=UTC)  # first candle; the run starts at 07:30, funding at 08:00
STEP = 300_000
BRACKET = LeverageBracket(1, 20, D(0), D(10**9), D("0.005"), D(0))


def rules(symbol: str) -> SymbolRules:
    return SymbolRules(symbol, "TRADING", symbol[:-4], "USDT", D("0.01"), D("0.01"), D(10**6), D("0.001"),
                       D("0.001"), D(10**6), D("0.001"), D("0.001"), D(10**6), D(5), (BRACKET,))


def candles(symbol: str, special: dict[int, tuple[float, float, float, float]], n: int = 40,
            funding: tuple[tuple[datetime, str], ...] = ()) -> SymbolData:
    """``n`` flat candles at 100 from T0, with ``special`` (index → open, high, low, close) replaced."""
    ohlc = np.full((n, 4), 100.0)
    for i, row in special.items():
        ohlc[i] = row
    times = np.array([int(T0.timestamp() * 1000) + i * STEP for i in range(n)], dtype=np.int64)
    return SymbolData(symbol, times, ohlc[:, 0], ohlc[:, 1], ohlc[:, 2], ohlc[:, 3],
                      np.array([int(t.timestamp() * 1000) for t, _ in funding], dtype=np.int64),
                      tuple(D(r) for _, r in funding))


class OneSignal:
    """A signal table with the same signal at the candles ``indices``."""

    def __init__(self, symbol: str, n: int, indices: tuple[int, ...], direction: Direction, atr: float) -> None:
        self.direction = np.zeros(n, dtype=np.int8)
        self.score = np.zeros(n)
        self.direction[list(indices)] = int(direction)
        self.score[list(indices)] = 0.9
        self.indices = indices
        self.signal = Signal(symbol, direction, 0.9, 100.0, atr)

    def signal_at(self, i: int) -> Signal | None:
        return self.signal if i in self.indices else None

    def context_at(self, i: int) -> SymbolContext | None:
        return None


def config(leverage: int, *, max_drawdown_pct: Decimal = D(0), operator_reset_after: timedelta | None = None
           ) -> FastConfig:
    off = BreakerConfig(daily_loss_pct=D(0), max_drawdown_pct=max_drawdown_pct, max_consecutive_losses=0,
                        volatility_ratio=0.0, api_errors_max=0, symbol_cooldown=timedelta(0),
                        symbol_daily_loss_pct=D(0))
    return FastConfig(
        risk=RiskConfig(risk_per_trade_pct=D(1), leverage=leverage, max_position_notional_pct=D(1000),
                        stop_atr_mult=D(2), take_profit_atr_mult=D(4), min_stop_pct=D("0.1"), max_stop_pct=D(10),
                        min_reward_risk=D("1.5"), taker_fee=D("0.0005"), liq_min_stop_multiple=D(0)),
        limits=LimitsConfig(max_open_positions=3, correlation_threshold=1.0, funding_max_pay_rate=D(0)),
        exits=ExitConfig(time_stop=None, stale_after=None, signal_exit_score=0.0),
        adaptive=AdaptiveConfig(enabled=False), breakers=off, margin_type=MarginType.ISOLATED,
        start_balance=D(1000), taker_fee=D("0.0005"), slippage_pct=D("0.1"), default_leverage=leverage,
        operator_reset_after=operator_reset_after)


def run(symbol: str, data: SymbolData, direction: Direction, atr: float, leverage: int,
        indices: tuple[int, ...] = (5,), cfg: FastConfig | None = None) -> BacktestResult:
    signals = {symbol: OneSignal(symbol, len(data.open_time), indices, direction, atr)}  # 5: 07:25 → entry 07:30:05
    return run_engine(cfg or config(leverage), {symbol: rules(symbol)}, {symbol: data}, signals, [symbol],
                      T0 + timedelta(minutes=30), T0 + timedelta(hours=3))


def at(minutes: int, ms: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, milliseconds=ms)


def test_long_pays_fees_and_funding_takes_a_partial_and_exits_on_its_trailing_stop() -> None:
    # 08:00 funding at 0.01 %; 08:05 rises to 102.5 (mark 102.5 at 08:10:05: 1.2 R → partial + stop to 101.3);
    # 08:15 falls through the trailed stop
    data = candles("AAAUSDT", {13: (100, 102.5, 100, 102.5), 14: (102.5, 102.5, 102.5, 102.5),
                               15: (102.5, 102.5, 101.0, 101.0), **{i: (101, 101, 101, 101) for i in range(16, 40)}},
                   funding=((at(60), "0.0001"),))
    result = run("AAAUSDT", data, Direction.LONG, atr=1.0, leverage=20)

    assert len(result.trades) == 1
    t = result.trades[0]
    # entry: mark 100 bought 0.1 % higher = 100.10; stop 100.10 − 2 = 98.10, take-profit 104.10
    # size: 10 USDT risk / (|100 − 98| + (100 + 98) × 0.0005) = 10 / 2.099 = 4.7641… → 4.764
    assert (t.side, t.entry_price, t.quantity, t.opened_at) == (PositionSide.LONG, D("100.1"), D("4.764"), at(30, 5000))
    entry_fee = D("100.1") * D("4.764") * D("0.0005")                  # 0.2384382
    funding = -D("4.764") * D(100) * D("0.0001")                       # −0.04764 (the 08:00 candle opens at 100)
    # partial at mark 102.5: ⅓ of 4.764 = 1.588 sold at 102.5 × 0.999 = 102.3975 → 102.39
    partial_pnl = (D("102.39") - D("100.1")) * D("1.588")              # 3.63652
    partial_fee = D("102.39") * D("1.588") * D("0.0005")               # 0.08129766
    # trailing stop 100.10 + ½ × (102.5 − 100.10) = 101.30 fires at 101.30 × 0.999 = 101.1987 → 101.19
    rest_pnl = (D("101.19") - D("100.1")) * D("3.176")                  # 3.46184
    rest_fee = D("101.19") * D("3.176") * D("0.0005")                  # 0.16068972
    assert t.exit_reason == ExitReason.TRAILING_STOP
    assert t.exit_price == D("101.59")                                  # (102.39 × 1.588 + 101.19 × 3.176) / 4.764
    assert t.fees == entry_fee + partial_fee + rest_fee == D("0.48042558")
    assert t.funding == funding == D("-0.04764")
    assert t.net_pnl == partial_pnl + rest_pnl - t.fees + funding == D("6.57029442")
    # the stop was hit 1.2 into a 4.5 path (102.5 → 101 → 102.5 → 101) of the 08:15 candle
    assert t.closed_at == at(75, int(D("1.2") / D("4.5") * (STEP - 1)))
    assert t.risk == D(2) * D("4.764")
    assert result.end_equity == D(1000) + t.net_pnl
    assert round(t.net_pnl, 2) == D("6.57")


def test_short_is_liquidated_before_its_stop_and_loses_exactly_its_isolated_margin() -> None:
    # 07:35 candle: 100 → 106 → 100 → 105; the liquidation level (≈104.37) is reached before the stop (105.90)
    data = candles("BBBUSDT", {7: (100, 106, 100, 105), **{i: (105, 105, 105, 105) for i in range(8, 40)}})
    result = run("BBBUSDT", data, Direction.SHORT, atr=3.0, leverage=20)

    assert len(result.trades) == 1
    t = result.trades[0]
    # entry: mark 100 sold 0.1 % lower = 99.90; stop 2 × 3 = 6 away: 105.90
    # size: 10 / (6 + (100 + 106) × 0.0005) = 10 / 6.103 = 1.6385… → 1.638
    q, entry = D("1.638"), D("99.9")
    assert (t.side, t.entry_price, t.quantity) == (PositionSide.SHORT, entry, q)
    margin = q * entry / 20                                            # 8.18181 isolated margin at 20x
    entry_fee = q * entry * D("0.0005")                                # 0.0818181
    # Binance isolated short: LP = (margin + q × entry) / (q × (1 + maintenance rate)) = 104.3731… → 104.37
    lp = (margin + q * entry) / (q * (1 + D("0.005")))
    fill = lp.quantize(D("0.01"), rounding=ROUND_FLOOR)
    assert fill == D("104.37")
    realized = (fill - entry) * q * -1                                  # −7.32186
    liquidation_fee = margin + realized                                # the rest of the margin: 0.85995
    assert t.exit_reason == ExitReason.LIQUIDATION
    assert t.exit_price == fill
    assert t.fees == entry_fee + liquidation_fee == D("0.9417681")
    assert t.funding == 0
    assert t.net_pnl == -(margin + entry_fee) == D("-8.2636281")       # the whole isolated margin, plus the fee
    assert t.closed_at == at(35, int((lp - 100) / 17 * (STEP - 1)))    # path 6 + 6 + 5, up first for a short
    assert result.end_equity == D(1000) + t.net_pnl


def test_a_drawdown_halt_stops_entries_for_the_rest_of_the_run_unless_an_operator_resets_it() -> None:
    # the short of the previous test is liquidated at 07:35 (−8.26 USDT, 0.83 % of the account); a 0.5 % drawdown
    # limit trips at the 07:40:05 tick; the same signal comes again at 08:25 (entry 08:30:05)
    data = candles("BBBUSDT", {7: (100, 106, 100, 105), **{i: (105, 105, 105, 105) for i in range(8, 40)}})
    halted = run("BBBUSDT", data, Direction.SHORT, atr=3.0, leverage=20, indices=(5, 17),
                 cfg=config(20, max_drawdown_pct=D("0.5")))
    assert [t.opened_at for t in halted.trades] == [at(30, 5000)]
    assert [(h.time, h.resumed_at) for h in halted.halts] == [(at(40, 5000), None)]
    assert halted.halts[0].reason.startswith("drawdown: equity 991.74 is 0.83% below the peak 1000.00")

    reset = run("BBBUSDT", data, Direction.SHORT, atr=3.0, leverage=20, indices=(5, 17),
                cfg=config(20, max_drawdown_pct=D("0.5"), operator_reset_after=timedelta(minutes=30)))
    assert [(h.time, h.resumed_at) for h in reset.halts] == [(at(40, 5000), at(70, 5000))]
    assert [t.opened_at for t in reset.trades][:2] == [at(30, 5000), at(90, 5000)]


def test_a_cross_liquidation_level_follows_the_other_positions_marks() -> None:
    """Two CROSSED longs: as the second one's price falls, the shared wallet shrinks and the first one's
    liquidation level rises. The account keeps its triggers between changes; at every step the level it checks
    against is the one computed afresh."""
    from core.enums import Side
    from engine.backtest.account import Account

    falling = {i: (100.0 - 0.5 * (i - 1), 100.0 - 0.5 * (i - 1), 100.0 - 0.5 * i, 100.0 - 0.5 * i)
               for i in range(1, 30)}
    data = {"AUSDT": candles("AUSDT", {}), "BUSDT": candles("BUSDT", falling)}
    account = Account({s: rules(s) for s in data}, data, D(1000), D("0.0005"), D(0), 10, MarginType.CROSSED)
    start = int(T0.timestamp() * 1000) + 5_000
    account.market_order("AUSDT", Side.BUY, D(40), start, reduce_only=False)
    account.market_order("BUSDT", Side.BUY, D(40), start, reduce_only=False)
    levels = []
    for k in range(1, 30):
        now = start + k * STEP
        account.catch_up(now)
        if "AUSDT" not in account.positions or "BUSDT" not in account.positions:
            break
        checked = [t.level for t in account._triggers("AUSDT") if t.ref is None]
        assert checked == [account.liquidation_level("AUSDT")], k
        levels.append(checked[0])
    assert len(levels) > 10 and levels == sorted(levels) and levels[-1] > levels[0]
