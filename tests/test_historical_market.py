"""HistoricalMarket over the bundled real Binance sample (data/sample) and small hand-made folders."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock, to_ms
from core.intervals import interval_ms
from engine.exchange.errors import ExchangeError, UnknownSymbol
from engine.exchange.historical import INTERVALS, HistoricalMarket
from engine.exchange.protocol import MarketData

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-futures"
T0 = datetime(2025, 2, 3, 12, 7, 30, tzinfo=UTC)  # mid-candle, on a real crash day


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="module")
def raw_btc() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz")


@pytest.fixture
def market(clock: ManualClock) -> HistoricalMarket:
    return HistoricalMarket(SAMPLE, clock)


def test_implements_market_data(market):
    assert isinstance(market, MarketData)
    assert market.symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


async def test_symbol_rules_with_brackets(market):
    rules = await market.symbol_rules()
    btc = rules["BTCUSDT"]
    assert btc.tick_size == D("0.1") and btc.step_size == D("0.001") and btc.min_notional == D(5)
    assert btc.brackets[1].cum == D(50) and len(btc.brackets) == 10
    # ETH has no bracket entry: the file's "default" ladder
    assert rules["ETHUSDT"].brackets[0].maint_margin_ratio == D("0.01")
    assert len(rules["ETHUSDT"].brackets) == 6


async def test_no_candle_after_now_is_ever_returned(market, clock):
    for _ in range(30):
        now_ms = to_ms(clock.now())
        for interval in INTERVALS:
            ms = interval_ms(interval)
            latest = await market.klines("ETHUSDT", interval, limit=1000)
            assert len(latest) > 0
            assert int(latest.open_time[-1]) + ms <= now_ms
            # the next candle is not closed yet
            assert int(latest.open_time[-1]) + 2 * ms > now_ms
            ahead = await market.klines("ETHUSDT", interval, start_ms=now_ms - ms, limit=1000)
            assert all(int(t) + ms <= now_ms for t in ahead.open_time)
        clock.advance(timedelta(minutes=7))


async def test_5m_candles_are_the_file_rows(market, raw_btc):
    batch = await market.klines("BTCUSDT", "5m", limit=3)
    rows = raw_btc[raw_btc.open_time < to_ms(T0) - 300_000 + 1].tail(3)
    assert batch.open_time.tolist() == rows.open_time.tolist()
    assert batch.close.tolist() == rows.close.tolist()
    assert batch.volume.tolist() == rows.volume.tolist()


async def test_resampled_1h_equals_its_twelve_5m_candles(market, raw_btc):
    batch = await market.klines("BTCUSDT", "1h", limit=5)
    hour = int(batch.open_time[-2])
    assert hour % 3_600_000 == 0
    part = raw_btc[(raw_btc.open_time >= hour) & (raw_btc.open_time < hour + 3_600_000)]
    assert len(part) == 12
    assert batch.open[-2] == part.open.iloc[0]
    assert batch.high[-2] == part.high.max()
    assert batch.low[-2] == part.low.min()
    assert batch.close[-2] == part.close.iloc[-1]
    assert batch.volume[-2] == pytest.approx(part.volume.sum(), rel=1e-12)


async def test_resampled_1d_is_aligned_to_utc_midnight(market):
    batch = await market.klines("SOLUSDT", "1d", limit=10)
    assert len(batch) == 10
    assert all(int(t) % 86_400_000 == 0 for t in batch.open_time)
    assert np.all(np.diff(batch.open_time) == 86_400_000)


async def test_start_ms_and_limit_semantics(market):
    start = to_ms(datetime(2025, 2, 1, tzinfo=UTC))
    first = await market.klines("BTCUSDT", "5m", start_ms=start, limit=4)
    assert first.open_time.tolist() == [start + i * 300_000 for i in range(4)]
    # start inside a candle: the first candle opening at or after it
    shifted = await market.klines("BTCUSDT", "5m", start_ms=start + 1, limit=2)
    assert int(shifted.open_time[0]) == start + 300_000
    # without start: the newest `limit` closed candles, oldest first
    latest = await market.klines("BTCUSDT", "15m", limit=3)
    assert np.all(np.diff(latest.open_time) == 900_000)
    # start in the future: nothing
    assert len(await market.klines("BTCUSDT", "5m", start_ms=to_ms(T0) + 3_600_000)) == 0
    # limit larger than what exists before now: cut at now
    tail = await market.klines("BTCUSDT", "1h", start_ms=to_ms(T0) - 3 * 3_600_000, limit=500)
    assert len(tail) == 2


async def test_returned_arrays_are_copies(market):
    a = await market.klines("BTCUSDT", "5m", limit=2)
    a.close[:] = 0
    b = await market.klines("BTCUSDT", "5m", limit=2)
    assert b.close[0] != 0


async def test_mark_price_at_a_time(market, raw_btc, clock):
    mp = await market.mark_price("BTCUSDT")
    candle_open = to_ms(T0) - to_ms(T0) % 300_000
    row = raw_btc[raw_btc.open_time == candle_open].iloc[0]
    assert mp.mark_price == D(repr(float(row.open)))
    assert mp.time == T0
    funding = pd.read_csv(SAMPLE / "BTCUSDT-funding.csv.gz", dtype={"funding_rate": str})
    settled = funding[funding.funding_time <= to_ms(T0)].iloc[-1]
    assert mp.funding_rate == D(settled.funding_rate)
    assert mp.next_funding_time == datetime(2025, 2, 3, 16, tzinfo=UTC)
    # exactly on a candle boundary the price is that candle's open
    clock.set(datetime(2025, 2, 3, 13, tzinfo=UTC))
    row = raw_btc[raw_btc.open_time == to_ms(clock.now())].iloc[0]
    assert (await market.mark_price("BTCUSDT")).mark_price == D(repr(float(row.open)))


async def test_mark_price_after_the_data_ends_is_last_close(clock):
    market = HistoricalMarket(SAMPLE, clock, ["BTCUSDT"])
    _, last = market.data_range("BTCUSDT")
    clock.set(last + timedelta(days=1))
    mp = await market.mark_price("BTCUSDT")
    raw = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz")
    assert mp.mark_price == D(repr(float(raw.close.iloc[-1])))
    assert mp.next_funding_time > clock.now()
    assert await market.tickers_24h() == []  # no data at now: not listed


async def test_mark_price_before_the_data_starts_is_an_error():
    market = HistoricalMarket(SAMPLE, ManualClock(datetime(2024, 6, 1, tzinfo=UTC)), ["ETHUSDT"])
    with pytest.raises(ExchangeError):
        await market.mark_price("ETHUSDT")
    assert len(await market.klines("ETHUSDT", "5m")) == 0


async def test_tickers_24h(market, raw_btc):
    tickers = {t.symbol: t for t in await market.tickers_24h()}
    assert set(tickers) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    closed_end = to_ms(T0) - to_ms(T0) % 300_000  # candles opening before this are closed
    window = raw_btc[(raw_btc.open_time < closed_end) & (raw_btc.open_time >= closed_end - 86_400_000)]
    assert len(window) == 288
    btc = tickers["BTCUSDT"]
    assert btc.last_price == D(repr(float(window.close.iloc[-1])))
    assert float(btc.quote_volume) == pytest.approx(float((window.close * window.volume).sum()), rel=1e-9)
    change = (window.close.iloc[-1] - window.open.iloc[0]) / window.open.iloc[0] * 100
    assert float(btc.price_change_pct) == pytest.approx(change, abs=1e-3)


async def test_funding_rates_between_and_never_in_the_future(market):
    start = datetime(2025, 2, 2, tzinfo=UTC)
    rates = await market.funding_rates("BTCUSDT", start, T0 + timedelta(days=5))
    assert [r.funding_time.hour for r in rates] == [0, 8, 16, 0, 8]
    assert rates[-1].funding_time == datetime(2025, 2, 3, 8, tzinfo=UTC)
    assert all(isinstance(r.rate, D) for r in rates)


async def test_unknown_symbol(market):
    with pytest.raises(UnknownSymbol):
        await market.klines("DOGEUSDT", "5m")
    with pytest.raises(UnknownSymbol):
        await market.mark_price("DOGEUSDT")
    with pytest.raises(UnknownSymbol):
        HistoricalMarket(SAMPLE, ManualClock(T0), ["DOGEUSDT"])
    with pytest.raises(ValueError):
        await market.klines("BTCUSDT", "1m")


def _write_csv(path: Path, header: str, rows: list[str]) -> None:
    with gzip.open(path, "wt") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")


async def test_gaps_are_not_bridged_and_symbols_without_rules_are_skipped(tmp_path):
    base = to_ms(datetime(2025, 1, 1, tzinfo=UTC))
    rows = [f"{base + i * 300_000},10,11,9,10.5,2" for i in range(24) if i != 15]  # 01:15 missing
    _write_csv(tmp_path / "BTCUSDT-5m.csv.gz", "open_time,open,high,low,close,volume", rows)
    _write_csv(tmp_path / "NEWUSDT-5m.csv.gz", "open_time,open,high,low,close,volume", rows)
    shutil.copy(SAMPLE / "exchange_info.json", tmp_path / "exchange_info.json")
    (tmp_path / "leverage_brackets.json").write_text(json.dumps({"symbols": [], "default": []}))
    clock = ManualClock(datetime(2025, 1, 1, 3, tzinfo=UTC))
    market = HistoricalMarket(tmp_path, clock)
    assert market.symbols == ["BTCUSDT"]
    hours = await market.klines("BTCUSDT", "1h")
    assert hours.open_time.tolist() == [base]  # the second hour has a hole: no candle
    assert len(await market.klines("BTCUSDT", "5m", limit=1000)) == 23
    mp = await market.mark_price("BTCUSDT")  # no funding file: rate 0, next 8h boundary
    assert mp.funding_rate == 0 and mp.next_funding_time == datetime(2025, 1, 1, 8, tzinfo=UTC)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not available")
async def test_reads_the_shared_data_folder():
    clock = ManualClock(datetime(2025, 6, 1, tzinfo=UTC))
    market = HistoricalMarket(SHARED, clock, ["BTCUSDT", "XRPUSDT"])
    assert market.symbols == ["BTCUSDT"]  # XRPUSDT has no exchangeInfo entry there
    assert (await market.symbol_rules())["BTCUSDT"].brackets[1].cum == D(50)
    batch = await market.klines("BTCUSDT", "4h", limit=6)
    assert int(batch.open_time[-1]) + 4 * 3_600_000 <= to_ms(clock.now())
