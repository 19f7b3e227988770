"""Logging for ``main.py run``: stdout plus a size-rotated ``DATA_DIR/logs/vigil.log``.

Both handlers carry ``SecretFilter``, which masks every configured secret (Binance key and secret, Telegram
token) in the message and in the traceback text before the record is written, whichever library logged it.
"""

from __future__ import annotations

import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

from bot.redact import TokenRedactor

FORMAT = "%(asctime)sZ %(levelname)s %(name)s: %(message)s"
NOISY = ("apscheduler", "httpx", "aiosqlite", "telegram", "asyncio")


class SecretFilter(logging.Filter):
    """Masks secrets in a record (message, arguments, traceback, stack) before a handler formats it."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.redactor = TokenRedactor(*secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it
            return True
        clean = self.redactor.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.scrub(record.stack_info)
        return True


def configure_logging(level: str, *, log_file: Path | None = None, max_bytes: int = 0, backup_count: int = 5,
                      secrets: tuple[str, ...] = ()) -> None:
    """Root logging to stdout and, when ``log_file`` and ``max_bytes`` are given, to a rotated file."""
    logging.Formatter.converter = time.gmtime
    secret_filter = SecretFilter(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and max_bytes > 0:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backup_count,
                                            encoding="utf-8"))
    for handler in handlers:
        handler.addFilter(secret_filter)
        handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=handlers, force=True)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def settings_secrets(*values: object) -> tuple[str, ...]:
    """The plain text of every set ``SecretStr`` among ``values``."""
    out: list[str] = []
    for value in values:
        getter = getattr(value, "get_secret_value", None)
        if getter is not None and getter():
            out.append(str(getter()))
    return tuple(out)
