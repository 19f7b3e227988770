"""The engine façade: halts, close, kill, mode switching rules (invariants 4 and 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runtime import Runtime
from engine.events import StateChanged
from engine.service import CommandRefused, EngineService
from engine.trading.halts import load_halts
from tests.trading_fixtures import build_rig


async def service_for(rig) -> EngineService:
    return EngineService(Runtime.from_parts(rig.settings, rig.repos, rig.bus, rig.clock, exchange=rig.exchange,
                                            trader=rig.trader))


async def test_status_shows_positions_and_state(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = await service_for(rig)
        await rig.trader.scan()
        status = await service.status()
        assert status.mode == "paper" and status.state == "running"
        assert [p.symbol for p in status.positions] == ["BTCUSDT"]
        assert status.equity > 0 and status.positions[0].stop_price < status.positions[0].entry_price
        assert status.last_scan is not None
    finally:
        await rig.close()


async def test_pause_resume_stop_are_stored_and_published(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = await service_for(rig)
        await service.pause()
        assert (await rig.trader.scan()).opened == []
        await service.resume()
        assert len((await rig.trader.scan()).opened) == 1
        await service.stop()
        halts = await load_halts(rig.repos.state)
        assert halts.stopped and not halts.entries_allowed
        states = [e.state for e in rig.sink.of(StateChanged)]
        assert states == ["paused", "resumed", "stopped"]
    finally:
        await rig.close()


async def test_close_unknown_symbol_is_refused_and_changes_nothing(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = await service_for(rig)
        await rig.trader.scan()
        with pytest.raises(CommandRefused, match="no open position on DOGEUSDT; open positions: BTCUSDT"):
            await service.close("dogeusdt")
        assert len(await rig.exchange.positions()) == 1
        closed = await service.close("btcusdt")
        assert [t.symbol for t in closed] == ["BTCUSDT"] and closed[0].exit_reason == "manual_close"
    finally:
        await rig.close()


async def test_kill_closes_everything_and_halts_until_resume(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3", voted={"BTCUSDT", "ETHUSDT"})
    try:
        service = await service_for(rig)
        assert len((await rig.trader.scan()).opened) == 2
        closed = await service.kill()
        assert sorted(t.symbol for t in closed) == ["BTCUSDT", "ETHUSDT"]
        assert await rig.exchange.positions() == []
        assert await rig.exchange.open_protective_orders() == []
        assert (await load_halts(rig.repos.state)).killed
        assert (await rig.trader.scan()).opened == []
        await service.resume()
        assert len((await rig.trader.scan()).opened) == 2
    finally:
        await rig.close()


async def test_switch_to_live_needs_keys_and_no_open_paper_positions(tmp_path: Path):
    rig = await build_rig(tmp_path / "s.sqlite3")
    try:
        service = await service_for(rig)
        with pytest.raises(CommandRefused, match="BINANCE_API_KEY"):
            await service.set_mode("live")
        rig.settings = rig.settings.model_copy(update={"binance_api_key": "k", "binance_api_secret": "s"})
        service = await service_for(rig)
        await rig.trader.scan()
        with pytest.raises(CommandRefused, match="1 paper position"):
            await service.set_mode("live")
        assert service.mode == "paper" and len(await rig.exchange.positions()) == 1
    finally:
        await rig.close()
