"""import-dumps: Binance's monthly futures kline ZIPs (with and without header) into the data-folder layout.

The ZIPs are built here from the real bundled BTCUSDT candles, in the dumps' 12-column format."""

from __future__ import annotations

import functools
import gzip
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.clock import ManualClock, to_ms
from engine.datasets.dumps import DumpError, DumpKind, import_dumps
from engine.exchange.historical import HistoricalMarket
from main import main

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "data" / "sample"
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore")


@functools.cache
def sample_lines(symbol: str = "BTCUSDT", kind: str = "5m") -> list[str]:
    with gzip.open(SAMPLE / f"{symbol}-{kind}.csv.gz", "rt") as fh:
        return fh.read().splitlines()


def month_lines(lines: list[str], year: int, month: int) -> list[str]:
    lo = to_ms(datetime(year, month, 1, tzinfo=UTC))
    hi = to_ms(datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
    return [line for line in lines[1:] if lo <= int(line.split(",", 1)[0]) < hi]


def dump_row(line: str, *, micro: bool = False) -> str:
    """One sample row in Binance's dump format: 12 columns, prices with trailing zeros as Binance writes them."""
    t, o, h, low, c, v = line.split(",")
    ot = int(t)
    quote = float(v) * float(c)
    first = ot * 1000 if micro else ot
    close_time = (ot + 299_999) * (1000 if micro else 1)
    prices = ",".join(f"{float(x):.2f}" for x in (o, h, low, c))
    return f"{first},{prices},{float(v):.3f},{close_time},{quote:.5f},1234,{float(v) / 2:.3f},{quote / 2:.5f},0"


def make_zip(folder: Path, name: str, lines: list[str], *, header: bool, micro: bool = False) -> Path:
    path = folder / f"{name}.zip"
    body = "\n".join(([HEADER] if header else []) + [dump_row(line, micro=micro) for line in lines]) + "\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.csv", body)
    return path


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """January (old style, no header), February and March (header) 2025 of BTCUSDT (read-only: copy to add)."""
    folder = tmp_path_factory.mktemp("dumps")
    lines = sample_lines()
    make_zip(folder, "BTCUSDT-5m-2025-01", month_lines(lines, 2025, 1), header=False)
    make_zip(folder, "BTCUSDT-5m-2025-02", month_lines(lines, 2025, 2), header=True)
    make_zip(folder, "BTCUSDT-5m-2025-03", month_lines(lines, 2025, 3), header=True)
    expected = [lines[0], *(line for m in (1, 2, 3) for line in month_lines(lines, 2025, m))]
    return folder, expected


def written_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def test_dumps_with_and_without_header_give_the_bundled_file_row_for_row(tmp_path: Path, dumps):
    folder, expected = dumps
    out = tmp_path / "data"
    summaries = import_dumps([folder], out)
    assert [(s.symbol, s.kind, s.files, s.rows_read, s.merge.added) for s in summaries] == [
        ("BTCUSDT", DumpKind.KLINES, 3, 25_920, 25_920)]
    assert written_lines(out / "BTCUSDT-5m.csv.gz") == expected  # same header, same numbers, same text


def make_funding_zip(folder: Path, symbol: str, year: int, month: int) -> Path:
    """A monthly funding dump of the real bundled rates, calc_time stamped a few ms late as Binance does."""
    lines = month_lines(sample_lines(symbol, "funding"), year, month)
    rows = [f"{int(t) + i % 7},8,{float(r):.8f}" for i, (t, r) in enumerate(x.split(",") for x in lines)]
    name = f"{symbol}-fundingRate-{year}-{month:02d}"
    with zipfile.ZipFile(folder / f"{name}.zip", "w") as archive:
        archive.writestr(f"{name}.csv", "\n".join(["calc_time,funding_interval_hours,last_funding_rate", *rows]))
    return folder / f"{name}.zip"


def test_funding_dumps_go_to_the_funding_file(tmp_path: Path, dumps):
    for month in (1, 2):
        make_funding_zip(tmp_path, "BTCUSDT", 2025, month)
    summaries = import_dumps([tmp_path, dumps[0] / "BTCUSDT-5m-2025-01.zip"], tmp_path / "out")
    assert [(s.kind, s.files, s.merge.added) for s in summaries] == [(DumpKind.KLINES, 1, 8928),
                                                                      (DumpKind.FUNDING, 2, 177)]
    funding = sample_lines("BTCUSDT", "funding")
    expected = [funding[0], *month_lines(funding, 2025, 1), *month_lines(funding, 2025, 2)]
    assert written_lines(tmp_path / "out" / "BTCUSDT-funding.csv.gz") == expected


def test_the_result_is_what_the_historical_market_reads(tmp_path: Path, dumps):
    folder, _ = dumps
    import_dumps([folder], tmp_path)
    market = HistoricalMarket(tmp_path, ManualClock(datetime(2025, 4, 1, tzinfo=UTC)), ["BTCUSDT"])
    assert market.data_range("BTCUSDT") == (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 31, 23, 55, tzinfo=UTC))


