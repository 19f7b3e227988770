"""engine.market: kline validation, resampling, universe selection, snapshot and its cache."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.clock import ManualClock, from_ms
from engine.exchange.errors import ExchangeError, RateLimited
from engine.exchange.types import KlineBatch
from engine.market import MarketDataService, resample_klines, validate_klines
from tests.helpers_market import (
    T0,
    FakeMarketData,
    make_batch,
    rules,
    sample_frame,
    sample_klines,
    ticker,
    window,
)

FIVE = 300_000


def _after(batch: KlineBatch, seconds: int = 5):
    """A moment just after the last candle of ``batch`` closed."""
    return from_ms(int(batch.open_time[-1]) + FIVE + seconds * 1000)


def _with(batch: KlineBatch, **changes: np.ndarray) -> KlineBatch:
    arrays = {n: getattr(batch, n).copy() for n in ("open_time", "open", "high", "low", "close", "volume")}
    arrays.update(changes)
    return KlineBatch(batch.symbol, batch.interval, **arrays)


def _take(batch: KlineBatch, idx: np.ndarray | list[int]) -> KlineBatch:
    idx = np.asarray(idx)
    return KlineBatch(batch.symbol, batch.interval, *(getattr(batch, n)[idx] for n in
                      ("open_time", "open", "high", "low", "close", "volume")))


# ---- validate_klines ---------------------------------------------------------------------------

def test_clean_series_passes_unchanged():
    b = make_batch(n=100)
    r = validate_klines(b, "5m", _after(b))
    assert r.ok and r.reason is None
    assert len(r.batch) == 100
    assert (r.forming_dropped, r.duplicates_dropped, r.bad_rows, r.gaps, r.cut) == (0, 0, 0, 0, 0)
    np.testing.assert_array_equal(r.batch.close, b.close)


def test_half_formed_last_candle_is_dropped():
    b = make_batch(n=100)
    now = from_ms(int(b.open_time[-1]) + 120_000)  # 2 minutes into the last candle
    r = validate_klines(b, "5m", now)
    assert r.ok
    assert r.forming_dropped == 1
    assert len(r.batch) == 99
    assert r.batch.open_time[-1] == b.open_time[-2]


def test_candle_closing_exactly_now_is_kept():
    b = make_batch(n=100)
    r = validate_klines(b, "5m", from_ms(int(b.open_time[-1]) + FIVE))
    assert r.ok and r.forming_dropped == 0 and len(r.batch) == 100


def test_out_of_order_rows_are_sorted():
    b = make_batch(n=100)
    idx = np.arange(100)
    idx[[10, 11, 50]] = idx[[50, 10, 11]]
    r = validate_klines(_take(b, idx[::-1]), "5m", _after(b))
    assert r.ok and r.reordered
    np.testing.assert_array_equal(r.batch.open_time, b.open_time)
    np.testing.assert_array_equal(r.batch.close, b.close)


def test_duplicate_open_time_keeps_the_row_received_last():
    b = make_batch(n=100)
    dup = _take(b, [*range(100), 40])
    dup.close[-1] = b.close[40] * 1.0001  # the refreshed copy, within its high/low
    r = validate_klines(dup, "5m", _after(b))
    assert r.ok and r.duplicates_dropped == 1
    assert len(r.batch) == 100
    assert r.batch.close[40] == pytest.approx(b.close[40] * 1.0001)


def test_gap_is_not_bridged_and_only_the_tail_after_it_is_kept():
    b = make_batch(n=200)
    holed = _take(b, [i for i in range(200) if i != 120])  # candle 120 missing
    r = validate_klines(holed, "5m", _after(b))
    assert r.ok and r.gaps == 1
    assert len(r.batch) == 79  # candles 121..199
    assert r.batch.open_time[0] == b.open_time[121]
    assert r.cut == 120


def test_gap_leaving_a_short_tail_rejects_the_series():
    b = make_batch(n=200)
    holed = _take(b, [i for i in range(200) if i != 170])
    r = validate_klines(holed, "5m", _after(b), min_candles=60)
    assert not r.ok
    assert "29 contiguous" in r.reason and "gap" in r.reason


def test_nan_row_cuts_the_series_after_it():
    b = make_batch(n=200)
    close = b.close.copy()
    close[100] = np.nan
    r = validate_klines(_with(b, close=close), "5m", _after(b))
    assert r.ok and r.bad_rows == 1
    assert r.batch.open_time[0] == b.open_time[101]
    assert len(r.batch) == 99
    assert np.isfinite(r.batch.close).all()


def test_nan_in_newest_candle_rejects_the_series():
    b = make_batch(n=200)
    vol = b.volume.copy()
    vol[-1] = np.inf
    r = validate_klines(_with(b, volume=vol), "5m", _after(b))
    assert not r.ok and len(r.batch) == 0


@pytest.mark.parametrize("field,factor", [("high", 0.99), ("low", 1.01)])
def test_ohlc_violation_cuts_the_series(field: str, factor: float):
    b = make_batch(n=200)
    values = getattr(b, field).copy()
    values[150] = max(b.open[150], b.close[150]) * factor if field == "high" else \
        min(b.open[150], b.close[150]) * factor
    r = validate_klines(_with(b, **{field: values}), "5m", _after(b), min_candles=40)
    assert r.ok and r.bad_rows == 1
    assert r.batch.open_time[0] == b.open_time[151]


def test_non_positive_price_is_a_bad_row():
    b = make_batch(n=200)
    low = b.low.copy()
    low[190] = 0.0
    r = validate_klines(_with(b, low=low), "5m", _after(b))
    assert not r.ok and r.bad_rows == 1 and len(r.batch) == 9


def test_off_grid_open_time_is_a_problem():
    b = make_batch(n=200)
    t = b.open_time.copy()
    t[180] += 1_000
    r = validate_klines(_with(b, open_time=t), "5m", _after(b))
    assert not r.ok
    assert r.batch.open_time[0] == b.open_time[181]


def test_zero_volume_run_at_the_end_rejects_as_halted():
    b = make_batch(n=200)
    vol = b.volume.copy()
    vol[-12:] = 0.0
    r = validate_klines(_with(b, volume=vol), "5m", _after(b), max_zero_volume_run=12)
    assert not r.ok and "zero-volume" in r.reason


def test_short_or_interior_zero_volume_runs_are_fine():
    b = make_batch(n=200)
    vol = b.volume.copy()
    vol[-11:] = 0.0
    vol[50:80] = 0.0
    r = validate_klines(_with(b, volume=vol), "5m", _after(b), max_zero_volume_run=12)
    assert r.ok and len(r.batch) == 200


def test_stale_series_is_rejected():
    b = make_batch(n=200)
    r = validate_klines(b, "5m", _after(b) + timedelta(minutes=15))
    assert not r.ok and "stale" in r.reason
    assert validate_klines(b, "5m", _after(b) + timedelta(minutes=5)).ok  # one candle late is tolerated


def test_empty_series_is_rejected():
    r = validate_klines(KlineBatch.empty("X", "5m"), "5m", from_ms(T0))
    assert not r.ok


def test_real_sample_is_clean():
    b = sample_klines("ETHUSDT")
    r = validate_klines(b, "5m", _after(b))
    assert r.ok and len(r.batch) == len(b) and r.bad_rows == r.gaps == r.duplicates_dropped == 0


# ---- resample_klines ---------------------------------------------------------------------------

def test_resample_matches_pandas_on_real_data():
    d = sample_frame("BTCUSDT").iloc[:5000]
    b = sample_klines("BTCUSDT").slice(0, 5000)
    got = resample_klines(b, "1h")
    ref = d.set_index(pd.to_datetime(d["open_time"], unit="ms")).resample("1h", label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "open_time": "count"})
    ref = ref[ref["open_time"] == 12]
    assert len(got) == len(ref)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(got, name), ref[name].to_numpy(), rtol=1e-12)
    assert (got.open_time % 3_600_000 == 0).all()


def test_resample_drops_incomplete_buckets():
    b = make_batch(n=36, start_ms=T0 + FIVE)  # starts 5 minutes into the first 15m bucket
    holed = _take(b, [i for i in range(36) if i != 20])
    got = resample_klines(holed, "15m")
    # 13 buckets touched; incomplete: the first (2 candles), the one missing candle 20, the last (1 candle)
    assert len(got) == 10
    assert all(t % 900_000 == 0 for t in got.open_time)
    assert T0 not in got.open_time


# ---- universe ------------------------------------------------------------------------------------

def _service(source: FakeMarketData, clock: ManualClock, **kw) -> MarketDataService:
    args = dict(timeframes=["5m", "15m", "1h", "4h"], history=300, max_concurrency=4, universe_size=3,
                fixed_symbols=[], blacklist=[], min_quote_volume=Decimal("1000000"))
    args.update(kw)
    return MarketDataService(source, clock, **args)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(from_ms(T0 + 86_400_000 * 60 + 5_000))


async def test_universe_is_top_by_quote_volume_above_minimum(clock):
    src = FakeMarketData(clock)
    for s in ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"):
        src.symbol_info[s] = rules(s)
    src.tickers = [ticker("AAAUSDT", "5000000"), ticker("BBBUSDT", "9000000"), ticker("CCCUSDT", "500000"),
                   ticker("DDDUSDT", "7000000"), ticker("EEEUSDT", "6000000")]
    svc = _service(src, clock, universe_size=3)
    assert await svc.universe() == ["BBBUSDT", "DDDUSDT", "EEEUSDT"]
    svc4 = _service(src, clock, universe_size=10)
    assert await svc4.universe() == ["BBBUSDT", "DDDUSDT", "EEEUSDT", "AAAUSDT"]  # CCC below the minimum


async def test_universe_skips_blacklisted_and_untradable(clock):
    src = FakeMarketData(clock)
    src.symbol_info = {"AAAUSDT": rules("AAAUSDT"), "BBBUSDT": rules("BBBUSDT", status="SETTLING"),
                       "CCCUSDT": rules("CCCUSDT", contract_type="CURRENT_QUARTER"),
                       "DDDUSDT": rules("DDDUSDT"), "EEEUSDC": rules("EEEUSDC", quote="USDC"),
                       "FFFUSDT": rules("FFFUSDT")}
    src.tickers = [ticker(s, "9000000") for s in src.symbol_info] + [ticker("GGGUSDT", "9900000")]
    svc = _service(src, clock, universe_size=10, blacklist=["DDDUSDT"])
    assert await svc.universe() == ["AAAUSDT", "FFFUSDT"]  # GGG has no rules: unknown


async def test_fixed_symbols_are_validated_and_keep_their_order(clock):
    src = FakeMarketData(clock)
    src.symbol_info = {"ETHUSDT": rules("ETHUSDT"), "BTCUSDT": rules("BTCUSDT"),
                       "OLDUSDT": rules("OLDUSDT", status="BREAK")}
    svc = _service(src, clock, fixed_symbols=["ETHUSDT", "NOPEUSDT", "OLDUSDT", "BTCUSDT"])
    assert await svc.universe() == ["ETHUSDT", "BTCUSDT"]
    assert src.ticker_calls == 0


async def test_universe_is_cached_for_its_ttl(clock):
    src = FakeMarketData(clock)
    src.symbol_info = {"AAAUSDT": rules("AAAUSDT"), "BBBUSDT": rules("BBBUSDT")}
    src.tickers = [ticker("AAAUSDT", "5000000")]
    svc = _service(src, clock, universe_ttl_seconds=3600)
    assert await svc.universe() == ["AAAUSDT"]
    src.tickers = [ticker("BBBUSDT", "5000000")]
    clock.advance(timedelta(minutes=59))
    assert await svc.universe() == ["AAAUSDT"]
    assert src.ticker_calls == 1
    clock.advance(timedelta(minutes=2))
    assert await svc.universe() == ["BBBUSDT"]
    assert src.ticker_calls == 2


async def test_universe_keeps_previous_when_refresh_fails(clock):
    src = FakeMarketData(clock)
    src.symbol_info = {"AAAUSDT": rules("AAAUSDT")}
    src.tickers = [ticker("AAAUSDT", "5000000")]
    svc = _service(src, clock, universe_ttl_seconds=60)
    assert await svc.universe() == ["AAAUSDT"]

    async def broken() -> list:
        raise ExchangeError("server error", code=-1001)

    src.tickers_24h = broken  # type: ignore[method-assign]
    clock.advance(timedelta(minutes=5))
    assert await svc.universe() == ["AAAUSDT"]
    fresh = _service(src, clock)
    with pytest.raises(ExchangeError):
        await fresh.universe()


# ---- snapshot and cache ------------------------------------------------------------------------------

TFS = ("5m", "15m", "1h", "4h")


def _real_source(clock: ManualClock, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")) -> FakeMarketData:
    src = FakeMarketData(clock)
    for s in symbols:
        for tf in TFS:
            src.add(sample_klines(s, tf))
    return src


async def test_first_snapshot_fetches_history_and_validates_every_frame(clock):
    src = _real_source(clock)
    svc = _service(src, clock)
    snap = await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert snap.rejected == {}
    assert snap.symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert snap.stats.requests == 12 and snap.stats.full_fetches == 12
    assert all(limit is None for _, _, limit, _ in src.calls)
    now_ms = int(clock.now().timestamp() * 1000)
    for s in snap.symbols:
        for tf in TFS:
            b = snap.frames[s][tf]
            assert len(b) == 300
            expect = window(sample_klines(s, tf), now_ms, 300)
            np.testing.assert_array_equal(b.open_time, expect.open_time)
            np.testing.assert_array_equal(b.close, expect.close)


async def test_warm_snapshot_fetches_only_new_candles(clock):
    src = _real_source(clock)
    svc = _service(src, clock)
    cold = await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    clock.advance(timedelta(minutes=5))
    src.calls.clear()
    warm = await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    # only 5m closed a new candle: one request per symbol, from the last cached candle (inclusive)
    assert warm.stats.requests == 3 and warm.stats.cache_hits == 9 and warm.stats.incremental_fetches == 3
    assert {(s, tf) for s, tf, _, _ in src.calls} == {(s, "5m") for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
    for s, _, start, n in src.calls:
        assert start == int(cold.frames[s]["5m"].open_time[-1])
        assert n == 3  # refreshed last + the new closed one + the forming one
    assert warm.stats.candles_fetched == 9 < cold.stats.candles_fetched == 12 * 301
    now_ms = int(clock.now().timestamp() * 1000)
    for s in warm.symbols:
        for tf in TFS:
            expect = window(sample_klines(s, tf), now_ms, 300)
            np.testing.assert_array_equal(warm.frames[s][tf].open_time, expect.open_time)
            np.testing.assert_array_equal(warm.frames[s][tf].close, expect.close)


async def test_warm_scans_request_only_the_base_timeframe(clock):
    src = _real_source(clock, ("BTCUSDT",))
    svc = _service(src, clock)
    await svc.snapshot(["BTCUSDT"])
    src.calls.clear()
    for _ in range(48):  # four hours of 5-minute scans
        clock.advance(timedelta(minutes=5))
        snap = await svc.snapshot(["BTCUSDT"])
        assert snap.rejected == {}
    per_tf = {tf: sum(1 for _, t, _, _ in src.calls if t == tf) for tf in TFS}
    # once warm, newly closed 15m/1h/4h candles are built from the cached 5m candles: no request at all
    assert per_tf == {"5m": 48, "15m": 0, "1h": 0, "4h": 0}
    assert svc.stats.requests == 4 + 48
    assert svc.stats.derived == 16 + 4 + 1
    # and they are exactly the candles the exchange itself serves
    for tf in ("15m", "1h", "4h"):
        mine = snap.frames["BTCUSDT"][tf]
        served = await src.klines("BTCUSDT", tf, limit=400)
        served = served.slice(0, int(np.searchsorted(served.open_time, mine.open_time[-1])) + 1)  # closed only
        assert np.array_equal(mine.open_time, served.open_time[-len(mine):])
        for field in ("open", "high", "low", "close", "volume"):
            assert np.allclose(getattr(mine, field), getattr(served, field)[-len(mine):], rtol=1e-12), (tf, field)


async def test_cache_refetches_in_full_after_a_long_absence(clock):
    src = _real_source(clock, ("BTCUSDT",))
    svc = _service(src, clock, timeframes=["5m"])
    await svc.snapshot(["BTCUSDT"])
    clock.advance(timedelta(days=2))
    src.calls.clear()
    snap = await svc.snapshot(["BTCUSDT"])
    assert src.calls[0][2] is None and snap.stats.full_fetches == 1
    assert len(snap.frames["BTCUSDT"]["5m"]) == 300


async def test_cached_arrays_are_read_only(clock):
    src = _real_source(clock, ("BTCUSDT",))
    svc = _service(src, clock, timeframes=["5m"])
    snap = await svc.snapshot(["BTCUSDT"])
    with pytest.raises(ValueError):
        snap.frames["BTCUSDT"]["5m"].close[0] = 1.0


async def test_failing_symbol_is_rejected_and_the_rest_survive(clock):
    src = _real_source(clock)
    src.fail["ETHUSDT"] = ExchangeError("Service unavailable", code=-1001)
    src.fail["SOLUSDT"] = RuntimeError("boom")
    svc = _service(src, clock)
    snap = await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT", "NOPEUSDT"])
    assert snap.symbols == ["BTCUSDT"]
    assert set(snap.rejected) == {"ETHUSDT", "SOLUSDT", "NOPEUSDT"}
    assert "exchange error" in snap.rejected["ETHUSDT"]
    assert "unexpected error" in snap.rejected["SOLUSDT"]
    assert snap.aborted is None


async def test_rate_limit_stops_the_remaining_requests(clock):
    src = _real_source(clock)
    src.fail["BTCUSDT"] = RateLimited("Too many requests", code=-1003, retry_after=30)
    svc = _service(src, clock, max_concurrency=1)
    snap = await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert snap.frames == {}
    assert snap.aborted is not None
    assert snap.stats.requests == 1
    assert set(snap.rejected) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}


async def test_broken_data_rejects_only_that_symbol_and_is_refetched_later(clock):
    src = _real_source(clock, ("BTCUSDT", "ETHUSDT"))
    eth = sample_klines("ETHUSDT", "1h")
    now_ms = int(clock.now().timestamp() * 1000)
    holed = _take(eth, np.flatnonzero(eth.open_time != now_ms - 5_000 - 20 * 3_600_000 - 3_600_000))
    src.add(holed)
    svc = _service(src, clock)
    snap = await svc.snapshot(["BTCUSDT", "ETHUSDT"])
    assert snap.symbols == ["BTCUSDT"]
    assert snap.rejected["ETHUSDT"].startswith("1h: only 20 contiguous")
    assert svc.cached("ETHUSDT", "1h") is None
    src.add(eth)  # the exchange fills the hole
    clock.advance(timedelta(minutes=5))
    snap = await svc.snapshot(["BTCUSDT", "ETHUSDT"])
    assert snap.symbols == ["BTCUSDT", "ETHUSDT"]


async def test_concurrency_is_bounded_by_the_semaphore(clock):
    src = _real_source(clock)
    svc = _service(src, clock, max_concurrency=2)
    await svc.snapshot(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    assert src.max_in_flight == 2


def test_history_must_fit_the_binance_limit(clock):
    with pytest.raises(ValueError):
        _service(FakeMarketData(clock), clock, history=1501)


def test_built_from_settings(clock):
    from settings import load_settings

    s = load_settings(env_file=None, symbols="ETHUSDT,BTCUSDT", blacklist="XRPUSDT", timeframes="1h,5m",
                      kline_history=500, max_concurrent_requests=3)
    svc = MarketDataService.from_settings(FakeMarketData(clock), clock, s)
    assert svc.timeframes == ("5m", "1h")
    assert svc.history == 500 and svc.fixed_symbols == ("ETHUSDT", "BTCUSDT")
    assert svc.blacklist == frozenset({"XRPUSDT"})
    assert svc.min_quote_volume == s.min_quote_volume_usdt
