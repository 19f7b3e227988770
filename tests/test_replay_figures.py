"""The demo's figures are pinned: speeding up the replay (issue 8) must not change a single decision."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.backtest import replay
from engine.backtest.replay import DemoOptions
from settings import Settings

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.mark.slow
async def test_the_demo_window_gives_the_published_figures():
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    options = DemoOptions(data_dir=SAMPLE, symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"],
                          start=datetime(2025, 3, 24, tzinfo=UTC), days=21, quiet=True)
    summary = await replay(settings, options)
    assert summary.scans == 6048
    assert len(summary.trades) == 55 and summary.open_trades == 0
    assert f"{summary.win_rate_pct:.1f}" == "43.6"
    assert summary.net_pnl.quantize(Decimal("0.01")) == Decimal("-47.37")
    assert summary.fees.quantize(Decimal("0.01")) == Decimal("23.84")
    assert summary.funding.quantize(Decimal("0.01")) == Decimal("-0.54")
    assert f"{summary.max_drawdown_pct:.2f}" == "8.91"
    assert summary.exit_reasons == {"stale_trade": 1, "stop_loss": 30, "take_profit": 15, "time_stop": 1,
                                    "trailing_stop": 8}
