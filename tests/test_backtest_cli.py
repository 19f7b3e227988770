"""``python main.py backtest`` run in-process (main.main) on the bundled sample with small windows."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import main
from app.backtest_cli import ProgressBar
from engine.backtest.data import load_candles
from engine.backtest.ema_cross import run_ema_cross

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
TRADE_KEYS = {"symbol", "side", "opened_at", "closed_at", "entry_price", "exit_price", "quantity", "exit_reason",
              "net_pnl", "fees", "funding"}
METRIC_KEYS = {"net_pnl", "sharpe", "sortino", "calmar", "max_drawdown_pct", "profit_factor", "win_rate", "trades",
               "return_pct", "annualised_return_pct", "max_drawdown_duration_days", "expectancy", "average_r",
               "exposure_pct", "trades_per_day", "fees", "funding", "by_symbol", "by_side", "by_exit_reason",
               "buy_and_hold", "monte_carlo", "halts"}


def backtest(tmp_path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main.main(["--env-file", str(tmp_path / "absent.env"), "backtest", "--data-dir", str(SAMPLE), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_ema_cross_json_report_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    code, out, err = backtest(tmp_path, "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-02-01", "--end",
                              "2025-03-01", "--strategy", "ema-cross", "--json", str(tmp_path / "bt.json"),
                              "--report", str(report), capsys=capsys)
    assert code == 0, err
    assert "buy & hold" in out and "exit reason" in out
    doc = json.loads((tmp_path / "bt.json").read_text())
    assert doc["trades"], "a month of two symbols has EMA crosses"
    for trade in doc["trades"]:
        assert set(trade) >= TRADE_KEYS
        assert trade["side"] in ("LONG", "SHORT")
        opened = datetime.fromisoformat(trade["opened_at"])
        closed = datetime.fromisoformat(trade["closed_at"])
        assert datetime(2025, 2, 1, tzinfo=UTC) <= opened <= closed <= datetime(2025, 3, 1, tzinfo=UTC)
    metrics = doc["metrics"]
    assert set(metrics) >= METRIC_KEYS
    assert metrics["trades"] == len(doc["trades"])
    assert metrics["net_pnl"] == pytest.approx(sum(float(t["net_pnl"]) for t in doc["trades"]), abs=1e-6)
    assert metrics["candles"] == 2 * 28 * 288
    png = (report / "backtest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_end_is_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = backtest(tmp_path, "--symbols", "BTCUSDT", "--start", "2025-03-01", "--end", "2025-03-03",
                            "--strategy", "ema-cross", "--json", str(tmp_path / "bt.json"), capsys=capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "bt.json").read_text())["metrics"]
    assert metrics["candles"] == 2 * 288          # 2025-03-01 and 03-02; nothing of 03-03
    assert metrics["end"] == "2025-03-03T00:00:00Z"
    candles = load_candles(SAMPLE, "BTCUSDT", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC))
    assert datetime.fromtimestamp(int(candles.open_time[-1]) / 1000, UTC) == datetime(2025, 3, 2, 23, 55, tzinfo=UTC)


def test_open_trade_closes_at_the_price_at_end(tmp_path: Path) -> None:
    start, end = datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
    result = run_ema_cross(SAMPLE, ["BTCUSDT", "ETHUSDT"], start, end)
    at_end = [t for t in result.trades if t.closed_at == end]
    for trade in at_end:
        after = load_candles(SAMPLE, trade.symbol, end, datetime(2025, 3, 1, 0, 5, tzinfo=UTC))
        assert trade.exit_reason == "end_of_data" and float(trade.exit_price) == after.open[0]
    assert result.open_at_end == len(at_end)


@pytest.mark.parametrize(("args", "message"), [
    (["--symbols", "DOGEUSDT", "--start", "2025-02-01", "--end", "2025-02-03"], "unknown symbol DOGEUSDT"),
    (["--symbols", "BTCUSDT", "--start", "2025-02-30", "--end", "2025-03-03"], "--start must be a date"),
    (["--symbols", "BTCUSDT", "--start", "2025-03-03", "--end", "2025-03-03"], "--end (2025-03-03) must be after"),
    (["--symbols", "BTCUSDT", "--start", "2030-01-01", "--end", "2030-02-01"], "BTCUSDT has no candles between"),
    (["--symbols", "BTCUSDT", "--start", "2025-03-01", "--end", "2025-03-03", "--exchange-info", "/nonexistent.json"],
     "--exchange-info /nonexistent.json does not exist"),
    (["--symbols", "BTCUSDT", "--start", "2025-03-01", "--end", "2025-03-03", "--strategy", "ema-cross",
      "--engine", "replay"], "ema-cross runs on the fast engine only"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         args: list[str], message: str) -> None:
    target = tmp_path / "bt.json"
    code, out, err = backtest(tmp_path, *args, "--json", str(target), capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vigil: ") and message in lines[0], err
    assert "Traceback" not in err and out == ""
    assert not target.exists()


def test_symbol_without_rules_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"symbols": []}))
    code, _, err = backtest(tmp_path, "--symbols", "BTCUSDT", "--start", "2025-03-01", "--end", "2025-03-02",
                            "--strategy", "ema-cross", "--exchange-info", str(info), capsys=capsys)
    assert code == 2 and "BTCUSDT not in" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_replay_engine_gives_the_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = backtest(tmp_path, "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-03-24", "--end",
                            "2025-03-26", "--engine", "replay", "--json", str(tmp_path / "bt.json"),
                            "--report", str(tmp_path), capsys=capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "bt.json").read_text())
    assert doc["metrics"]["engine"] == "replay" and doc["metrics"]["candles"] == 2 * 2 * 288
    for trade in doc["trades"]:
        assert set(trade) >= TRADE_KEYS
    assert (tmp_path / "backtest.png").exists()


@pytest.mark.slow
def test_fast_default_says_it_falls_back_until_the_fast_engine_exists(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from app.backtest_cli import fast_engine

    code, _, err = backtest(tmp_path, "--symbols", "BTCUSDT", "--start", "2025-03-24", "--end", "2025-03-25",
                            "--json", str(tmp_path / "bt.json"), capsys=capsys)
    assert code == 0, err
    engine = json.loads((tmp_path / "bt.json").read_text())["metrics"]["engine"]
    if fast_engine() is None:
        assert "fast engine for the default strategy is not available yet" in err and engine == "replay"
    else:
        assert engine == "fast"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    tty, pipe = _Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar("x", stream=stream, width=10)
        for k in range(1, 5):
            bar(k, 4)
    assert pipe.getvalue() == ""
    assert tty.getvalue().endswith("\rx [##########] 100.0 %\n") and "[#####.....]  50.0 %" in tty.getvalue()


@pytest.mark.slow
def test_drawdown_halt_is_reported_and_an_operator_reset_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.5 % drawdown breaker trips on the real 2025-04-05..07 sell-off; the simulated operator resets it a day
    later. Between a halt and its reset no trade opens; after a halt nobody resets, none at all."""
    monkeypatch.setenv("MAX_DRAWDOWN_PCT", "0.5")
    monkeypatch.setenv("VOTERS", "trend_momentum")      # the former default rule: it trades into the sell-off
    monkeypatch.setenv("ENTRY_THRESHOLD", "0.6")
    code, out, err = backtest(tmp_path, "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT", "--start", "2025-04-05", "--end",
                              "2025-04-08", "--engine", "replay", "--operator-reset-after", "1",
                              "--json", str(tmp_path / "bt.json"), capsys=capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "bt.json").read_text())
    halts = doc["metrics"]["halts"]
    assert halts and all("drawdown" in h["reason"] for h in halts)
    assert "HALT" in out
    first = halts[0]
    tripped = datetime.fromisoformat(first["time"])
    assert first["resumed_at"] is not None
    assert datetime.fromisoformat(first["resumed_at"]) - tripped < timedelta(days=1, minutes=10)
    for halt in halts:
        lo = datetime.fromisoformat(halt["time"])
        hi = datetime.fromisoformat(halt["resumed_at"]) if halt["resumed_at"] else datetime.max.replace(tzinfo=UTC)
        assert not [t for t in doc["trades"] if lo < datetime.fromisoformat(t["opened_at"]) < hi]
