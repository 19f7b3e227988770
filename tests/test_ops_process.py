"""``python main.py run`` as a real process against the fake Binance server: the watchdog restarts a hung bot
(exit code), Prometheus metrics over real HTTP, the log file under DATA_DIR, and a backup taken while the bot
writes that restores into a database the bot starts on again."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.backup import list_backups
from app.watchdog import EXIT_WATCHDOG
from engine.trading.breakers import GLOBAL_BREAKERS
from tests.fakes.binance_server import FakeBinanceFutures
from tests.test_run_paper import seed_paper_position
from tests.vigil_process import ROOT, Vigil, heartbeat, process_env, query

pytestmark = pytest.mark.slow

SECRET = "paper-mode-never-sends-this-key-7f3a9c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hang_every_request(fake: FakeBinanceFutures) -> None:
    """From now on the exchange accepts connections and never answers (a stuck network path)."""
    for method, path in fake._routes:
        fake.faults.next(path, "timeout", method=method, times=10**6, delay=3600, accept=False)


async def test_watchdog_exits_non_zero_when_the_monitor_hangs(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures() as fake:
        await seed_paper_position(db_path, fake)
        env = process_env(tmp_path, fake.base_url, SYMBOLS="BTCUSDT,ETHUSDT", SCAN_INTERVAL_SECONDS="600",
                          PAPER_TRIGGER_INTERVAL="5m", WATCHDOG_SECONDS="4")
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: heartbeat(db_path) != "")
            hang_every_request(fake)
            assert vigil.proc is not None
            code = await asyncio.wait_for(vigil.proc.wait(), 90)
        finally:
            await vigil.kill()
    assert code == EXIT_WATCHDOG


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_are_served_over_http_and_logs_go_to_data_dir(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with FakeBinanceFutures() as fake:
        await seed_paper_position(db_path, fake)
        env = process_env(tmp_path, fake.base_url, SYMBOLS="BTCUSDT,ETHUSDT", SCAN_INTERVAL_SECONDS="2",
                          PAPER_TRIGGER_INTERVAL="5m", METRICS_PORT=str(port), DATA_DIR=str(tmp_path / "data"),
                          BINANCE_API_KEY=SECRET, BINANCE_API_SECRET=SECRET + "-secret")
        vigil = await Vigil(env, tmp_path).start()
        samples: dict = {}

        def ready() -> bool:
            nonlocal samples
            samples = scrape(url)
            return (samples.get(("vigil_job_duration_seconds_count", (("job", "scan"),)), 0) >= 1
                    and samples.get(("vigil_open_positions", (("mode", "paper"),))) == 1)
        try:
            await vigil.wait_until(lambda: heartbeat(db_path) != "")
            await vigil.wait_until(ready)
        finally:
            code = await vigil.terminate()
    assert code == 0
    assert samples[("vigil_live_mode", ())] == 0
    assert samples[("vigil_equity_usdt", (("mode", "paper"),))] > 0
    assert samples[("vigil_wallet_usdt", (("mode", "paper"),))] > 0
    assert ("vigil_unrealized_pnl_usdt", (("mode", "paper"),)) in samples
    assert samples[("vigil_realized_pnl_usdt", (("mode", "paper"),))] == 0
    assert samples[("vigil_job_duration_seconds_count", (("job", "monitor"),))] >= 1
    assert samples[("vigil_exchange_used_weight", ())] > 0
    assert samples[("vigil_exchange_weight_limit", ())] == 2400
    assert samples[("vigil_notifications_queued", ())] == 0
    assert samples[("vigil_trading_state", (("state", "running"),))] == 1
    for name in GLOBAL_BREAKERS:
        assert samples[("vigil_breaker_tripped", (("breaker", name),))] == 0
    log_file = tmp_path / "data" / "logs" / "vigil.log"
    written = log_file.read_text()
    assert "scheduler started" in written  # the run's own log lines go to the file
    assert SECRET not in written and SECRET not in (tmp_path / "vigil.log").read_text()


async def run_cli(env: dict[str, str], cwd: Path, *argv: str) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "main.py"), *argv, env=env, cwd=cwd,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_a_backup_taken_while_the_bot_writes_restores_and_runs(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures() as fake:
        await seed_paper_position(db_path, fake)
        env = process_env(tmp_path, fake.base_url, SYMBOLS="BTCUSDT,ETHUSDT", SCAN_INTERVAL_SECONDS="1",
                          PAPER_TRIGGER_INTERVAL="5m", DATA_DIR=str(tmp_path / "data"))
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: heartbeat(db_path) != "")
            first_beat = heartbeat(db_path)
            for _ in range(3):  # online: the bot keeps scanning and monitoring meanwhile
                beat = heartbeat(db_path)
                assert await run_cli(env, tmp_path, "backup") == 0
                await vigil.wait_until(lambda b=beat: heartbeat(db_path) > b)
        finally:
            assert await vigil.terminate() == 0
        backups = list_backups(tmp_path / "data" / "backups")
        assert len(backups) >= 1  # one per second at most: same-second names replace each other
        live_events = query(db_path, "SELECT id, time, kind, payload FROM events ORDER BY id")
        live_position = query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions")
        live_trades = query(db_path, "SELECT id, symbol, side, status, quantity FROM trades")
        last_beat = heartbeat(db_path)

        assert await run_cli(env, tmp_path, "restore", str(backups[-1])) == 0
        assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
        restored_events = query(db_path, "SELECT id, time, kind, payload FROM events ORDER BY id")
        assert restored_events and restored_events == live_events[:len(restored_events)]  # an earlier state
        assert first_beat < heartbeat(db_path) < last_beat  # taken while the bot was ticking
        assert query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions") == live_position
        assert query(db_path, "SELECT id, symbol, side, status, quantity FROM trades") == live_trades

        beat = heartbeat(db_path)
        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: heartbeat(db_path) > beat)
        finally:
            assert await vigil.terminate() == 0
