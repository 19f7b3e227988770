"""Online backups of the SQLite database (the sqlite3 backup API, not a file copy) and their restore.

A backup is a consistent snapshot even while the bot writes: the backup API copies the database inside one
read transaction, and in WAL mode that never blocks the writer. Each backup is a self-contained file
(rollback journal, no ``-wal``) named ``vigil-YYYYmmddTHHMMSSZ.sqlite3`` in ``DATA_DIR/backups``; it is
integrity-checked before it gets its final name, and only the newest ``BACKUP_KEEP`` are kept.

Restore needs the bot stopped (it takes the instance lock). It checks the backup, moves the current database
and its ``-wal``/``-shm`` files aside (never deletes them), and writes the backup in its place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "vigil-"
SUFFIX = ".sqlite3"
SIDE_FILES = ("-wal", "-shm")


class BackupError(Exception):
    """A backup or restore could not be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    size: int
    pruned: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class Restore:
    restored_from: Path
    db_path: Path
    moved_aside: tuple[Path, ...]


def backup_name(now: datetime) -> str:
    return f"{PREFIX}{now:%Y%m%dT%H%M%SZ}{SUFFIX}"


def list_backups(backups_dir: Path) -> list[Path]:
    """Backups in ``backups_dir``, oldest first (the names sort by time)."""
    if not backups_dir.is_dir():
        return []
    return sorted(p for p in backups_dir.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def take_backup(db_path: Path, backups_dir: Path, now: datetime, keep: int = 0) -> Backup:
    """Copy the live database into ``backups_dir`` and prune to the newest ``keep`` backups (0 = keep all)."""
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}; check DB_PATH (nothing to back up)")
    backups_dir.mkdir(parents=True, exist_ok=True)
    final = backups_dir / backup_name(now)
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        _copy(db_path, partial, busy_timeout_ms=30_000)
        _check(partial)
    except (sqlite3.Error, BackupError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {db_path} failed: {exc}") from None
    os.replace(partial, final)
    pruned = prune(backups_dir, keep)
    log.info("database backed up to %s (%d bytes); %d old backup(s) removed", final, final.stat().st_size,
             len(pruned))
    return Backup(final, final.stat().st_size, tuple(pruned))


def prune(backups_dir: Path, keep: int) -> list[Path]:
    if keep <= 0:
        return []
    old = list_backups(backups_dir)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def restore_backup(backup: Path, db_path: Path, now: datetime) -> Restore:
    """Replace ``db_path`` by ``backup``. The caller holds the instance lock (the bot is stopped)."""
    if not backup.is_file():
        raise BackupError(f"no backup file at {backup}; `python main.py backup` lists where backups go")
    try:
        _check(backup)
    except sqlite3.Error as exc:
        raise BackupError(f"{backup} is not a usable SQLite backup ({exc}); pick another one") from None
    db_path.parent.mkdir(parents=True, exist_ok=True)
    incoming = db_path.with_name(db_path.name + ".restoring")
    incoming.unlink(missing_ok=True)
    try:
        _copy(backup, incoming, busy_timeout_ms=5_000)
    except sqlite3.Error as exc:
        incoming.unlink(missing_ok=True)
        raise BackupError(f"could not copy {backup} ({exc}); nothing was changed") from None
    moved: list[Path] = []
    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    for suffix in ("", *SIDE_FILES):
        current = db_path.with_name(db_path.name + suffix)
        if current.exists():
            aside = db_path.with_name(f"{db_path.name}.before-restore-{stamp}{suffix}")
            os.replace(current, aside)
            moved.append(aside)
    os.replace(incoming, db_path)
    log.info("restored %s from %s; the previous database was moved aside: %s", db_path, backup,
             ", ".join(str(p) for p in moved) or "none")
    return Restore(backup, db_path, tuple(moved))


def _copy(source: Path, target: Path, *, busy_timeout_ms: int) -> None:
    """sqlite3 backup API, in one step (one consistent snapshot); the copy is a standalone rollback-journal file."""
    src = sqlite3.connect(source, timeout=busy_timeout_ms / 1000)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            target.with_name(target.name + suffix).unlink()


def _check(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{path} is not an SQLite database (bad header)")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()
    if result != [("ok",)]:
        raise BackupError(f"integrity check of {path} failed: {'; '.join(str(r[0]) for r in result[:3])}")
