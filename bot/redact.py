"""Keep the bot token out of every log line (invariant 8).

PTB puts the token in request URLs and in the text of ``InvalidToken``; a log record factory replaces it
in the formatted message and in the exception text of every record, whichever handler prints it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

MASK = "[REDACTED]"


class TokenRedactor:
    def __init__(self, *secrets: str) -> None:
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)
        self._previous: Callable[..., logging.LogRecord] | None = None

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _factory(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        assert self._previous is not None
        record = self._previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return record
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if any(s in text for s in self.secrets):
                record.exc_text = self.scrub(text)
        return record

    def install(self) -> None:
        if self._previous is None and self.secrets:
            self._previous = logging.getLogRecordFactory()
            logging.setLogRecordFactory(self._factory)

    def uninstall(self) -> None:
        if self._previous is not None and logging.getLogRecordFactory() == self._factory:
            logging.setLogRecordFactory(self._previous)
        self._previous = None
