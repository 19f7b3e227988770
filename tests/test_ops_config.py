"""Configuration as a new user meets it: .env.example copied as-is, typos in .env, DATA_DIR, and clearing the
runtime choices that win over .env after a restart."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.instance_lock import InstanceLock
from app.overrides import BLACKLIST_KEY
from app.runtime import MODE_KEY
from engine.service import SETTING_OVERRIDES_KEY
from engine.trading.halts import HALTS_KEY
from main import main
from settings import Settings, UnknownKey, load_settings, unknown_keys, unknown_keys_line
from storage.db import Database
from storage.repositories import StateRepository
from tests.vigil_process import query

ROOT = Path(__file__).parent.parent
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_env_example_copied_as_is_is_a_valid_configuration(tmp_path: Path, monkeypatch):
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(".env")
    assert settings.health_max_age_seconds is None
    assert settings.heartbeat_max_age_seconds == 180
    assert settings.watchdog_limit_seconds == 300
    assert settings.metrics_port is None
    assert settings.db_path == Path("data/vigil.sqlite3")
    assert unknown_keys(".env") == []
    # every setting is documented in it, set or commented out (as DATA_DIR, which the Docker image sets)
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {m.group(1) for line in lines if (m := re.match(r"^#? ?([A-Z][A-Z0-9_]+)=", line))}
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_copied_example_leaves_the_docker_image_its_data_volume(tmp_path: Path, monkeypatch):
    """Compose passes every KEY= of .env into the container, over the image's DATA_DIR=/data: the example must
    not set DATA_DIR or DB_PATH, or the database would live outside the volume and vanish with the container."""
    from dotenv import dotenv_values

    container = {"DATA_DIR": str(tmp_path / "volume")}  # the image's ENV
    container.update({k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()})  # env_file: .env wins
    for key, value in container.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    assert settings.db_path == tmp_path / "volume" / "vigil.sqlite3"
    assert settings.backups_dir == tmp_path / "volume" / "backups"


@pytest.mark.slow
def test_the_cli_accepts_the_copied_example(tmp_path: Path):
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "health"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # configuration accepted; no bot has ticked yet (was 2)
    assert "Traceback" not in proc.stderr


def test_unknown_keys_are_named_with_the_closest_setting(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("LEVERGE=20\nleverage=2\nRISK_PER_TRADE=1\nFAVOURITE_COLOUR=blue\n# COMMENTED=1\n")
    found = unknown_keys(env_file)
    assert found == [UnknownKey("LEVERGE", "LEVERAGE"), UnknownKey("RISK_PER_TRADE", "RISK_PER_TRADE_PCT"),
                     UnknownKey("FAVOURITE_COLOUR", None)]
    line = unknown_keys_line(env_file, found)
    assert len(line.splitlines()) == 1
    assert load_settings(env_file).leverage == 2  # the typo is ignored, the real key applies


def test_near_misses_in_the_environment_are_named_too(tmp_path: Path):
    """Under Docker Compose .env arrives as environment variables, mixed with PATH, HOSTNAME and the like."""
    environ = {"PATH": "/usr/bin", "HOSTNAME": "abc", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
               "LEVERGE": "20", "MAX_OPEN_POSITION": "2", "LEVERAGE": "3", "HOME": "/root"}
    assert unknown_keys(None, environ) == [UnknownKey("LEVERGE", "LEVERAGE"),
                                           UnknownKey("MAX_OPEN_POSITION", "MAX_OPEN_POSITIONS")]


def test_no_env_file_has_no_unknown_keys(tmp_path: Path):
    assert unknown_keys(None) == []
    assert unknown_keys(tmp_path / "missing") == []
    assert unknown_keys_line(None, []) == ""


def test_data_dir_holds_the_database_logs_backups_models_and_market_data(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    settings = load_settings(None)
    assert settings.db_path == tmp_path / "d" / "vigil.sqlite3"
    assert settings.log_file == tmp_path / "d" / "logs" / "vigil.log"
    assert settings.backups_dir == tmp_path / "d" / "backups"
    assert settings.models_dir == tmp_path / "d" / "models"
    assert settings.market_data_dir == tmp_path / "d" / "binance-futures"
    monkeypatch.setenv("DB_PATH", str(tmp_path / "elsewhere.sqlite3"))
    assert load_settings(None).db_path == tmp_path / "elsewhere.sqlite3"  # an explicit DB_PATH still wins


async def store_choices(db_path: Path) -> None:
    async with Database(db_path) as db:
        state = StateRepository(db)
        await state.set(SETTING_OVERRIDES_KEY, {"LEVERAGE": "5"}, NOW)
        await state.set(MODE_KEY, "live", NOW)
        await state.set(BLACKLIST_KEY, ["DOGEUSDT"], NOW)
        await state.set(HALTS_KEY, {"paused": True, "reason": "operator"}, NOW)
        await state.set("monitor_heartbeat", NOW.isoformat(), NOW)


def stored_keys(db_path: Path) -> set[str]:
    return {row[0] for row in query(db_path, "SELECT key FROM state")}


def test_reset_overrides_lists_then_clears_only_what_is_asked(tmp_path: Path, monkeypatch, capsys):
    db_path = tmp_path / "vigil.sqlite3"
    monkeypatch.setenv("DB_PATH", str(db_path))
    asyncio.run(store_choices(db_path))
    everything = {SETTING_OVERRIDES_KEY, MODE_KEY, BLACKLIST_KEY, HALTS_KEY, "monitor_heartbeat"}

    assert main(["--env-file", str(tmp_path / "none"), "reset-overrides"]) == 0
    assert stored_keys(db_path) == everything  # listing changes nothing

    assert main(["--env-file", str(tmp_path / "none"), "reset-overrides", "--settings", "--mode"]) == 0
    assert stored_keys(db_path) == {BLACKLIST_KEY, HALTS_KEY, "monitor_heartbeat"}

    assert main(["--env-file", str(tmp_path / "none"), "reset-overrides", "--all"]) == 0
    assert stored_keys(db_path) == {"monitor_heartbeat"}  # bookkeeping is not an operator choice


def test_reset_overrides_refuses_while_the_bot_runs(tmp_path: Path, monkeypatch):
    db_path = tmp_path / "vigil.sqlite3"
    monkeypatch.setenv("DB_PATH", str(db_path))
    asyncio.run(store_choices(db_path))
    with InstanceLock(db_path):
        assert main(["--env-file", str(tmp_path / "none"), "reset-overrides", "--all"]) == 1
    assert MODE_KEY in stored_keys(db_path)


async def test_a_cleared_mode_choice_gives_trading_mode_back(tmp_path: Path, monkeypatch):
    """The stored /live choice wins over TRADING_MODE=paper at start; after reset-overrides --mode it does not."""
    from app.runtime import Runtime
    from core.clock import ManualClock
    from engine.events import EventBus
    from storage.repositories import Repositories

    db_path = tmp_path / "vigil.sqlite3"
    await store_choices(db_path)
    settings = load_settings(None, db_path=db_path)
    async with Database(db_path) as db:
        refused = Runtime(settings, Repositories(db), EventBus(), ManualClock(NOW))
        with pytest.raises(Exception, match="stored mode is live"):
            await refused.start()  # the stored choice wins over TRADING_MODE=paper
    monkeypatch.setenv("DB_PATH", str(db_path))
    assert await asyncio.to_thread(main, ["--env-file", str(tmp_path / "none"), "reset-overrides", "--mode"]) == 0
    async with Database(db_path) as db:
        assert await StateRepository(db).get(MODE_KEY) is None


@pytest.mark.slow
def test_run_starts_without_the_heavy_libraries(tmp_path: Path):
    """Start-up budget: scikit-learn, matplotlib, pandas, scipy and prometheus_client load only when used."""
    code = ("import sys; import main, app.run, app.operations, app.commands; "
            "print(','.join(m for m in ('sklearn', 'matplotlib', 'pandas', 'scipy', 'prometheus_client') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize("command", ["backup", "restore", "reset-overrides"])
def test_help_for_the_operations_commands(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out
