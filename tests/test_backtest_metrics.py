"""Metrics on a tiny hand-built result: every figure is worked out by hand (statistics module, not numpy)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from core.clock import to_ms
from core.enums import PositionSide
from engine.backtest.metrics import buy_and_hold, compute_metrics, max_drawdown, metrics_json, monte_carlo
from engine.backtest.results import BacktestResult, HaltNotice, TradeResult

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def trade(symbol: str, side: PositionSide, opened: datetime, closed: datetime, pnl: str, risk: str,
          reason: str = "stop_loss", fees: str = "1", funding: str = "0") -> TradeResult:
    return TradeResult(symbol, side, opened, closed, Decimal(100), Decimal(101), Decimal(1), reason, Decimal(pnl),
                       Decimal(fees), Decimal(funding), Decimal(risk))


TRADES = (
    trade("BTCUSDT", PositionSide.LONG, T0, T0 + 12 * H, "20", "10", "take_profit", funding="-0.5"),
    trade("ETHUSDT", PositionSide.SHORT, T0 + 6 * H, T0 + D, "-30", "15", "stop_loss", funding="0.2"),
    trade("BTCUSDT", PositionSide.SHORT, T0 + 2 * D, T0 + 2 * D + 12 * H, "40", "20", "take_profit"),
)
# equity at the end of each of the 4 days
CURVE = [1010.0, 990.0, 1020.0, 1030.0]


def result(**kw: object) -> BacktestResult:
    times = np.array([to_ms(T0 + (k + 1) * D) for k in range(4)], dtype=np.int64)
    base = dict(strategy="test", engine="fast", symbols=("BTCUSDT", "ETHUSDT"), start=T0, end=T0 + 4 * D,
                start_equity=Decimal(1000), end_equity=Decimal(1030), trades=TRADES, equity_ms=times,
                equity=np.array(CURVE), candles=2 * 4 * 288)
    base.update(kw)
    return BacktestResult(**base)  # type: ignore[arg-type]


def test_trade_figures() -> None:
    m = compute_metrics(result())
    assert m.trades == 3 and m.wins == 2
    assert m.net_pnl == pytest.approx(30.0)
    assert m.win_rate == pytest.approx(200 / 3)
    assert m.profit_factor == pytest.approx(60 / 30)
    assert m.expectancy == pytest.approx(10.0)
    assert m.average_r == pytest.approx((20 / 10 - 30 / 15 + 40 / 20) / 3)
    # positions open: day 1 00:00 → 24:00 (two overlapping trades) and day 3 00:00 → 12:00 = 36 h of 96 h
    assert m.exposure_pct == pytest.approx(36 / 96 * 100)
    assert m.trades_per_day == pytest.approx(3 / 4)
    assert m.fees == pytest.approx(3.0) and m.funding == pytest.approx(-0.3)
    assert [(g.key, g.trades, g.net_pnl) for g in m.by_symbol] == [("BTCUSDT", 2, 60.0), ("ETHUSDT", 1, -30.0)]
    assert [(g.key, g.trades) for g in m.by_side] == [("LONG", 1), ("SHORT", 2)]
    assert [(g.key, g.wins) for g in m.by_exit_reason] == [("stop_loss", 0), ("take_profit", 2)]


def test_curve_figures_use_daily_returns_and_365_days() -> None:
    m = compute_metrics(result())
    returns = [1010 / 1000 - 1, 990 / 1010 - 1, 1020 / 990 - 1, 1030 / 1020 - 1]
    assert m.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365))
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / 4)
    assert m.sortino == pytest.approx(statistics.mean(returns) / downside * math.sqrt(365))
    annual = 1.03 ** (365 / 4) - 1
    assert m.annualised_return_pct == pytest.approx(annual * 100)
    assert m.return_pct == pytest.approx(3.0)
    # deepest fall: 1010 (end of day 1) → 990 (end of day 2), back above 1010 at the end of day 3
    assert m.drawdown.pct == pytest.approx(20 / 1010 * 100)
    assert m.drawdown.peak_at == T0 + D and m.drawdown.trough_at == T0 + 2 * D
    assert m.drawdown.recovered_at == T0 + 3 * D and m.drawdown.duration_days == pytest.approx(2.0)
    assert m.calmar == pytest.approx(annual / (20 / 1010))


def test_daily_resampling_takes_the_last_point_of_each_day() -> None:
    # an intraday dip that recovers before the day ends does not change the daily returns
    times = np.array([to_ms(T0 + 12 * H), to_ms(T0 + D), to_ms(T0 + D + 12 * H), to_ms(T0 + 2 * D)])
    m = compute_metrics(result(equity_ms=times, equity=np.array([900.0, 1010.0, 1000.0, 1030.0]),
                               end=T0 + 2 * D))
    returns = [1010 / 1000 - 1, 1030 / 1010 - 1]
    assert m.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365))
    assert m.drawdown.pct == pytest.approx(10.0)   # the per-candle curve keeps the dip: 1000 → 900


def test_drawdown_not_recovered_runs_to_the_end() -> None:
    times = np.array([to_ms(T0 + k * D) for k in (1, 2, 3)])
    dd = max_drawdown(times, np.array([1100.0, 1000.0, 1050.0]), 1000.0)
    assert dd.pct == pytest.approx(100 / 1100 * 100)
    assert dd.recovered_at is None and dd.duration_days == pytest.approx(2.0)


def test_buy_and_hold_equal_weight_from_closes() -> None:
    times = np.array([to_ms(T0 + k * D) for k in (1, 2, 3, 4)])
    closes = {"A": (times, np.array([100.0, 110.0, 120.0, 130.0])), "B": (times, np.array([10.0, 9.0, 8.0, 10.0]))}
    equity = buy_and_hold(closes, times, 1000.0)
    assert equity.tolist() == pytest.approx([1000.0, 500 * 1.1 + 500 * 0.9, 500 * 1.2 + 500 * 0.8, 1150.0])
    m = compute_metrics(result(), closes=closes)
    assert m.buy_and_hold is not None and m.buy_and_hold.return_pct == pytest.approx(15.0)
    assert m.buy_and_hold.max_drawdown_pct == pytest.approx(0.0)


def test_monte_carlo_of_trade_order_is_seeded() -> None:
    pnls = np.array([20.0, -30.0, 40.0])
    # the six orders give drawdowns 30/1020, 30/1060, 3 %, 3 %, 30/1040, 30/1060: the 95th percentile is 3 %
    possible = {round(v, 9) for v in (30 / 1020 * 100, 30 / 1060 * 100, 3.0, 30 / 1040 * 100)}
    mc = monte_carlo(pnls, 1000.0, runs=400, seed=1)
    assert mc.p95_drawdown_pct == pytest.approx(3.0) and mc.worst_drawdown_pct == pytest.approx(3.0)
    assert round(mc.median_drawdown_pct, 9) in possible | {round((30 / 1040 + 30 / 1020) / 2 * 100, 9)}
    assert monte_carlo(pnls, 1000.0, runs=400, seed=1) == mc


def test_json_metrics_have_the_required_keys_and_halts() -> None:
    halt = HaltNotice(T0 + D, "drawdown breaker: equity 15 % below its peak", T0 + 3 * D)
    r = result(halts=(halt,))
    out = metrics_json(compute_metrics(r), r)
    for key in ("net_pnl", "sharpe", "sortino", "calmar", "max_drawdown_pct", "profit_factor", "win_rate", "trades",
                "expectancy", "average_r", "exposure_pct", "trades_per_day", "fees", "funding",
                "max_drawdown_duration_days", "by_symbol", "by_side", "by_exit_reason", "monte_carlo"):
        assert key in out, key
    assert out["trades"] == 3 and out["profit_factor"] == pytest.approx(2.0)
    assert out["halts"] == [{"time": "2024-01-02T00:00:00Z", "reason": halt.reason,
                             "resumed_at": "2024-01-04T00:00:00Z"}]


def test_profit_factor_without_losses_is_null_in_json() -> None:
    winners = tuple(t for t in TRADES if t.net_pnl > 0)
    r = result(trades=winners)
    m = compute_metrics(r)
    assert math.isinf(m.profit_factor)
    assert metrics_json(m, r)["profit_factor"] is None


def test_monthly_returns_from_month_end_equity() -> None:
    from engine.backtest.report import monthly_returns

    points = [(datetime(2024, 1, 15, tzinfo=UTC), 1050.0), (datetime(2024, 2, 1, tzinfo=UTC), 1100.0),  # closes Jan
              (datetime(2024, 2, 20, tzinfo=UTC), 990.0), (datetime(2024, 3, 5, tzinfo=UTC), 1089.0)]
    times = np.array([to_ms(t) for t, _ in points])
    out = monthly_returns(times, np.array([v for _, v in points]), 1000.0)
    assert [(y, m) for y, m, _ in out] == [(2024, 1), (2024, 2), (2024, 3)]
    assert [r for _, _, r in out] == pytest.approx([10.0, -10.0, 10.0])
