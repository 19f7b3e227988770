"""Writing a file so that a crash leaves its old content or its new one, never half of either.

The data store (``engine.datasets.store``), the backtest report and the model files all write through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: the temporary sibling a killed writer may leave behind: ``.NAME.<random>.part``
PART_SUFFIX = ".part"


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``path`` holds what ``write(binary_file)`` wrote, completely, or is left as it was: a temporary sibling is
    written, flushed and fsynced, renamed over ``path``, and the directory fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a power cut after the call keeps them), where the platform can."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
