"""The demo's figures are pinned: speeding up the replay (issue 8) must not change a single decision.

The replay is the demo window (bundled sample, BTC/ETH/SOL from 2025-03-24, 21 days, default settings), run once
per session in tests/replays.py: tests/test_engine_parity.py compares the same replay with the fast engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.replays import demo_replay


@pytest.mark.slow
def test_the_demo_window_gives_the_published_figures():
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
