"""``backtest --sweep`` on the bundled real data: every row is the backtest with those parameters, local processes
give the serial table, and bad keys or values are one line before any work."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.backtest_sweep import backtest_task
from engine.backtest.ema_cross import EmaCrossParams, run_ema_cross
from main import main
from tests.helpers_market import SAMPLE_DIR

ARGS = ["backtest", "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-02-01", "--end", "2025-03-01",
        "--strategy", "ema-cross", "--data-dir", str(SAMPLE_DIR)]


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1].isdigit() and " runs on " not in line]


@pytest.mark.slow
def test_a_sweep_row_is_the_backtest_with_its_parameters(capsys):
    assert main([*ARGS, "--sweep", "fast=10,20", "--sweep", "stop=0.02,0.03", "--sort-by", "net_pnl"]) == 0
    serial = table_rows(capsys.readouterr().out)
    assert len(serial) == 4
    best = serial[0].split()
    single = run_ema_cross(SAMPLE_DIR, ["BTCUSDT", "ETHUSDT"], datetime(2025, 2, 1, tzinfo=UTC),
                           datetime(2025, 3, 1, tzinfo=UTC),
                           params=dataclasses.replace(EmaCrossParams(), fast=int(best[1]), stop=float(best[2])))
    net = sum((t.net_pnl for t in single.trades), Decimal(0))
    assert float(best[3]) == pytest.approx(float(net), rel=1e-5)   # the table prints 6 significant digits
    assert main([*ARGS, "--sweep", "fast=10,20", "--sweep", "stop=0.02,0.03", "--sort-by", "net_pnl",
                 "--jobs", "2"]) == 0
    assert table_rows(capsys.readouterr().out) == serial   # joblib processes: the same table


@pytest.mark.parametrize(("extra", "words"), [
    (["--sweep", "nope=1,2"], "unknown sweep key"),
    (["--sweep", "fast=10", "--json", "x.json"], "--json"),
    (["--sweep", "fast=10", "--sort-by", "luck"], "not a sweep metric"),
])
def test_bad_sweeps_are_one_line(capsys, extra, words):
    assert main([*ARGS, *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.strip().count("\n") == 0


def test_default_strategy_values_are_validated_like_settings(capsys):
    args = ["backtest", "--symbols", "BTCUSDT", "--start", "2025-02-01", "--end", "2025-02-08", "--data-dir",
            str(SAMPLE_DIR), "--sweep", "ENTRY_THRESHOLD=0.5,2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ENTRY_THRESHOLD" in err and err.strip().count("\n") == 0
    assert main([*args[:-1], "LEVERGE=2"]) == 2
    assert "not a setting" in capsys.readouterr().err


def test_the_task_reports_every_metric():

    from app.backtest_cli import closes_in_window, load_window, parse_request
    from app.backtest_sweep import METRICS, SweepData
    from settings import Settings

    ns = argparse.Namespace(symbols="BTCUSDT", start="2025-02-01", end="2025-02-15", strategy="ema-cross",
                            engine="fast", data_dir=SAMPLE_DIR, exchange_info=None, json=None, report=None,
                            operator_reset_after=None)
    req = parse_request(ns)
    candles = load_window(req)
    data = SweepData("ema-cross", Settings(_env_file=None), SAMPLE_DIR, ["BTCUSDT"], req.start, req.end, None, None,
                     candles, closes_in_window(candles, req.start, req.end))
    metrics = backtest_task({"fast": 12}, data)
    assert set(metrics) == set(METRICS) and metrics["trades"] >= 1
