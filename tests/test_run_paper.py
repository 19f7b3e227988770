"""``python main.py run`` in paper mode, as a real process, against the fake Binance server on 127.0.0.1:
it adopts and protects a paper position, is killed with SIGKILL, restarts on the same database and resumes
the same paper account and position with exactly one stop."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from engine.exchange.binance import BinanceFutures
from engine.exchange.paper import PaperExchange
from engine.exchange.types import MarginType, Side
from storage.db import Database
from tests.fakes.binance_server import FakeBinanceFutures
from tests.vigil_process import Vigil, heartbeat, process_env, query

pytestmark = pytest.mark.slow


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


async def test_run_adopts_protects_and_resumes_after_sigkill(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    async with FakeBinanceFutures() as fake:
        await seed_paper_position(db_path, fake)
        env = process_env(tmp_path, fake.base_url, SYMBOLS="BTCUSDT,ETHUSDT", SCAN_INTERVAL_SECONDS="3",
                          PAPER_TRIGGER_INTERVAL="5m")

        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: len(stops(db_path)) == 1 and heartbeat(db_path) != "")
        finally:
            await vigil.kill()
        trades = query(db_path, "SELECT id, symbol, side, status, quantity FROM trades")
        assert trades == [(1, "ETHUSDT", "LONG", "OPEN", "0.05")]
        wallet = query(db_path, "SELECT wallet_balance FROM paper_account")[0][0]
        position = query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions")
        first_stop = stops(db_path)
        beat = heartbeat(db_path)

        vigil = await Vigil(env, tmp_path).start()
        try:
            await vigil.wait_until(lambda: heartbeat(db_path) > beat)
            await vigil.wait_until(lambda: len(query(db_path, "SELECT 1 FROM events WHERE kind='StateChanged'"
                                                              " AND payload LIKE '%started%'")) == 2)
            assert query(db_path, "SELECT wallet_balance FROM paper_account")[0][0] == wallet
            assert query(db_path, "SELECT symbol, side, quantity, entry_price FROM paper_positions") == position
            assert stops(db_path) == first_stop
            assert query(db_path, "SELECT id, symbol, side, status, quantity FROM trades") == trades
            assert len(query(db_path, "SELECT 1 FROM orders WHERE purpose='STOP_LOSS'")) == 1
        finally:
            code = await vigil.terminate()
        assert code == 0
