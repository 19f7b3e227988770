"""Switching paper ⇄ live on a running runtime (the real adapter against the fake Binance server): the
exchange is rebuilt, the choice persists across restarts, and the two modes' books never mix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runtime import MODE_KEY, Runtime
from core.clock import ExchangeClock
from engine.events import EventBus
from engine.exchange.binance import BinanceFutures
from engine.exchange.paper import PaperExchange
from engine.service import CommandRefused, EngineService
from settings import Settings
from storage.db import Database
from storage.repositories import Repositories
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures
from tests.trading_fixtures import RULE_PANEL


def settings_for(fake: FakeBinanceFutures, db: Path, **extra: object) -> Settings:
    return Settings(_env_file=None, binance_base_url=fake.base_url, db_path=db,  # type: ignore[call-arg]
                    symbols=["BTCUSDT", "ETHUSDT"], universe_size=2, paper_trigger_interval="5m",
                    **{**RULE_PANEL, **extra})


async def runtime_for(settings: Settings) -> tuple[Runtime, Database]:
    db = await Database(settings.db_path).open()
    runtime = Runtime(settings, Repositories(db), EventBus(), ExchangeClock())
    await runtime.start()
    return runtime, db


async def test_switch_to_live_and_back_persists_and_keeps_books_apart(tmp_path: Path):
    async with FakeBinanceFutures() as fake:
        s = settings_for(fake, tmp_path / "v.sqlite3", binance_api_key=TEST_API_KEY,
                         binance_api_secret=TEST_API_SECRET)
        runtime, db = await runtime_for(s)
        try:
            assert runtime.mode == "paper" and isinstance(runtime.exchange, PaperExchange)
            change = await EngineService(runtime).set_mode("live")
            assert (change.old, change.new) == ("paper", "live")
            assert runtime.mode == "live" and isinstance(runtime.exchange, BinanceFutures)
            assert runtime.trader.mode == "live"
            assert await runtime.repos.state.get(MODE_KEY) == "live"
        finally:
            await runtime.close()
            await db.close()

        runtime, db = await runtime_for(s)  # a restart keeps the operator's explicit choice
        try:
            assert runtime.mode == "live"
            fake.open_position_by_hand("BTCUSDT", "BUY", "0.01")
            await runtime.trader.reconcile()  # adopted as a live trade
            assert [t.symbol for t in await runtime.repos.trades.active("live")] == ["BTCUSDT"]
            assert await runtime.repos.trades.active("paper") == []
            with pytest.raises(CommandRefused, match="1 live position"):
                await EngineService(runtime).set_mode("paper")
            change = await EngineService(runtime).set_mode("paper", close_open=True)
            assert [t.symbol for t in change.closed] == ["BTCUSDT"] and fake.positions["BTCUSDT"].amount == 0
            assert runtime.mode == "paper" and isinstance(runtime.exchange, PaperExchange)
        finally:
            await runtime.close()
            await db.close()


async def test_stored_live_mode_without_keys_refuses_to_start(tmp_path: Path):
    async with FakeBinanceFutures() as fake:
        s = settings_for(fake, tmp_path / "v.sqlite3")
        db = await Database(s.db_path).open()
        await Repositories(db).state.set(MODE_KEY, "live", ExchangeClock().now())
        runtime = Runtime(s, Repositories(db), EventBus(), ExchangeClock())
        try:
            from engine.exchange.errors import AccountConfigError

            with pytest.raises(AccountConfigError, match="BINANCE_API_KEY"):
                await runtime.start()
        finally:
            await runtime.close()
            await db.close()
