"""ema-cross accounting on hand-built candles, checked to the cent (the paths freqtrade's list never takes)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import to_ms
from engine.backtest.ema_cross import run_ema_cross

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
RULES = {"symbols": [{"symbol": "TESTUSDT", "status": "TRADING", "baseAsset": "TEST", "quoteAsset": "USDT",
                      "contractType": "PERPETUAL", "filters": [
                          {"filterType": "PRICE_FILTER", "tickSize": "0.01", "minPrice": "0.01", "maxPrice": "100000"},
                          {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000000"},
                          {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001",
                           "maxQty": "1000000"},
                          {"filterType": "MIN_NOTIONAL", "notional": "5"}]}]}


def write_data(folder: Path, candles: list[tuple[float, float, float, float]],
               funding: list[tuple[int, str]] = ()) -> None:  # type: ignore[assignment]
    rows = ["open_time,open,high,low,close,volume"]
    rows += [f"{to_ms(T0 + k * STEP)},{o},{h},{lo},{c},1" for k, (o, h, lo, c) in enumerate(candles)]
    (folder / "TESTUSDT-5m.csv.gz").write_bytes(gzip.compress("\n".join(rows).encode()))
    lines = ["funding_time,funding_rate"] + [f"{to_ms(T0 + k * STEP)},{rate}" for k, rate in funding]
    (folder / "TESTUSDT-funding.csv.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    (folder / "exchange_info.json").write_text(json.dumps(RULES))


def cross_then(after: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """55 slowly falling candles (EMA20 under EMA50), a jump to 103 at candle 55 (bullish cross: long signal),
    then ``after`` from candle 56 on (the entry candle, filled at its open)."""
    falling = [(100 - 0.01 * k, 100 - 0.01 * k, 100 - 0.01 * k, 100 - 0.01 * k) for k in range(55)]
    return [*falling, (99.5, 103.0, 99.5, 103.0), *after]


def first_trade(tmp_path: Path, candles: list[tuple[float, float, float, float]],
                funding: list[tuple[int, str]] = ()) -> object:  # type: ignore[assignment]
    write_data(tmp_path, candles, funding)
    end = T0 + len(candles) * STEP
    result = run_ema_cross(tmp_path, ["TESTUSDT"], T0, datetime(end.year, end.month, end.day, tzinfo=UTC)
                           + timedelta(days=1))
    assert result.trades
    return result.trades[0]


def test_stop_gap_fills_at_the_open(tmp_path: Path) -> None:
    # entry at 101.00 (qty 100/101 → 0.990), stop = 101 × 0.98 = 98.98; candle 57 opens at 98.00, below it
    t = first_trade(tmp_path, cross_then([(101.0, 101.5, 100.5, 101.2), (98.0, 98.5, 97.5, 98.2)]))
    assert (t.side.value, t.entry_price, t.quantity) == ("LONG", Decimal("101.00"), Decimal("0.990"))
    assert t.opened_at == T0 + 56 * STEP and t.closed_at == T0 + 57 * STEP
    assert t.exit_reason == "stop_loss" and t.exit_price == Decimal("98.00")
    fees = Decimal("101") * Decimal("0.99") * Decimal("0.0005") + Decimal("98") * Decimal("0.99") * Decimal("0.0005")
    assert t.fees == fees
    assert t.net_pnl.quantize(Decimal("0.01")) == (Decimal("-3") * Decimal("0.99") - fees).quantize(Decimal("0.01"))
    assert t.net_pnl == Decimal("-3.068505")


def test_stop_first_when_stop_and_roi_are_in_one_candle(tmp_path: Path) -> None:
    # candle 57 spans 98.00..106.00: both the stop (98.98) and the ROI (≈104.17) are inside; the stop wins
    t = first_trade(tmp_path, cross_then([(101.0, 101.5, 100.5, 101.2), (101.0, 106.0, 98.0, 103.0)]))
    assert t.exit_reason == "stop_loss" and t.exit_price == Decimal("98.98")
    assert t.net_pnl == (Decimal("98.98") - 101) * Decimal("0.99") - (Decimal("101") + Decimal("98.98")) * Decimal(
        "0.99") * Decimal("0.0005")


def test_roi_after_fees_and_funding(tmp_path: Path) -> None:
    # a long pays a 0.1 % funding at candle 57 (rate × 5m open 101.20 × 0.990 = 0.1001880); ROI at 3 % after
    # fees and funding: p = (1.03 × 0.99 × 101 × 1.0005 + 0.100188) / (0.99 × 0.9995) = 104.2353… → 104.24
    t = first_trade(tmp_path, cross_then([(101.0, 101.5, 100.5, 101.2), (101.2, 101.4, 101.0, 101.3),
                                          (101.3, 105.0, 101.2, 104.5)]), funding=[(57, "0.001")])
    assert t.exit_reason == "take_profit" and t.closed_at == T0 + 58 * STEP
    assert t.exit_price == Decimal("104.24")
    assert t.funding == Decimal("-0.100188")
    gross = (Decimal("104.24") - 101) * Decimal("0.99")
    fees = (Decimal("101") + Decimal("104.24")) * Decimal("0.99") * Decimal("0.0005")
    assert t.net_pnl == gross - fees + Decimal("-0.100188")
    assert float(t.net_pnl) / (99.99 * 1.0005) == pytest.approx(0.03, abs=0.0002)
