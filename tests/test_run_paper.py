"""``python main.py run`` in paper mode, as a real process, against the fake Binance server on 127.0.0.1:
it adopts and protects a paper position, is killed with SIGKILL, restarts on the same database and resumes
the same paper account and position with exactly one stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.exchange.binance import BinanceFutures
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType, Side
from settings import Settings
from storage.db import Database
from tests.fakes.binance_server import FakeBinanceFutures

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


def run_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update({
        "PYTHONPATH": str(ROOT), "DB_PATH": str(tmp_path / "vigil.sqlite3"), "BINANCE_BASE_URL": base_url,
        "SYMBOLS": "BTCUSDT,ETHUSDT", "SCAN_INTERVAL_SECONDS": "3", "SCAN_DELAY_SECONDS": "0",
        "MONITOR_INTERVAL_SECONDS": "1", "PAPER_TRIGGER_INTERVAL": "5m", "LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


async def wait_until(predicate: Callable[[], bool], proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            if proc.returncode is not None:
                raise AssertionError(f"vigil exited early with {proc.returncode}; see its log in the test's tmp_path")
            await asyncio.sleep(0.1)


async def start_vigil(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    with (cwd / "vigil.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "run", env=env, cwd=cwd, stdout=log, stderr=log)


async def seed_paper_position(db_path: Path, fake: FakeBinanceFutures) -> None:
    """A paper position opened 'by hand' (not by Vigil) on the paper account of this database."""
    market = await BinanceFutures.connect(base_url=fake.base_url)
    db = await Database(db_path).open()
    clock = ManualClock(fake.now)
    paper = PaperExchange(db, market, clock, start_balance=Decimal(1000), trigger_interval="5m",
                          default_margin_type=MarginType.ISOLATED)
    await paper.open()
    await paper.place_market_order("ETHUSDT", Side.BUY, Decimal("0.05"), "by-hand-1")
    await paper.close()
    await db.close()


def stops(db_path: Path) -> list[tuple[Any, ...]]:
    return query(db_path, "SELECT client_id, trigger_price FROM paper_orders WHERE order_type='STOP_MARKET'"
                          " AND status IN ('NEW', 'TRIGGERING')")


def heartbeat(db_path: Path) -> str | None:
    rows = query(db_path, "SELECT value FROM state WHERE key='monitor_heartbeat'")
    return rows[0][0] if rows else None


async def test_run_adopts_protects_and_resumes_after_sigkill(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures() as fake:
        await seed_paper_position(db_path, fake)
        env = run_env(tmp_path, fake.base_url)

        proc = await start_vigil(env, tmp_path)
        try:
            await wait_until(lambda: len(stops(db_path)) == 1 and heartbeat(db_path) is not None, proc)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        trades = query(db_path, "SELECT id, symbol, side, status, quantity FROM trades")
        assert trades == [(1, "ETHUSDT", "LONG", "OPEN", "0.05")]
        wallet = query(db_path, "SELECT wallet_balance FROM paper_account")[0][0]
        position = query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions")
        first_stop = stops(db_path)
        beat = heartbeat(db_path)

        proc = await start_vigil(env, tmp_path)
        try:
            await wait_until(lambda: (heartbeat(db_path) or "") > (beat or ""), proc)
            await wait_until(lambda: len(query(db_path, "SELECT 1 FROM events WHERE kind='StateChanged'"
                                                        " AND payload LIKE '%started%'")) == 2, proc)
            assert query(db_path, "SELECT wallet_balance FROM paper_account")[0][0] == wallet
            assert query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions") == position
            assert stops(db_path) == first_stop
            assert query(db_path, "SELECT id, symbol, side, status, quantity FROM trades") == trades
            assert len(query(db_path, "SELECT 1 FROM orders WHERE purpose='STOP_LOSS'")) == 1
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
