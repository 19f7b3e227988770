"""The log file of ``main.py run``: size-rotated under DATA_DIR/logs, secrets masked on every handler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.logs import configure_logging, settings_secrets

SECRET = "s3cr3t-binance-api-key-0123456789"
TOKEN = "123456789:AAFakeTelegramTokenForTests_abcdef"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_never_reach_the_file_or_the_console(tmp_path: Path, restore_logging, capsys):
    log_file = tmp_path / "logs" / "vigil.log"
    configure_logging("DEBUG", log_file=log_file, max_bytes=1_000_000,
                      secrets=settings_secrets(SecretStr(SECRET), SecretStr(TOKEN), None))
    log = logging.getLogger("tests.logs")
    log.info("key in the message %s", SECRET)
    log.debug("GET https://api.telegram.org/bot%s/getMe", TOKEN)
    try:
        raise RuntimeError(f"signature for {SECRET} rejected")
    except RuntimeError:
        log.exception("request failed")
    log.warning("stack", stack_info=True, extra={"note": SECRET})
    for handler in logging.getLogger().handlers:
        handler.flush()

    written = log_file.read_text()
    console = capsys.readouterr().err
    for text in (written, console):
        assert SECRET not in text and TOKEN not in text
        assert text.count("[REDACTED]") >= 3
        assert "RuntimeError: signature for [REDACTED] rejected" in text  # the traceback is kept, masked


def test_the_file_rotates_by_size(tmp_path: Path, restore_logging):
    log_file = tmp_path / "logs" / "vigil.log"
    configure_logging("INFO", log_file=log_file, max_bytes=2_000, backup_count=2)
    log = logging.getLogger("tests.logs")
    for i in range(200):
        log.info("line %03d %s", i, "x" * 40)
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["vigil.log", "vigil.log.1", "vigil.log.2"]
    assert all(p.stat().st_size <= 2_000 for p in log_file.parent.iterdir())


def test_no_file_when_the_size_is_zero(tmp_path: Path, restore_logging):
    configure_logging("INFO", log_file=tmp_path / "logs" / "vigil.log", max_bytes=0)
    logging.getLogger("tests.logs").info("console only")
    assert not (tmp_path / "logs").exists()
