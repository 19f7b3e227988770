"""Online backups with the sqlite3 backup API while the database is being written, retention, and restore."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.backup import BackupError, list_backups, take_backup
from app.instance_lock import InstanceLock
from main import main
from settings import Settings
from storage.db import Database
from tests.vigil_process import query

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def make_db(path: Path) -> None:
    async def create() -> None:
        async with Database(path):
            pass
    asyncio.run(create())


class Writer(threading.Thread):
    """Writes as the bot does (WAL, one transaction at a time): an event row and a counter that must agree."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.written, self.stop = path, 0, threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        while not self.stop.is_set():
            n = self.written + 1
            with con:
                con.execute("INSERT INTO events(time, kind, payload) VALUES (?, 'Tick', ?)", (NOW.isoformat(), str(n)))
                con.execute("INSERT INTO state(key, value, updated_at) VALUES ('counter', ?, ?) ON CONFLICT(key) "
                            "DO UPDATE SET value=excluded.value", (str(n), NOW.isoformat()))
            self.written = n
        con.close()

    def wait_for(self, n: int) -> None:
        while self.written < n:
            self.stop.wait(0.001)


def snapshot_is_consistent(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # standalone file, no -wal needed
        ticks = [int(r[0]) for r in con.execute("SELECT payload FROM events WHERE kind='Tick' ORDER BY id")]
        counter = con.execute("SELECT value FROM state WHERE key='counter'").fetchone()
    finally:
        con.close()
    assert ticks == list(range(1, len(ticks) + 1))  # no gap, no torn transaction
    assert int(counter[0]) == len(ticks)
    return len(ticks)


def test_backups_taken_while_writing_are_consistent_snapshots(tmp_path: Path):
    db_path = tmp_path / "vigil.sqlite3"
    make_db(db_path)
    writer = Writer(db_path)
    writer.start()
    seen = []
    try:
        for i in range(4):
            writer.wait_for(200 * (i + 1))
            backup = take_backup(db_path, tmp_path / "backups", NOW + timedelta(days=i), keep=3)
            seen.append(snapshot_is_consistent(backup.path))
    finally:
        writer.stop.set()
        writer.join()
    assert seen == sorted(seen) and seen[0] >= 200 and seen[-1] < writer.written + 1
    names = [p.name for p in list_backups(tmp_path / "backups")]
    assert names == ["vigil-20260103T030405Z.sqlite3", "vigil-20260104T030405Z.sqlite3",
                     "vigil-20260105T030405Z.sqlite3"]  # retention: the newest 3
    assert not list((tmp_path / "backups").glob("*.partial"))


def test_backup_of_a_missing_database_says_so(tmp_path: Path):
    with pytest.raises(BackupError, match="no database at"):
        take_backup(tmp_path / "none.sqlite3", tmp_path / "backups", NOW)
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").iterdir())


def cli(tmp_path: Path, *argv: str) -> int:
    return main(["--env-file", str(tmp_path / "none"), *argv])


def test_backup_and_restore_commands(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    db_path = tmp_path / "data" / "vigil.sqlite3"
    make_db(db_path)
    with sqlite3.connect(db_path) as con:
        con.execute("INSERT INTO events(time, kind, payload) VALUES ('t', 'Before', '{}')")
    assert cli(tmp_path, "backup") == 0
    [backup] = list_backups(tmp_path / "data" / "backups")

    # life goes on after the backup, then the bot dies: its last write is still in the -wal file
    subprocess.run([sys.executable, "-c", "import os, sqlite3, sys; con = sqlite3.connect(sys.argv[1]);"
                    "con.execute('PRAGMA wal_autocheckpoint=0');"
                    "con.execute(\"INSERT INTO events(time, kind, payload) VALUES ('t', 'After', '{}')\");"
                    "con.commit(); os._exit(0)", str(db_path)], check=True, timeout=60)
    assert db_path.with_name("vigil.sqlite3-wal").stat().st_size > 0
    assert cli(tmp_path, "restore") == 0  # default: the newest backup

    assert [r[0] for r in query(db_path, "SELECT kind FROM events")] == ["Before"]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    aside = sorted(p.name for p in db_path.parent.glob("vigil.sqlite3.before-restore-*"))
    assert len(aside) == 3 and aside[1].endswith("-shm") and aside[2].endswith("-wal")  # moved as one set
    kept = db_path.parent / aside[0]
    assert [r[0] for r in query(kept, "SELECT kind FROM events")] == ["Before", "After"]  # nothing lost
    assert backup.exists()


def test_restore_refuses_a_damaged_backup_and_leaves_the_database_alone(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    db_path = tmp_path / "vigil.sqlite3"
    make_db(db_path)
    before = db_path.read_bytes()
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x07" * 8000)
    assert cli(tmp_path, "restore", str(damaged)) == 1
    assert cli(tmp_path, "restore", str(tmp_path / "missing.sqlite3")) == 1
    assert db_path.read_bytes() == before
    assert not list(tmp_path.glob("*.before-restore-*"))


def test_restore_refuses_while_the_bot_runs(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    db_path = tmp_path / "vigil.sqlite3"
    make_db(db_path)
    assert cli(tmp_path, "backup") == 0
    with InstanceLock(db_path):
        assert cli(tmp_path, "restore") == 1
    assert not list(tmp_path.glob("*.before-restore-*"))
