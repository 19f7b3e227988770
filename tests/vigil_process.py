"""Helpers for tests that run ``python main.py run`` as a real process and read its SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from settings import Settings

ROOT = Path(__file__).parent.parent


def process_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    """The inherited environment minus every Vigil setting, plus a private database, fast intervals and the former
    default panel."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update({
        "PYTHONPATH": str(ROOT), "DB_PATH": str(tmp_path / "vigil.sqlite3"), "BINANCE_BASE_URL": base_url,
        "SCAN_DELAY_SECONDS": "0", "MONITOR_INTERVAL_SECONDS": "1", "LOG_LEVEL": "INFO",
        # the rule the fakes' signal times were found with (the former default; tests/trading_fixtures.RULE_PANEL)
        "VOTERS": "trend_momentum", "ENTRY_THRESHOLD": "0.6",
    })
    env.update(extra)
    return env


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read-only query; [] while the database or its tables do not exist yet."""
    if not db_path.exists():
        return []
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def heartbeat(db_path: Path) -> str:
    rows = query(db_path, "SELECT value FROM state WHERE key='monitor_heartbeat'")
    return rows[0][0] if rows else ""


class Vigil:
    """One ``main.py run`` process; its output goes to vigil.log in ``cwd``."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Vigil:
        with (self.cwd / "vigil.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "main.py"), "run", env=self.env, cwd=self.cwd, stdout=log, stderr=log)
        return self

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.proc.returncode is not None:
                    log = (self.cwd / "vigil.log").read_text()[-4000:]
                    raise AssertionError(f"vigil exited with {self.proc.returncode}:\n{log}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)
