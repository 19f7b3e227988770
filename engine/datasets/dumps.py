"""Import Binance's public futures dumps (data.binance.vision) into the market-data folder.

- Klines: a ZIP named ``SYMBOL-5m-YYYY-MM.zip`` (monthly) or ``SYMBOL-5m-YYYY-MM-DD.zip`` (daily) holding
  one CSV of the same name. Files published since 2022 start with a header row ``open_time,open,high,low,
  close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore``; older ones
  have none. The first six columns are the folder's kline columns; the rest are dropped. Merged into
  ``SYMBOL-5m.csv.gz``.
- Funding: ``SYMBOL-fundingRate-YYYY-MM.zip`` (monthly only) with ``calc_time,funding_interval_hours,
  last_funding_rate``; ``calc_time`` (stamped a few ms late, like the API's) is floored to the minute.
  Merged into ``SYMBOL-funding.csv.gz``.

Merging sorts, keeps one row per time and leaves rows already in the file untouched.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pandas as pd

from engine.datasets.store import (
    FUNDING_COLUMNS,
    KLINE_COLUMNS,
    KLINE_INTERVAL,
    KLINE_MS,
    MINUTE_MS,
    MergeResult,
    funding_path,
    kline_path,
    merge_into,
)

log = logging.getLogger(__name__)

DUMP_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\d+[smhdwM])-(?P<period>\d{4}-\d{2}(?:-\d{2})?)\.zip$")
FUNDING_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-fundingRate-(?P<period>\d{4}-\d{2})\.zip$")
#: Open times above this are microseconds (Binance moved some dumps to µs in 2025), not milliseconds.
MICROSECONDS_ABOVE = 10**14


class DumpError(ValueError):
    """A path that is not a usable kline dump; the message names the file and what is wrong."""


class DumpKind(StrEnum):
    KLINES = "5m klines"
    FUNDING = "funding"


@dataclass(frozen=True, slots=True)
class DumpFile:
    path: Path
    symbol: str
    period: str
    kind: DumpKind = DumpKind.KLINES


@dataclass(frozen=True, slots=True)
class ImportSummary:
    symbol: str
    kind: DumpKind
    files: int
    rows_read: int
    merge: MergeResult


def find_dumps(paths: Iterable[Path]) -> list[DumpFile]:
    """The kline dumps named by ``paths`` (files, or folders searched for ``*.zip``), in name order.

    Raises ``DumpError`` for a missing path, a file whose name is not a dump's, or a non-5m dump.
    """
    out: list[DumpFile] = []
    for path in paths:
        if path.is_dir():
            zips = sorted(path.glob("*.zip"))
            if not zips:
                raise DumpError(f"{path}: no .zip files in this folder")
            out.extend(_dump_file(p) for p in zips)
        elif path.exists():
            out.append(_dump_file(path))
        else:
            raise DumpError(f"{path}: no such file or folder")
    return sorted(set(out), key=lambda d: (d.symbol, d.kind, d.period, d.path.name))


def _dump_file(path: Path) -> DumpFile:
    funding = FUNDING_NAME.match(path.name)
    if funding is not None:
        return DumpFile(path, funding["symbol"], funding["period"], DumpKind.FUNDING)
    match = DUMP_NAME.match(path.name)
    if match is None:
        raise DumpError(f"{path.name}: not a Binance dump name (expected SYMBOL-5m-YYYY-MM.zip or "
                        f"SYMBOL-fundingRate-YYYY-MM.zip)")
    if match["interval"] != KLINE_INTERVAL:
        raise DumpError(f"{path.name}: {match['interval']} klines; only {KLINE_INTERVAL} dumps are imported")
    return DumpFile(path, match["symbol"], match["period"])


def read_dump(dump: DumpFile) -> pd.DataFrame:
    """The dump's rows in the folder's columns (header row or not)."""
    text = _csv_text(dump)
    has_header = text.lstrip()[:1].isalpha()
    if dump.kind is DumpKind.FUNDING:
        return _funding_rows(dump, text, has_header)
    return _kline_rows(dump, text, has_header)


def _csv_text(dump: DumpFile) -> str:
    try:
        with zipfile.ZipFile(dump.path) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise DumpError(f"{dump.path.name}: expected one CSV inside, found {len(names)}")
            raw = archive.read(names[0])
    except zipfile.BadZipFile:
        raise DumpError(f"{dump.path.name}: not a ZIP file (damaged or incomplete download?)") from None
    return raw.decode("utf-8-sig", errors="replace")


def _kline_rows(dump: DumpFile, text: str, has_header: bool) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.StringIO(text), header=0 if has_header else None, usecols=range(6))
    except (ValueError, pd.errors.ParserError) as exc:
        raise DumpError(f"{dump.path.name}: unreadable CSV ({exc})") from None
    if has_header and not str(df.columns[0]).startswith("open_time"):
        raise DumpError(f"{dump.path.name}: unexpected header {','.join(map(str, df.columns))}")
    df.columns = list(KLINE_COLUMNS)
    try:
        df = df.astype({"open_time": "int64", **{c: "float64" for c in KLINE_COLUMNS[1:]}})
    except (ValueError, TypeError) as exc:
        raise DumpError(f"{dump.path.name}: non-numeric kline values ({exc})") from None
    if len(df) and int(df["open_time"].iloc[0]) > MICROSECONDS_ABOVE:
        df["open_time"] //= 1000
    misaligned = int((df["open_time"] % KLINE_MS != 0).sum())
    if misaligned:
        raise DumpError(f"{dump.path.name}: {misaligned} open times are not on 5-minute boundaries")
    return df


def _funding_rows(dump: DumpFile, text: str, has_header: bool) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.StringIO(text), header=0 if has_header else None, usecols=[0, 2])
    except (ValueError, pd.errors.ParserError) as exc:
        raise DumpError(f"{dump.path.name}: unreadable funding CSV ({exc})") from None
    if has_header and list(df.columns) != ["calc_time", "last_funding_rate"]:
        raise DumpError(f"{dump.path.name}: unexpected header (expected calc_time,funding_interval_hours,"
                        f"last_funding_rate)")
    try:
        times = df.iloc[:, 0].astype("int64") // MINUTE_MS * MINUTE_MS
        rates = df.iloc[:, 1].astype("float64")
    except (ValueError, TypeError) as exc:
        raise DumpError(f"{dump.path.name}: non-numeric funding values ({exc})") from None
    return pd.DataFrame({FUNDING_COLUMNS[0]: times, FUNDING_COLUMNS[1]: rates})


def import_dumps(paths: Iterable[Path], data_dir: Path) -> list[ImportSummary]:
    """Merge every dump of ``paths`` into ``data_dir``; one atomic file write per symbol.

    All dumps are read and checked before anything is written, so a bad file changes nothing.
    """
    dumps = find_dumps(paths)
    frames: dict[tuple[str, DumpKind], list[pd.DataFrame]] = defaultdict(list)
    for dump in dumps:
        frames[dump.symbol, dump.kind].append(read_dump(dump))
    out = []
    for (symbol, kind), parts in frames.items():
        rows = pd.concat(parts, ignore_index=True)
        if kind is DumpKind.FUNDING:
            merge = merge_into(funding_path(data_dir, symbol), rows, FUNDING_COLUMNS)
        else:
            merge = merge_into(kline_path(data_dir, symbol), rows, KLINE_COLUMNS)
        log.info("%s %s: %d dump rows, %d added", symbol, kind, len(rows), merge.added)
        out.append(ImportSummary(symbol, kind, len(parts), len(rows), merge))
    return out
