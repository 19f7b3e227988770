"""main.py: --help for each command, configuration errors as one line per key, health, and the demo."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.backtest import replay as run_backtest
from engine.backtest.replay import DemoOptions
from main import main
from settings import Settings
from storage.db import Database
from storage.repositories import Repositories
from tests.trading_fixtures import RULE_PANEL

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "data" / "sample"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update({"DB_PATH": str(tmp_path / "vigil.sqlite3"), "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["demo", "--help"], ["health", "--help"]])
def test_help_for_each_command(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.slow  # a subprocess run of main.py
def test_bad_configuration_exits_2_with_one_line_per_key(tmp_path: Path):
    env = clean_env(tmp_path, TRADING_MODE="live", LEVERAGE="500")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--env-file", str(tmp_path / "none"), "run"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines() if line.startswith("  ")]
    assert lines == ["LEVERAGE: Input should be less than or equal to 125 (got '500')"]


@pytest.mark.slow  # a subprocess run of main.py
def test_live_without_keys_exits_2(tmp_path: Path):
    env = clean_env(tmp_path, TRADING_MODE="live")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "run"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "TRADING_MODE: live trading needs BINANCE_API_KEY and BINANCE_API_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr


async def write_heartbeat(path: Path, when: datetime) -> None:
    async with Database(path) as db:
        await Repositories(db).state.set("monitor_heartbeat", when.isoformat(), when)


@pytest.mark.slow
@pytest.mark.parametrize(("age", "code"), [(timedelta(seconds=30), 0), (timedelta(minutes=10), 1), (None, 1)])
def test_health_reflects_the_last_monitor_tick(tmp_path: Path, age, code):
    db_path = tmp_path / "vigil.sqlite3"
    if age is not None:
        asyncio.run(write_heartbeat(db_path, datetime.now(UTC) - age))
    env = clean_env(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "health"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == code, proc.stdout + proc.stderr


@pytest.mark.slow
async def test_backtest_on_real_data_opens_and_closes_trades(tmp_path: Path):
    settings = Settings(_env_file=None, **RULE_PANEL)  # type: ignore[call-arg]
    options = DemoOptions(data_dir=SAMPLE, symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"],
                          start=datetime(2025, 4, 5, tzinfo=UTC), days=4, quiet=True, db_path=tmp_path / "d.sqlite3")
    summary = await run_backtest(settings, options)
    assert len(summary.trades) >= 1
    assert summary.fees > 0
    net = sum((t.net_pnl for t in summary.trades), Decimal(0))
    # equity bookkeeping: end equity = start + realised net P&L of closed trades (+ uPnL of open ones)
    if summary.open_trades == 0:
        assert summary.end_equity == summary.start_equity + net
    reasons = {"stop_loss", "trailing_stop", "take_profit", "time_stop", "stale_trade", "signal_exit", "liquidation"}
    assert {t.exit_reason for t in summary.trades} <= reasons
    assert "trades closed" in summary.render()


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path: Path):
    env = clean_env(tmp_path)
    # 3 days of the demo window with the former default rule (README: VOTERS=trend_momentum ENTRY_THRESHOLD=0.6)
    # are enough for closed trades (12 of them); the default panel's full window is replayed and pinned in
    # tests/test_replay_figures.py
    env.update(VOTERS="trend_momentum", ENTRY_THRESHOLD="0.6")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo", "--quiet", "--days", "3"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    closed_line = next(line for line in proc.stdout.splitlines() if line.startswith("trades closed"))
    assert int(closed_line.split()[2]) >= 1
    assert not (tmp_path / "vigil.sqlite3").exists()  # the demo never touches the operator's database


@pytest.mark.slow
def test_a_second_run_on_the_same_database_refuses_to_start(tmp_path: Path):
    from app.instance_lock import InstanceLock

    with InstanceLock(tmp_path / "vigil.sqlite3"):  # as a running bot holds it
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "run"], env=clean_env(tmp_path),
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 3
    assert [line for line in proc.stdout.splitlines() if line.startswith("vigil:")] == [
        f"vigil: another Vigil (pid {os.getpid()}) is already running on {tmp_path / 'vigil.sqlite3'}; stop it "
        "first, or point DB_PATH at another database"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path):
    from app.instance_lock import InstanceLock

    holder = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                             "from pathlib import Path; from app.instance_lock import InstanceLock;"
                             "InstanceLock(Path(sys.argv[2])).acquire(); import os; os._exit(9)",
                             str(ROOT), str(tmp_path / "vigil.sqlite3")], timeout=60)
    assert holder.returncode == 9  # died holding it, without releasing
    with InstanceLock(tmp_path / "vigil.sqlite3") as lock:
        assert lock.path.exists()
