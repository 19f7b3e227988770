"""``main.py backup | restore FILE | reset-overrides``: operations on the database, each one line per outcome."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.backup import BackupError, list_backups, restore_backup, take_backup
from app.instance_lock import AlreadyRunning, InstanceLock
from settings import Settings
from storage.db import Database, DatabaseError
from storage.repositories import StateRepository

EXIT_OK = 0
EXIT_FAILED = 1


def backup(settings: Settings) -> int:
    """Take an online backup now (the bot may be running) and apply the retention."""
    try:
        result = take_backup(settings.db_path, settings.backups_dir, datetime.now(UTC), settings.backup_keep)
    except BackupError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup written: {result.path} ({result.size} bytes)")
    for path in result.pruned:
        print(f"old backup removed (BACKUP_KEEP={settings.backup_keep}): {path}")
    return EXIT_OK


def restore(settings: Settings, file: Path | None) -> int:
    """Replace DB_PATH by a backup (the newest one when no file is given); refuses while the bot runs."""
    if file is None:
        found = list_backups(settings.backups_dir)
        if not found:
            print(f"vigil: no backup in {settings.backups_dir}; name the file to restore", file=sys.stderr)
            return EXIT_FAILED
        file = found[-1]
    try:
        with InstanceLock(settings.db_path):
            result = restore_backup(file, settings.db_path, datetime.now(UTC))
            asyncio.run(_check_opens(settings.db_path))
    except AlreadyRunning as exc:
        print(f"vigil: cannot restore while the bot runs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (BackupError, DatabaseError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"restored {result.db_path} from {result.restored_from}")
    for path in result.moved_aside:
        print(f"previous file kept as {path}")
    return EXIT_OK


async def _check_opens(db_path: Path) -> None:
    """Vigil's own start-up checks (header, integrity, schema version) on the restored file."""
    db = await Database(db_path).open()
    await db.close()


def reset_overrides(settings: Settings, names: list[str]) -> int:
    """List the stored runtime choices; clear those named (the bot must be stopped)."""
    if not settings.db_path.exists():
        print(f"no database at {settings.db_path}: nothing is stored")
        return EXIT_OK
    try:
        with InstanceLock(settings.db_path):
            return asyncio.run(_reset(settings.db_path, names))
    except AlreadyRunning as exc:
        print(f"vigil: stop the bot first (it would keep its choices in memory): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DatabaseError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def _reset(db_path: Path, names: list[str]) -> int:
    from app.overrides import clear, stored

    db = await Database(db_path).open()
    try:
        state = StateRepository(db)
        if names:
            for choice in await clear(state, names):
                print(f"cleared {choice.name}: {choice.what}")
        remaining = await stored(state)
    finally:
        await db.close()
    if not remaining:
        print("no stored runtime choices: .env applies in full at the next start")
    for value in remaining:
        print(f"stored {value.choice.name}: {value.choice.what} = {value.value} (wins over {value.choice.wins_over};"
              f" clear with --{value.choice.name})")
    return EXIT_OK