def test_merging_overlapping_imports_never_duplicates(tmp_path: Path, dumps):
    folder, expected = dumps
    out = tmp_path / "data"
    first = import_dumps([folder / "BTCUSDT-5m-2025-02.zip"], out)
    assert first[0].merge.added == 8064
    again = import_dumps([folder], out)  # February again, plus January and March
    assert (again[0].merge.added, again[0].merge.already_present) == (25_920 - 8064, 8064)
    assert written_lines(out / "BTCUSDT-5m.csv.gz") == expected
    before = (out / "BTCUSDT-5m.csv.gz").stat().st_mtime_ns
    third = import_dumps([folder], out)
    assert third[0].merge.added == 0
    assert (out / "BTCUSDT-5m.csv.gz").stat().st_mtime_ns == before  # nothing new: the file is not rewritten


def test_existing_rows_are_kept_and_an_api_download_merges_with_dumps(tmp_path: Path, dumps):
    folder, expected = dumps
    out = tmp_path / "data"
    out.mkdir()
    # a file as `download` writes it, covering 10 days in the middle of February
    middle = [expected[0], *expected[1 + 8928 + 2880: 1 + 8928 + 5760]]
    with gzip.open(out / "BTCUSDT-5m.csv.gz", "wt") as fh:
        fh.write("\n".join(middle) + "\n")
    import_dumps([folder], out)
    assert written_lines(out / "BTCUSDT-5m.csv.gz") == expected
    assert not list(out.glob(".*.part"))


def test_microsecond_open_times_are_converted(tmp_path: Path):
    lines = month_lines(sample_lines(), 2025, 4)
    make_zip(tmp_path, "BTCUSDT-5m-2025-04", lines, header=True, micro=True)
    import_dumps([tmp_path / "BTCUSDT-5m-2025-04.zip"], tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "BTCUSDT-5m.csv.gz")
    assert frame["open_time"].iloc[0] == to_ms(datetime(2025, 4, 1, tzinfo=UTC))
    assert len(frame) == len(lines)


def test_a_bad_file_stops_the_import_before_anything_is_written(tmp_path: Path, dumps):
    folder = shutil.copytree(dumps[0], tmp_path / "dumps")
    (folder / "ETHUSDT-5m-2025-01.zip").write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(DumpError, match=r"ETHUSDT-5m-2025-01.zip: not a ZIP file"):
        import_dumps([folder], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("BTCUSDT-1h-2025-01.zip", "1h klines; only 5m dumps are imported"),
    ("btc.zip", "not a Binance dump name"),
    ("missing/BTCUSDT-5m-2025-01.zip", "no such file or folder"),
])
def test_cli_rejects_bad_paths_in_one_line(tmp_path: Path, capsys, name: str, message: str):
    path = tmp_path / name
    if not name.startswith("missing"):
        make_zip(tmp_path, name.removesuffix(".zip"), month_lines(sample_lines(), 2025, 1)[:3], header=True)
    code = main(["--env-file", str(tmp_path / "none"), "import-dumps", str(path), "--data-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_cli_imports_and_reports(tmp_path: Path, capsys, dumps):
    folder, expected = dumps
    code = main(["--env-file", str(tmp_path / "none"), "import-dumps", str(folder / "BTCUSDT-5m-2025-01.zip"),
                 str(folder / "BTCUSDT-5m-2025-02.zip"), "--data-dir", str(tmp_path / "o")])
    assert code == 0
    assert "BTCUSDT 5m klines: 2 files, 16992 rows read, 16992 added" in capsys.readouterr().out
    assert written_lines(tmp_path / "o" / "BTCUSDT-5m.csv.gz") == expected[: 1 + 16992]


@pytest.mark.parametrize(("command", "words"), [
    ("download", ["--symbols", "--start", "--end", "exclusive", "Resumable", "BINANCE_WEIGHT_BUDGET_PCT"]),
    ("import-dumps", ["PATH", "with or without a header row", "fundingRate", "--data-dir"]),
])
def test_help_describes_the_data_commands(capsys, command: str, words: list[str]):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    assert all(word in out for word in words), out


def test_a_writer_dying_midway_leaves_the_old_file_whole(tmp_path: Path):
    from core.atomic_files import write_atomically
    from engine.datasets.store import remove_stale_parts

    target = tmp_path / "BTCUSDT-5m.csv.gz"
    target.write_bytes(b"old")

    def dies(fh) -> None:
        fh.write(b"half of the new fi")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, dies)
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*.part"))
    (tmp_path / ".BTCUSDT-5m.csv.gz.x1.part").write_bytes(b"left by a kill -9")
    assert remove_stale_parts(tmp_path) == 1 and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_appends_are_gzip_members_that_every_reader_sees_as_one_file(tmp_path: Path):
    from engine.datasets.store import KLINE_COLUMNS, merge_into

    lines = month_lines(sample_lines(), 2025, 1)
    frame = pd.DataFrame([[int(x.split(",")[0]), *map(float, x.split(",")[1:])] for x in lines],
                         columns=list(KLINE_COLUMNS))
    path = tmp_path / "BTCUSDT-5m.csv.gz"
    for part in (frame[:100], frame[100:2000], frame[2000:]):
        merge_into(path, part, KLINE_COLUMNS)
    assert path.read_bytes().count(b"\x1f\x8b\x08") >= 3  # three gzip members
    assert written_lines(path) == [sample_lines()[0], *lines]
    assert pd.read_csv(path)["open_time"].is_monotonic_increasing
    market = HistoricalMarket(tmp_path, ManualClock(datetime(2025, 2, 1, tzinfo=UTC)), ["BTCUSDT"])
    assert market.data_range("BTCUSDT")[1] == datetime(2025, 1, 31, 23, 55, tzinfo=UTC)
