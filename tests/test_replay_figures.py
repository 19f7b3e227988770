"""The demo's figures are pinned: speeding up the replay (issue 8) must not change a single decision.

Two panels on the demo window (bundled sample, BTC/ETH/SOL from 2025-03-24, 21 days): the default (issue 9's
walk-forward choice, ``docs/evaluation.md``), which trades rarely, and the former default ``trend_momentum`` alone at
0.6, whose 55 trades pin far more of the trader. The latter replay is run once per session in tests/replays.py:
tests/test_engine_parity.py compares the same replay with the fast engine."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from app.backtest import replay
from engine.backtest.replay import DemoOptions
from settings import Settings
from tests.replays import DEMO_DAYS, DEMO_START, DEMO_SYMBOLS, SAMPLE, demo_replay


@pytest.mark.slow
def test_the_demo_window_gives_the_published_figures():
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.voters == ["trend_momentum", "trend_following", "breakout"] and settings.entry_threshold == 0.7
    options = DemoOptions(data_dir=SAMPLE, symbols=list(DEMO_SYMBOLS), start=DEMO_START, days=DEMO_DAYS, quiet=True)
    summary = asyncio.run(replay(settings, options))
    assert summary.scans == 6048
    assert len(summary.trades) == 1 and summary.open_trades == 0
    assert summary.net_pnl.quantize(Decimal("0.01")) == Decimal("-9.24")
    assert summary.fees.quantize(Decimal("0.01")) == Decimal("0.38")
    assert summary.funding.quantize(Decimal("0.01")) == Decimal("-0.41")
    assert f"{summary.max_drawdown_pct:.2f}" == "1.46"
    assert summary.exit_reasons == {"stop_loss": 1}


@pytest.mark.slow
def test_the_former_default_rule_on_the_demo_window():
    summary = demo_replay()
    assert summary.scans == 6048
    assert len(summary.trades) == 55 and summary.open_trades == 0
    assert f"{summary.win_rate_pct:.1f}" == "43.6"
    assert summary.net_pnl.quantize(Decimal("0.01")) == Decimal("-47.37")
    assert summary.fees.quantize(Decimal("0.01")) == Decimal("23.84")
    assert summary.funding.quantize(Decimal("0.01")) == Decimal("-0.54")
    assert f"{summary.max_drawdown_pct:.2f}" == "8.91"
    assert summary.exit_reasons == {"stale_trade": 1, "stop_loss": 30, "take_profit": 15, "time_stop": 1,
                                    "trailing_stop": 8}
