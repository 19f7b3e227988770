"""download: the real AsyncClient against the fake Binance (serving the bundled real data) fills a data folder
in the ../shared/data layout, resumes after an interruption, and stays within the request-weight budget."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.clock import ManualClock, to_ms
from engine.datasets.download import DownloadError, DownloadRequest, download, missing_ranges
from engine.exchange.errors import TransientError
from engine.exchange.historical import HistoricalMarket
from engine.exchange.weight import endpoint_weight
from main import main
from tests.fakes.binance_server import TEST_API_KEY, TEST_API_SECRET, FakeBinanceFutures, FakeSleep

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "data" / "sample"
T0 = datetime(2025, 5, 1, 0, 0, 30, tzinfo=UTC)  # the sample ends 2025-04-30 23:55: all of it is history
MARCH_1, MARCH_8, MARCH_15 = (datetime(2025, 3, d, tzinfo=UTC) for d in (1, 8, 15))


@pytest.fixture
async def fake():
    async with FakeBinanceFutures(start=T0, funding_time_jitter_ms=15) as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)  # same second of the minute as the fake: both count weight per clock minute


@pytest.fixture
def sleeper(clock: ManualClock, fake: FakeBinanceFutures) -> FakeSleep:
    return FakeSleep(clock, fake)


async def run(fake, clock, sleeper, request: DownloadRequest, **kwargs):
    return (await download(request, base_url=fake.base_url, clock=clock, sleep=sleeper, **kwargs)).reports


def sample_window(kind: str, symbol: str, start: datetime, end: datetime) -> list[str]:
    """Header plus the bundled file's lines in [start, end), as text."""
    with gzip.open(SAMPLE / f"{symbol}-{kind}.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    return [lines[0], *(x for x in lines[1:] if to_ms(start) <= int(x.split(",")[0]) < to_ms(end))]


def lines_of(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of an interrupted atomic write."""
    return list(folder.glob(".*.part"))


def kline_requests(fake: FakeBinanceFutures, symbol: str) -> list[dict[str, str]]:
    return [r.params for r in fake.calls("/fapi/v1/klines") if r.params.get("symbol") == symbol]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_download_writes_the_shared_layout_byte_for_byte(fake, clock, sleeper, tmp_path: Path):
    request = DownloadRequest(("BTCUSDT", "ETHUSDT"), MARCH_1, MARCH_8, tmp_path)
    bar = Terminal()
    reports = await run(fake, clock, sleeper, request, progress_stream=bar)
    assert [(r.symbol, r.klines_added, r.klines_in_window, r.gaps, r.funding_added) for r in reports] == [
        ("BTCUSDT", 2016, 2016, 0, 21), ("ETHUSDT", 2016, 2016, 0, 21)]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert lines_of(tmp_path / f"{symbol}-5m.csv.gz") == sample_window("5m", symbol, MARCH_1, MARCH_8)
        # Binance stamps funding a few ms late; the file has it floored to the minute like ../shared/data
        assert lines_of(tmp_path / f"{symbol}-funding.csv.gz") == sample_window("funding", symbol, MARCH_1, MARCH_8)
    info = json.loads((tmp_path / "exchange_info.json").read_text())
    bundled = {e["symbol"]: e for e in json.loads((SAMPLE / "exchange_info.json").read_text())["symbols"]}
    assert [e["symbol"] for e in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    assert info["symbols"][0] == bundled["BTCUSDT"] and "rateLimits" in info
    assert "100.0%" in bar.getvalue() and "4,032/4,032 candles" in bar.getvalue()


async def test_the_historical_market_reads_the_download(fake, clock, sleeper, tmp_path: Path):
    await run(fake, clock, sleeper, DownloadRequest(("SOLUSDT",), MARCH_1, MARCH_8, tmp_path))
    at = ManualClock(datetime(2025, 3, 5, 12, tzinfo=UTC))
    ours, bundled = HistoricalMarket(tmp_path, at, ["SOLUSDT"]), HistoricalMarket(SAMPLE, at, ["SOLUSDT"])
    mine, theirs = await ours.klines("SOLUSDT", "1h", limit=48), await bundled.klines("SOLUSDT", "1h", limit=48)
    assert np.array_equal(mine.open_time, theirs.open_time) and np.array_equal(mine.close, theirs.close)
    assert (await ours.symbol_rules())["SOLUSDT"] == (await bundled.symbol_rules())["SOLUSDT"]
    assert await ours.funding_rates("SOLUSDT", MARCH_1, at.now()) == await bundled.funding_rates(
        "SOLUSDT", MARCH_1, at.now())


async def test_with_keys_the_leverage_brackets_are_saved_for_the_backtests(fake, clock, sleeper, tmp_path: Path):
    result = await download(DownloadRequest(("BTCUSDT", "ETHUSDT"), MARCH_1, MARCH_8, tmp_path),
                            base_url=fake.base_url, clock=clock, sleep=sleeper, api_key=TEST_API_KEY,
                            api_secret=TEST_API_SECRET)
    assert result.notes == [f"leverage brackets: 2 symbol tables in {tmp_path / 'leverage_brackets.json'}"]
    saved = json.loads((tmp_path / "leverage_brackets.json").read_text())
    bundled = json.loads((SAMPLE / "leverage_brackets.json").read_text())
    assert [e["symbol"] for e in saved["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    assert saved["symbols"][0]["brackets"] == bundled["symbols"][0]["brackets"]  # what Binance (the fake) sent
    assert saved["default"] == bundled["default"]
    at = ManualClock(datetime(2025, 3, 5, tzinfo=UTC))
    rules = (await HistoricalMarket(tmp_path, at, ["BTCUSDT"]).symbol_rules())["BTCUSDT"]
    assert rules == (await HistoricalMarket(SAMPLE, at, ["BTCUSDT"]).symbol_rules())["BTCUSDT"]


async def test_keys_binance_refuses_only_cost_the_brackets(fake, clock, sleeper, tmp_path: Path):
    result = await download(DownloadRequest(("BTCUSDT",), MARCH_1, MARCH_8, tmp_path), base_url=fake.base_url,
                            clock=clock, sleep=sleeper, api_key="wrong", api_secret="keys")
    assert result.reports[0].klines_added == 2016
    assert result.notes == ["leverage brackets not fetched (leverage brackets: Binance rejected the API key, its IP "
                            "allow-list or its permissions (Invalid API-key, IP, or permissions for action.); check "
                            "the key, enable futures trading and the server IP (Binance code -2015)); backtests use "
                            "the bundled conservative ladder for symbols without a table"]
    assert not (tmp_path / "leverage_brackets.json").exists()


async def test_resume_after_an_interruption_fetches_only_the_rest(fake, clock, sleeper, tmp_path: Path):
    request = DownloadRequest(("BTCUSDT",), MARCH_1, MARCH_15, tmp_path)  # 4,032 candles: 4 pages of 1000 + 32
    fake.faults.next("/fapi/v1/klines", "503_unavailable", times=4, skip=1)  # Binance down after the 1st page
    with pytest.raises(TransientError):
        await run(fake, clock, sleeper, request, checkpoint_pages=1)
    saved = lines_of(tmp_path / "BTCUSDT-5m.csv.gz")
    assert saved == sample_window("5m", "BTCUSDT", MARCH_1, MARCH_15)[:1001]  # the page that arrived is kept
    assert not (tmp_path / "BTCUSDT-funding.csv.gz").exists()
    assert not leftovers(tmp_path)

    before = len(kline_requests(fake, "BTCUSDT"))
    reports = await run(fake, clock, sleeper, request, checkpoint_pages=1)
    resumed = kline_requests(fake, "BTCUSDT")[before:]
    assert int(resumed[0]["startTime"]) == to_ms(MARCH_1) + 1000 * 300_000
    assert [int(r["limit"]) for r in resumed] == [1000, 1000, 1000, 32]
    assert reports[0].klines_added == 3032
    assert lines_of(tmp_path / "BTCUSDT-5m.csv.gz") == sample_window("5m", "BTCUSDT", MARCH_1, MARCH_15)
    assert lines_of(tmp_path / "BTCUSDT-funding.csv.gz") == sample_window("funding", "BTCUSDT", MARCH_1, MARCH_15)


async def test_a_complete_folder_is_not_fetched_again_and_a_longer_window_appends(fake, clock, sleeper,
                                                                                 tmp_path: Path):
    await run(fake, clock, sleeper, DownloadRequest(("BTCUSDT",), MARCH_8, MARCH_15, tmp_path))
    stamp = (tmp_path / "BTCUSDT-5m.csv.gz").stat().st_mtime_ns
    before = len(kline_requests(fake, "BTCUSDT"))
    again = await run(fake, clock, sleeper, DownloadRequest(("BTCUSDT",), MARCH_8, MARCH_15, tmp_path))
    assert (again[0].klines_added, again[0].funding_added) == (0, 0)
    assert len(kline_requests(fake, "BTCUSDT")) == before  # nothing to fetch: no request
    assert (tmp_path / "BTCUSDT-5m.csv.gz").stat().st_mtime_ns == stamp
    # one week earlier and one later: only those two weeks are fetched
    wider = await run(fake, clock, sleeper, DownloadRequest(("BTCUSDT",), MARCH_1, datetime(2025, 3, 22, tzinfo=UTC),
                                                            tmp_path))
    new = kline_requests(fake, "BTCUSDT")[before:]
    assert [(int(r["startTime"]), int(r["limit"])) for r in new] == [
        (to_ms(MARCH_1), 1000), (to_ms(MARCH_1) + 1000 * 300_000, 1000), (to_ms(MARCH_1) + 2000 * 300_000, 16),
        (to_ms(MARCH_15), 1000), (to_ms(MARCH_15) + 1000 * 300_000, 1000), (to_ms(MARCH_15) + 2000 * 300_000, 16)]
    assert wider[0].klines_added == 4032
    assert lines_of(tmp_path / "BTCUSDT-5m.csv.gz") == sample_window(
        "5m", "BTCUSDT", MARCH_1, datetime(2025, 3, 22, tzinfo=UTC))


async def test_the_download_stays_within_the_weight_budget(clock, tmp_path: Path):
    async with FakeBinanceFutures(start=T0, weight_limit=60) as fake:  # budget 40 % = 24 weight a minute
        sleeper = FakeSleep(clock, fake)
        request = DownloadRequest(("BTCUSDT", "ETHUSDT", "SOLUSDT"), MARCH_1, MARCH_8, tmp_path)
        await run(fake, clock, sleeper, request)
        per_minute: Counter[int] = Counter()
        for r in fake.requests:
            per_minute[r.time_ms // 60_000] += endpoint_weight(r.method, r.path.rsplit("/v1/", 1)[-1], r.params)
        # exchangeInfo; per symbol pages of 1000 + 1000 + 16 candles (weights 5, 5, 1) and one of funding
        assert sum(per_minute.values()) == 1 + 3 * (5 + 5 + 1 + 1)
        assert max(per_minute.values()) <= 24
        assert len(per_minute) >= 2 and sleeper.calls  # it waited for the next minute instead of going over
    assert lines_of(tmp_path / "SOLUSDT-5m.csv.gz") == sample_window("5m", "SOLUSDT", MARCH_1, MARCH_8)


async def test_funding_requests_keep_within_their_own_5_minute_limit(clock, tmp_path: Path):
    async with FakeBinanceFutures(start=T0, funding_request_limit=5) as fake:  # budget 40 % = 2 per 5 minutes
        sleeper = FakeSleep(clock, fake)
        request = DownloadRequest(("BTCUSDT", "ETHUSDT", "SOLUSDT"), MARCH_1, MARCH_8, tmp_path)
        await run(fake, clock, sleeper, request, funding_request_limit=5)
        sent = [r.time_ms for r in fake.calls("/fapi/v1/fundingRate")]
    assert len(sent) == 3  # one page each, none refused and retried
    assert sent[2] - sent[0] >= 300_000  # the third waited until the first left the 5-minute window
    assert lines_of(tmp_path / "SOLUSDT-funding.csv.gz") == sample_window("funding", "SOLUSDT", MARCH_1, MARCH_8)


async def test_a_long_window_asks_funding_in_single_pages(fake, clock, sleeper, tmp_path: Path):
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)
    await run(fake, clock, sleeper, DownloadRequest(("ETHUSDT",), start, end, tmp_path))
    windows = [(int(r.params["startTime"]), int(r.params["endTime"])) for r in fake.calls("/fapi/v1/fundingRate")]
    step = 999 * 3_600_000  # ≤ 999 events even at hourly funding: one page of 1,000 each
    assert windows == [(to_ms(start), to_ms(start) + step - 1), (to_ms(start) + step, to_ms(start) + 2 * step - 1),
                       (to_ms(start) + 2 * step, to_ms(end) - 1)]
    assert lines_of(tmp_path / "ETHUSDT-funding.csv.gz") == sample_window("funding", "ETHUSDT", start, end)
    assert lines_of(tmp_path / "ETHUSDT-5m.csv.gz") == sample_window("5m", "ETHUSDT", start, end)


async def test_an_unknown_symbol_is_refused_before_anything_is_written(fake, clock, sleeper, tmp_path: Path):
    with pytest.raises(DownloadError, match="does not list FOOUSDT"):
        await run(fake, clock, sleeper, DownloadRequest(("BTCUSDT", "FOOUSDT"), MARCH_1, MARCH_8, tmp_path))
    assert not (tmp_path / "exchange_info.json").exists() and not (tmp_path / "BTCUSDT-5m.csv.gz").exists()


async def test_the_folder_is_created_only_for_a_valid_request(fake, clock, sleeper, tmp_path: Path):
    with pytest.raises(DownloadError):
        await run(fake, clock, sleeper, DownloadRequest(("FOOUSDT",), MARCH_1, MARCH_8, tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


async def test_candles_not_yet_closed_are_not_stored(clock, tmp_path: Path):
    now = datetime(2025, 3, 3, 10, 7, 30, tzinfo=UTC)
    async with FakeBinanceFutures(start=now) as fake:
        reports = await run(fake, clock, FakeSleep(clock, fake),
                            DownloadRequest(("BTCUSDT",), datetime(2025, 3, 3, tzinfo=UTC), MARCH_8, tmp_path))
    assert reports[0].last == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)  # 10:05 is still forming
    assert reports[0].klines_added == 121


async def test_a_window_in_the_future_is_refused(fake, clock, sleeper, tmp_path: Path):
    with pytest.raises(DownloadError, match=r"nothing to fetch: --start 2025-06-01 is not before Binance's last "
                                            r"closed candle \(2025-05-01 00:00 UTC\)"):
        await run(fake, clock, sleeper, DownloadRequest(("BTCUSDT",), datetime(2025, 6, 1, tzinfo=UTC),
                                                        datetime(2025, 7, 1, tzinfo=UTC), tmp_path))


def test_missing_ranges() -> None:
    times = np.array([1000, 1300, 1600])
    assert missing_ranges(np.array([]), 0, 3000, 300) == [(0, 3000)]
    assert missing_ranges(times, 0, 3000, 300) == [(0, 1000), (1900, 3000)]
    assert missing_ranges(times, 1000, 1900, 300) == []
    assert missing_ranges(times, 2500, 3000, 300) == [(2500, 3000)]
    assert missing_ranges(times, 0, 500, 300) == [(0, 500)]


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "2025-03-01", "--end", "2025-02-01"], "--end (2025-02-01) must be after --start (2025-03-01)"),
    (["--start", "1.3.2025", "--end", "2025-04-01"], "--start must be a day like 2024-01-31, got '1.3.2025'"),
])
def test_cli_rejects_bad_dates_in_one_line(tmp_path: Path, capsys, args: list[str], message: str):
    code = main(["--env-file", str(tmp_path / "none"), "download", "--symbols", "BTCUSDT", *args,
                 "--data-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == f"vigil: {message}\n"


def cli_env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("BINANCE_", "TRADING_", "DATA_"))}
    return env | {"BINANCE_BASE_URL": base_url, "PYTHONPATH": str(ROOT)}


async def run_cli(base_url: str, out: Path, cwd: Path) -> asyncio.subprocess.Process:
    """``main.py download`` as an operator's terminal runs it: in the foreground, Ctrl-C (SIGINT) reaching it.

    A child inherits an *ignored* SIGINT: a test run started as a background job of a non-interactive shell (a CI
    script's ``pytest &``, ``nohup``-style runners) ignores SIGINT, and so would the CLI, which then finishes the
    download and exits 0 instead of stopping (the POSIX convention it rightly keeps: a background job is not
    interrupted by Ctrl-C). A signal with a handler is reset to its default at exec, so the child is spawned while
    SIGINT has Python's handler, as it has in a terminal's foreground job."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "--env-file", str(cwd / "none"), "download", "--symbols",
            "BTCUSDT,ETHUSDT", "--start", "2025-03-01", "--end", "2025-03-08", "--data-dir", str(out),
            env=cli_env(base_url), cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


async def wait_for(condition, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_cli_killed_mid_download_resumes_on_the_next_run(tmp_path: Path):
    out = tmp_path / "data"
    async with FakeBinanceFutures(start=T0) as fake:
        # BTCUSDT completes (3 pages), then the first ETHUSDT page hangs and the process is killed (-9)
        fake.faults.next("/fapi/v1/klines", "timeout", accept=False, delay=30, skip=3)
        proc = await run_cli(fake.base_url, out, tmp_path)
        await wait_for(lambda: bool(fake.held) or proc.returncode is not None)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert lines_of(out / "BTCUSDT-5m.csv.gz") == sample_window("5m", "BTCUSDT", MARCH_1, MARCH_8)
        assert not (out / "ETHUSDT-5m.csv.gz").exists()
        fake.faults.clear()
        before = len(fake.requests)
        proc = await run_cli(fake.base_url, out, tmp_path)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, stderr.decode()
        again = [r.params.get("symbol") for r in fake.requests[before:] if r.path == "/fapi/v1/klines"]
        assert again == ["ETHUSDT"] * 3  # BTCUSDT was complete: not fetched again
    assert lines_of(out / "ETHUSDT-5m.csv.gz") == sample_window("5m", "ETHUSDT", MARCH_1, MARCH_8)
    assert "ETHUSDT: 2016 candles added, 2016 in the window" in stdout.decode()
    assert "Traceback" not in stderr.decode() and stderr.decode() == ""  # no progress bar off a terminal
    assert not leftovers(out)


@pytest.mark.slow
async def test_ctrl_c_saves_the_pages_already_fetched(tmp_path: Path):
    out = tmp_path / "data"
    async with FakeBinanceFutures(start=T0) as fake:
        fake.faults.next("/fapi/v1/klines", "timeout", accept=False, delay=30, skip=4)  # ETHUSDT's 2nd page hangs
        proc = await run_cli(fake.base_url, out, tmp_path)
        await wait_for(lambda: bool(fake.held) or proc.returncode is not None)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert stderr.decode() == ("vigil: download interrupted. What was fetched is saved; run the same command "
                               "again to resume.\n")
    # the first 1,000 ETHUSDT candles were not at a checkpoint yet: the interruption saved them
    assert lines_of(out / "ETHUSDT-5m.csv.gz") == sample_window("5m", "ETHUSDT", MARCH_1, MARCH_8)[:1001]
    assert not leftovers(out)


@pytest.mark.slow
def test_cli_says_what_to_do_when_binance_is_unreachable(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("BINANCE_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    code = main(["--env-file", str(tmp_path / "none"), "download", "--symbols", "BTCUSDT", "--start",
                 "2025-03-01", "--end", "2025-03-02", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("vigil: download stopped: exchange info: could not connect to Binance")
    assert err.endswith("run the same command again to resume.\n") and err.count("\n") == 1


def test_reports_render_gaps() -> None:
    from engine.datasets.download import SymbolReport

    first, last = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 1, 23, 55, tzinfo=UTC)
    text = SymbolReport("ETHUSDT", 280, 280, 288, 1, 3, first, last).render()
    assert text == ("ETHUSDT: 280 candles added, 280 in the window (2025-03-01 00:00 → 2025-03-01 23:55 UTC), "
                    "1 gap(s), 8 candles missing (Binance has none); 3 funding events added")
