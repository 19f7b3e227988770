"""HTML formatting primitives for Telegram: escaping, numbers with units and signs, phone-width tables,
and splitting long replies under Telegram's 4096-character limit without breaking tags or entities.

Every value that comes from outside the bot's own literals goes through ``esc`` (or a helper that calls
it): symbols, reasons, error texts, settings. Only the tags ``<b>``, ``<i>``, ``<code>`` and ``<pre>`` are
emitted; inline tags never span lines, so a message may be split at any line boundary.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

MAX_MESSAGE = 4096
_PRE_OPEN, _PRE_CLOSE = "<pre>", "</pre>"
_TAG_OR_ENTITY = re.compile(r"<[^>]*>|&[#a-zA-Z0-9]+;")


def esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def money(value: Decimal, unit: str = "USDT", *, signed: bool = True) -> str:
    text = f"{value:+,.2f}" if signed else f"{value:,.2f}"
    return f"{text.replace('-', '−')} {unit}"


def price(value: Decimal | None) -> str:
    """A price for reading: at most 2 decimals from 1,000, 4 from 1, else 6 significant digits."""
    if value is None:
        return "—"
    size = abs(value)
    if size >= 1000:
        value = value.quantize(Decimal("0.01"))
    elif size >= 1:
        value = value.quantize(Decimal("0.0001"))
    elif size > 0:
        value = round(value, 5 - size.adjusted())
    normal = value.normalize()
    if normal == normal.to_integral():
        normal = normal.quantize(Decimal(1))
    return f"{normal:,f}"


def qty(value: Decimal) -> str:
    normal = value.normalize()
    return f"{normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal:f}"


def pct(value: float | Decimal, *, signed: bool = True) -> str:
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{text.replace('-', '−')} %"


def when(moment: datetime | str | None) -> str:
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return esc(moment)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "—"
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return f"in {_duration(-seconds)}"
    return f"{_duration(seconds)} ago"


def duration(value: timedelta | None) -> str:
    """A length of time for reading: ``45 s``, ``12 min``, ``3 h 5 min``, ``4 d``; ``—`` when unknown."""
    return "—" if value is None else _duration(int(value.total_seconds()))


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d"


def table(rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A monospaced table in ``<pre>`` (cells are escaped here). ``align`` holds one of ``l``/``r`` per column."""
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(max(len(r) for r in rows))]
    lines = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            right = i < len(align) and align[i] == "r"
            cells.append(str(cell).rjust(widths[i]) if right else str(cell).ljust(widths[i]))
        lines.append(" ".join(cells).rstrip())
    return _PRE_OPEN + esc("\n".join(lines)) + _PRE_CLOSE


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Split at line boundaries into chunks of at most ``limit`` characters; a ``<pre>`` block cut in two is
    closed and reopened; a single overlong line is cut between tags/entities, never inside one."""
    reserve = len(_PRE_OPEN) + len(_PRE_CLOSE)
    if limit <= reserve + 8:
        raise ValueError("limit too small")
    chunks: list[str] = []
    current = ""
    in_pre = False
    for line in _lines(text, limit - reserve):
        candidate = line if not current else f"{current}\n{line}"
        closing = len(_PRE_CLOSE) if in_pre or _opens_pre(line, in_pre) else 0
        if current and len(candidate) + closing > limit:
            chunks.append(current + (_PRE_CLOSE if in_pre else ""))
            current = (_PRE_OPEN if in_pre else "") + line
        else:
            current = candidate
        in_pre = _opens_pre(line, in_pre)
    if current.strip():
        chunks.append(current)
    return chunks or [""]


def _opens_pre(line: str, in_pre: bool) -> bool:
    """Whether a ``<pre>`` block is still open after ``line``."""
    for tag in re.findall(r"</?pre>", line):
        in_pre = tag == _PRE_OPEN
    return in_pre


def _lines(text: str, max_len: int) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        while len(line) > max_len:
            cut = _safe_cut(line, max_len)
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _safe_cut(line: str, max_len: int) -> int:
    cut = max_len
    for match in _TAG_OR_ENTITY.finditer(line):
        if match.start() < cut < match.end():
            cut = match.start()
            break
    return cut if cut > 0 else max_len


def plain(text: str) -> str:
    """The HTML message as plain text (a fallback when Telegram rejects the markup)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))
