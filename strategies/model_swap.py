"""Writing a model pair (``X.joblib`` + ``X.json``) over the one in use, so that a crash leaves a loadable pair.

Every write of a model file (``train``, ``retrain``, a rollback) goes through here: ``model_store.save_model`` stages
the pair and installs it. Each file is written to a temporary file in the same directory, flushed and fsynced, then
renamed over its name (and the directory fsynced), so no file is ever seen half-written.

A pair is two files and no filesystem renames two files at once, so the swap is journaled by the staged files:

1. the candidate is written completely as ``X.candidate.joblib`` / ``X.candidate.json`` (each atomically);
2. the model in use is copied to ``X.previous.joblib`` / ``X.previous.json`` (each atomically) for rollback;
3. ``os.replace`` the staged joblib onto ``X.joblib``, then the staged json onto ``X.json``.

A crash before step 3 leaves the old pair in place (and a staged pair that ``finish_interrupted`` removes). A crash
between the two renames of step 3 leaves the staged json alone on disk: ``finish_interrupted`` (run by ``retrain``
and before the bot loads a model) completes the swap, so the model and its metadata always belong together.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.atomic_files import sync_dir, write_atomically

log = logging.getLogger(__name__)


def meta_path(model_path: Path) -> Path:
    """The metadata file of a model file: ``X.joblib`` → ``X.json``."""
    return model_path.with_suffix(".json")


def sibling(target: Path, tag: str) -> Path:
    """``vigil-ml.joblib`` → ``vigil-ml.<tag>.joblib`` (its metadata: ``vigil-ml.<tag>.json``)."""
    return target.with_name(f"{target.stem}.{tag}{target.suffix}")


def staged_path(target: Path) -> Path:
    return sibling(target, "candidate")


def previous_path(target: Path) -> Path:
    return sibling(target, "previous")


def _copy_atomically(src: Path, dst: Path) -> None:
    def copy(out: BinaryIO) -> None:
        with src.open("rb") as f:
            shutil.copyfileobj(f, out)

    write_atomically(dst, copy)


def finish_interrupted(target: Path) -> str:
    """Complete or clear a swap a crash interrupted; returns what it did ("" when there was nothing to do)."""
    staged = staged_path(target)
    staged_model, staged_meta = staged.is_file(), meta_path(staged).is_file()
    if staged_meta and not staged_model:      # the model was renamed, its metadata was not yet
        os.replace(meta_path(staged), meta_path(target))
        sync_dir(target.parent)
        log.warning("finished an interrupted model swap at %s", target)
        return "finished an interrupted swap"
    if staged_model or staged_meta:           # the swap had not started: the old pair is intact
        staged.unlink(missing_ok=True)
        meta_path(staged).unlink(missing_ok=True)
        return "removed a staged model that was never installed"
    return ""


def install(staged: Path, target: Path, *, between: Callable[[], None] | None = None) -> Path | None:
    """Put the staged pair in place of ``target``; the replaced pair becomes ``previous_path(target)`` (returned,
    None when there was no model before). ``between`` runs between the two renames (tests crash there)."""
    if not staged.is_file() or not meta_path(staged).is_file():
        raise FileNotFoundError(f"no complete staged model at {staged}")
    previous: Path | None = None
    if target.is_file() and meta_path(target).is_file():
        previous = previous_path(target)
        _copy_atomically(target, previous)
        _copy_atomically(meta_path(target), meta_path(previous))
    os.replace(staged, target)
    if between is not None:
        between()
    os.replace(meta_path(staged), meta_path(target))
    sync_dir(target.parent)
    return previous


def rollback(target: Path) -> None:
    """Swap the model in use with the previous one (the current one becomes the previous)."""
    previous = previous_path(target)
    if not previous.is_file() or not meta_path(previous).is_file():
        raise FileNotFoundError(f"no previous model at {previous} to roll back to")
    staged = staged_path(target)
    _copy_atomically(previous, staged)
    _copy_atomically(meta_path(previous), meta_path(staged))
    install(staged, target)
