"""The recent warnings and errors of the log file, for /logs.

Reads only the end of the file (it is size-rotated, but may still be megabytes), groups lines into records
(a record starts with a timestamp; traceback lines belong to the record above) and keeps WARNING and
worse. A record with a traceback is shown as its first line plus the exception line. Blocking file I/O: call
it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 512 * 1024
MAX_RECORD_CHARS = 400
PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


@dataclass(frozen=True, slots=True)
class LogRecordLine:
    level: str
    text: str


def recent_problems(path: Path, count: int, *, tail_bytes: int = TAIL_BYTES) -> list[LogRecordLine]:
    """The last ``count`` WARNING/ERROR/CRITICAL records of ``path``, oldest first. Raises ``OSError``."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - tail_bytes))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > tail_bytes and lines:
        lines = lines[1:]  # the first line was cut in the middle
    records: list[list[str]] = []
    for line in lines:
        if _RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    out: list[LogRecordLine] = []
    for record in records:
        found = _LEVEL.search(record[0][:80])
        if found is None or found.group(1) not in PROBLEM_LEVELS:
            continue
        text = record[0]
        tail = [line.strip() for line in record[1:] if line.strip()]
        if tail:
            text += f" | {tail[-1]}"
        out.append(LogRecordLine(found.group(1), text[:MAX_RECORD_CHARS]))
    return out[-count:] if count > 0 else []
