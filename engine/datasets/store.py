"""The market-data folder layout that ``HistoricalMarket`` and the backtests read, and safe writes to it.

One folder holds, per symbol:

- ``SYMBOL-5m.csv.gz``: 5m klines, header ``open_time,open,high,low,close,volume`` (open time in epoch ms
  UTC, last-price OHLC in quote, volume in base asset);
- ``SYMBOL-funding.csv.gz``: funding events, header ``funding_time,funding_rate`` (epoch ms UTC floored to
  the minute, rate as a fraction);
- ``exchange_info.json``: raw ``GET /fapi/v1/exchangeInfo`` with the symbols of the folder;
- ``leverage_brackets.json`` (optional, needs keys to fetch): ``GET /fapi/v1/leverageBracket`` tables.

Numbers are written as Python's shortest float repr (``16538.0``, ``6.91e-06``), exactly as the files in
``../shared/data/binance-futures`` are, so a file this module rewrites is byte-for-byte what it read.
Every write goes to a temporary file in the same folder, is flushed to disk, then atomically replaces
the target: a kill at any moment leaves either the old file or the new one, never half of one. Rows
that only extend a file are added as one more gzip member (a gzip file may hold several; gzip, zcat and
pandas read them as one text), so a long download does not re-encode the whole file at each checkpoint.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from core.atomic_files import PART_SUFFIX, write_atomically

log = logging.getLogger(__name__)

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("funding_time", "funding_rate")
KLINE_INTERVAL = "5m"
KLINE_MS = 300_000
MINUTE_MS = 60_000
EXCHANGE_INFO = "exchange_info.json"
LEVERAGE_BRACKETS = "leverage_brackets.json"
_GZIP_LEVEL = 6


def kline_path(data_dir: Path, symbol: str) -> Path:
    return data_dir / f"{symbol}-{KLINE_INTERVAL}.csv.gz"


def funding_path(data_dir: Path, symbol: str) -> Path:
    return data_dir / f"{symbol}-funding.csv.gz"


def empty_klines() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in KLINE_COLUMNS}), KLINE_COLUMNS)


def empty_funding() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in FUNDING_COLUMNS}), FUNDING_COLUMNS)


def read_klines(path: Path) -> pd.DataFrame:
    """The kline file as a typed frame (int64 time, float64 values); empty if the file does not exist."""
    return _read(path, KLINE_COLUMNS) if path.exists() else empty_klines()


def read_funding(path: Path) -> pd.DataFrame:
    return _read(path, FUNDING_COLUMNS) if path.exists() else empty_funding()


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge did: rows in the file afterwards, rows it added, new rows that were already there."""

    path: Path
    rows: int
    added: int
    already_present: int


def merge_into(path: Path, new: pd.DataFrame, columns: tuple[str, ...]) -> MergeResult:
    """Add ``new`` rows to the file at ``path`` (created if missing): sorted by time, one row per time.

    Rows whose time the file already has are left as they are (existing data is never rewritten), so
    merging the same rows twice changes nothing. The file is replaced atomically, and only if rows were
    added.
    """
    key = columns[0]
    exists = path.exists()
    old = _read(path, columns) if exists else _typed(pd.DataFrame({c: [] for c in columns}), columns)
    new = _typed(new.loc[:, list(columns)], columns).drop_duplicates(key, keep="first")
    fresh = new[~new[key].isin(old[key])].sort_values(key, kind="stable")
    if fresh.empty:
        return MergeResult(path, len(old), 0, len(new))
    if old.empty or int(fresh[key].iloc[0]) > int(old[key].max()):
        # Appending after the last row (a download going forward): copy the compressed file as it is and add
        # one gzip member with the new rows, instead of re-encoding everything at every checkpoint.
        member = gzip.compress(_csv(fresh, columns, header=not exists), compresslevel=_GZIP_LEVEL, mtime=0)

        def append(fh: BinaryIO) -> None:
            if exists:
                with path.open("rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
            fh.write(member)

        write_atomically(path, append)
    else:
        merged = pd.concat([old, fresh], ignore_index=True).sort_values(key, kind="stable")
        write_atomically(path, lambda fh: fh.write(gzip.compress(_csv(merged, columns, header=True),
                                                                 compresslevel=_GZIP_LEVEL, mtime=0)))
    return MergeResult(path, len(old) + len(fresh), len(fresh), len(new) - len(fresh))


def merge_exchange_info(path: Path, raw: dict[str, Any], symbols: Iterable[str]) -> int:
    """Write ``raw`` exchangeInfo keeping only the entries of ``symbols`` plus those the file already had.

    Entries of symbols the new answer no longer lists (delisted since) are kept from the old file.
    Returns the number of symbol entries written.
    """
    wanted = set(symbols)
    kept: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError, AttributeError):
            kept = {e["symbol"]: e for e in json.loads(path.read_text()).get("symbols", []) if "symbol" in e}
    kept.update({e["symbol"]: e for e in raw.get("symbols", []) if e.get("symbol") in wanted or e.get("symbol")
                 in kept})
    out = {**raw, "symbols": [kept[s] for s in sorted(kept)]}
    text = json.dumps(out, indent=1) + "\n"
    write_atomically(path, lambda fh: fh.write(text.encode()))
    return len(kept)


def merge_leverage_brackets(path: Path, entries: Iterable[dict[str, Any]], symbols: Iterable[str],
                            default: list[Any], note: str) -> int:
    """Write ``{"symbols": [{"symbol", "brackets"}], "default": [...]}`` (what ``HistoricalMarket`` reads)
    with the answered tables of ``symbols`` plus those the file already had; returns how many tables."""
    wanted = set(symbols)
    kept: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
            old = json.loads(path.read_text())
            kept = {e["symbol"]: e for e in old.get("symbols", []) if "symbol" in e}
            default = old.get("default") or default
    kept.update({e["symbol"]: {"symbol": e["symbol"], "brackets": e["brackets"]} for e in entries
                 if e.get("symbol") in wanted and e.get("brackets")})
    out = {"_comment": note, "symbols": [kept[s] for s in sorted(kept)], "default": default}
    text = json.dumps(out, indent=1) + "\n"
    write_atomically(path, lambda fh: fh.write(text.encode()))
    return len(kept)


def remove_stale_parts(data_dir: Path) -> int:
    """Delete temporary files a killed writer left behind (``.NAME.*.part``); returns how many."""
    count = 0
    for part in data_dir.glob(f".*{PART_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            count += 1
    return count


def _csv(frame: pd.DataFrame, columns: tuple[str, ...], *, header: bool) -> bytes:
    """CSV text with the time as an integer and every value as Python's shortest float repr (pandas' own
    format, several times faster for this shape)."""
    keys = frame[columns[0]].tolist()
    values = [frame[c].tolist() for c in columns[1:]]
    lines = [",".join(columns)] if header else []
    lines.extend(f"{t},{','.join(map(repr, row))}" for t, *row in zip(keys, *values, strict=True))
    return ("\n".join(lines) + "\n").encode()


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path} is not a readable gzip CSV ({exc}); move it away and fetch it again") from None
    if tuple(df.columns) != columns:
        raise ValueError(f"{path} has columns {','.join(map(str, df.columns))}; expected {','.join(columns)}")
    return _typed(df, columns)


def _typed(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return df.astype({columns[0]: "int64", **{c: "float64" for c in columns[1:]}})
