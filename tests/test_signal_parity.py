"""Signal parity: row t of the vectorised signal table equals what the live scan computes at t.

The live side is the live code path: ``MarketDataService`` (built by the composition root from Settings) over
``HistoricalMarket`` with a ``ManualClock``, as the replay drives it, then ``evaluate_snapshot`` with the live
``Consensus``. Scans run in short consecutive bursts so the service's cache paths (full fetch, incremental,
higher timeframes derived from cached 5m candles) are all exercised. At each sampled t:

- the symbol is in the scan exactly when the row is ``valid`` (rejections by validation: gaps, zero volume,
  short tails; skips for too few candles);
- every feature of every timeframe agrees to 1e-9 relative (window open time and length exactly);
- the votes (voter, direction, reason) and the signal direction are identical, the confidences and score
  equal to 1e-12, the stop ATR and price equal; the table's arrays agree with its own ``signal_at``;
- the context (ADX, ATR % history, returns, ATR ratio) agrees.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.runtime import build_consensus, build_market_service
from core.clock import ManualClock, from_ms, to_ms
from engine.exchange.historical import HistoricalMarket
from engine.exchange.types import KlineBatch
from settings import Settings
from strategies.features import Features, compute_features
from strategies.scanner import SymbolContext, evaluate_snapshot
from strategies.signal_table import SignalConfig, SymbolSignals, build_signal_tables, build_symbol_signals
from strategies.types import Signal
from strategies.windowed import FLOAT_FEATURES
from tests.trading_fixtures import make_settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "data" / "binance-futures"
STEP_MS = 300_000
DAY = 288  # 5m rows per day

needs_shared = pytest.mark.skipif(not (SHARED / "ETHUSDT-5m.csv.gz").exists(),
                                  reason=f"the shared real-data folder {SHARED} is absent (only in the dev setup)")


# ---- the live side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveScan:
    open_ms: int
    signal: Signal | None
    features: Features | None
    context: SymbolContext | None
    rejected: str | None


async def live_scans(data_dir: Path, symbol: str, bursts: list[int], *, length: int = 3,
                     **overrides: object) -> list[LiveScan]:
    """The live scan of ``symbol`` right after each 5m candle ``open_ms + k * 5m`` closed, ``k < length``, for
    each ``open_ms`` in ``bursts`` (ascending), through one service and cache, as the trader does."""
    settings = make_settings(symbols=[symbol], universe_size=1, **overrides)
    times = sorted({b + k * STEP_MS for b in bursts for k in range(length)})
    clock = ManualClock(from_ms(times[0]))
    market = HistoricalMarket(data_dir, clock, [symbol])
    service = build_market_service(settings, market, clock)
    consensus = build_consensus(settings)
    out = []
    for t in times:
        clock.set(from_ms(t + STEP_MS) + timedelta(seconds=settings.scan_delay_seconds))
        snapshot = await service.snapshot([symbol])
        result = evaluate_snapshot(snapshot, consensus, stop_timeframe=settings.stop_atr_timeframe)
        frames = snapshot.frames.get(symbol)
        out.append(LiveScan(t, result.signals.get(symbol), compute_features(frames) if symbol in result.signals
                            else None, result.context(symbol), snapshot.rejected.get(symbol)))
    return out


def read_history(data_dir: Path, symbol: str) -> KlineBatch:
    """The raw rows of a kline file, as read (unsorted, duplicates and all): the table normalises them as
    ``HistoricalMarket`` does, and the parity below shows it."""
    df = pd.read_csv(data_dir / f"{symbol}-5m.csv.gz", dtype={"open_time": "int64", "open": "float64",
                     "high": "float64", "low": "float64", "close": "float64", "volume": "float64"})
    return KlineBatch(symbol, "5m", df["open_time"].to_numpy(np.int64),
                      *(df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")))


def table_for(data_dir: Path, symbols: list[str], **overrides: object) -> dict[str, SymbolSignals]:
    settings = make_settings(symbols=symbols, universe_size=len(symbols), **overrides)
    return build_signal_tables({s: read_history(data_dir, s) for s in symbols}, build_consensus(settings),
                               SignalConfig.from_settings(settings), keep_features=True)


# ---- comparison ------------------------------------------------------------------------------------------

def _close(a: float, b: float, rel: float = 1e-9, scale: float = 0.0) -> bool:
    if np.isnan(a) and np.isnan(b):
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b), scale)


#: Features that are small differences of price-level values (EMA gaps, MACD): compared to 1e-9 of the
#: price / ATR they are measured against, since near zero their own relative error grows.
PRICE_DIFFS = {"macd", "macd_signal", "macd_hist", "macd_hist_prev"}
ATR_UNITS = {"ema_fast_slope", "trend", "extension"}


def assert_row_equals_live(table: SymbolSignals, live: LiveScan) -> None:
    when = f"{table.symbol} scan after {from_ms(live.open_ms):%Y-%m-%d %H:%M}"
    row = table.row_at(live.open_ms)
    assert (row is not None) == (live.signal is not None), f"{when}: table row {row}, live rejected: {live.rejected}"
    try:
        own = table.index_of(live.open_ms)
    except KeyError:  # no candle at this time (a data gap): the scan reuses the previous row or leaves it out
        own = None
    else:
        assert row in (own, None) and bool(table.valid[own]) == (row is not None)
        if row is None:
            assert table.direction[own] == 0 and table.signal_at(own) is None and table.context_at(own) is None
    if row is None or live.signal is None:
        return
    i = row
    where = f"{when} (row {i})"
    assert live.features is not None and live.context is not None
    mine = table.features_at(i)
    assert mine is not None and mine.timeframes == live.features.timeframes
    for tf in mine.timeframes:
        a, b = live.features[tf], mine[tf]
        assert (a.open_time, a.candles) == (b.open_time, b.candles), f"{where} {tf}: window differs"
        for name in FLOAT_FEATURES:
            x, y = getattr(a, name), getattr(b, name)
            scale = a.close if name in PRICE_DIFFS else 1.0 if name in ATR_UNITS else 0.0
            assert _close(x, y, 1e-9, scale * 1e-3), f"{where} {tf}.{name}: live {x!r} table {y!r}"
    sig = table.signal_at(i)
    assert sig is not None
    assert [(v.voter, v.direction, v.reason) for v in sig.votes] == \
           [(v.voter, v.direction, v.reason) for v in live.signal.votes], where
    for mv, lv in zip(sig.votes, live.signal.votes, strict=True):
        assert _close(mv.confidence, lv.confidence, 1e-12), where
    assert sig.direction == live.signal.direction, where
    assert _close(sig.score, live.signal.score, 1e-12) and _close(sig.atr, live.signal.atr)
    assert sig.price == live.signal.price and sig.symbol == live.signal.symbol
    # the arrays the fast engine reads are the same signal
    assert table.direction[i] == int(sig.direction) and table.score[i] == sig.score
    assert table.atr[i] == sig.atr and table.price[i] == sig.price
    assert _close(float(table.stop_atr[i]), live.features[table.config.stop].atr, 1e-12)
    ctx = table.context_at(i)
    assert ctx is not None
    assert _close(ctx.adx, live.context.adx) and table.adx[i] == ctx.adx
    assert ctx.returns == live.context.returns, where
    assert len(ctx.atr_pct_history) == len(live.context.atr_pct_history), where
    np.testing.assert_allclose(ctx.atr_pct_history, live.context.atr_pct_history, rtol=1e-10, atol=0)
    ratio = live.context.atr_ratio
    assert (ratio is None and np.isnan(table.atr_ratio[i])) or _close(float(table.atr_ratio[i]), ratio)


async def check(data_dir: Path, table: SymbolSignals, bursts: list[int], *, length: int = 3,
                **overrides: object) -> tuple[int, int]:
    scans = await live_scans(data_dir, table.symbol, bursts, length=length, **overrides)
    for scan in scans:
        assert_row_equals_live(table, scan)
    present = sum(s.signal is not None for s in scans)
    return present, sum(1 for s in scans if s.signal is not None and s.signal.direction != 0)


def random_bursts(table: SymbolSignals, n: int, seed: int, *, lo: int = 0, hi: int | None = None) -> list[int]:
    rng = np.random.default_rng(seed)
    hi = len(table) - 3 if hi is None else hi
    rows = np.unique(rng.integers(lo, hi, n))
    return [int(table.open_ms[r]) for r in rows]


def around(table: SymbolSignals, rows: list[int], before: int = 2) -> list[int]:
    return [int(table.open_ms[max(0, r - before)]) for r in rows]


def first_valid_after(table: SymbolSignals, row: int) -> int:
    return row + int(np.argmax(table.valid[row:]))


# ---- the bundled sample (always runs) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_tables() -> dict[str, SymbolSignals]:
    return table_for(SAMPLE, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
async def test_sample_rows_equal_the_live_scan(sample_tables, symbol):
    table = sample_tables[symbol]
    start_ok = first_valid_after(table, 0)
    assert start_ok == 60 * 48 - 1  # 60 closed 4h candles are needed: 10 days of 5m rows, less one
    bursts = random_bursts(table, 30, seed=len(symbol), lo=start_ok) + around(table, [start_ok])
    present, directional = await check(SAMPLE, table, sorted(bursts))
    assert present >= 80 and directional >= 1  # the sample has real LONG/SHORT rows among the checked ones


async def test_the_history_start_is_rejected_as_live(sample_tables):
    table = sample_tables["BTCUSDT"]
    await check(SAMPLE, table, [int(table.open_ms[r]) for r in (0, 60, 11 * 12 * 4 + 5, 2870)], length=2)


async def test_a_smaller_configuration(sample_tables):
    overrides = dict(timeframes=["5m", "1h"], kline_history=90, stop_atr_timeframe="15m", entry_threshold=0.55)
    table = table_for(SAMPLE, ["SOLUSDT"], **overrides)["SOLUSDT"]
    assert first_valid_after(table, 0) == 60 * 12 - 1
    await check(SAMPLE, table, sorted(random_bursts(table, 25, seed=3) + around(table, [60 * 12 - 1])),
                **overrides)


#: Every local voter, with a low score threshold so that the consensus also goes LONG/SHORT now and then.
FULL_PANEL = dict(voters=["trend_momentum", "trend_following", "mean_reversion", "breakout"], entry_threshold=0.25)


@pytest.mark.slow  # its own full-panel table of the ETH sample plus ~300 live scans
async def test_a_panel_of_all_four_voters():
    """The full panel: sampled rows plus, for each voter, rows where it votes LONG or SHORT (the rarer rules
    would hardly show up among random rows) — votes, reasons, confidences and the consensus equal the live scan."""
    table = table_for(SAMPLE, ["ETHUSDT"], **FULL_PANEL)["ETHUSDT"]
    assert [v.name for v in table.consensus.voters] == FULL_PANEL["voters"]
    rng = np.random.default_rng(17)
    picks: list[int] = []
    for voter in table.consensus.voters:
        direction, _ = voter.vote_arrays(table)  # type: ignore[attr-defined]
        voting = np.flatnonzero((direction != 0) & table.valid)
        assert len(voting) > 10, voter.name
        picks += rng.choice(voting, 12, replace=False).tolist()
    bursts = random_bursts(table, 40, seed=8, lo=first_valid_after(table, 0)) + around(table, picks, before=1)
    present, directional = await check(SAMPLE, table, sorted(set(bursts)), **FULL_PANEL)
    assert present >= 200 and directional >= 10


async def test_the_default_panel():
    """The default panel (issue 9's walk-forward choice: three voters at 0.7) goes LONG/SHORT on 25 of SOLUSDT's
    sample rows: every one of them, and random rows, equal the live scan."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    panel = dict(voters=settings.voters, entry_threshold=settings.entry_threshold)
    table = table_for(SAMPLE, ["SOLUSDT"], **panel)["SOLUSDT"]
    directional_rows = np.flatnonzero(table.direction != 0).tolist()
    assert len(directional_rows) == 25
    bursts = random_bursts(table, 20, seed=5, lo=first_valid_after(table, 0)) + around(table, directional_rows, 1)
    present, directional = await check(SAMPLE, table, sorted(set(bursts)), **panel)
    assert directional >= 25 and present >= 60


def test_rows_are_causal(sample_tables):
    """A table built on a prefix of the history has the very same rows: nothing after a row reaches it."""
    full = sample_tables["ETHUSDT"]
    settings = make_settings()
    cut = 20_000
    base = read_history(SAMPLE, "ETHUSDT").slice(0, cut)
    prefix = build_symbol_signals(base, build_consensus(settings), SignalConfig.from_settings(settings),
                                  keep_features=True)
    for name in ("valid", "direction", "score", "atr", "price", "adx", "atr_ratio"):
        np.testing.assert_array_equal(getattr(prefix, name), getattr(full, name)[:cut], err_msg=name)
    for tf in ("5m", "4h"):
        for name in ("ema_slow", "adx", "macd_hist", "volume_z"):
            np.testing.assert_array_equal(prefix.column(tf, name), full.column(tf, name)[:cut])


async def test_the_lean_table_has_the_same_arrays_and_the_live_objects(sample_tables):
    """Without kept features (the backtest's choice) the arrays are the same, and ``signal_at`` /
    ``context_at`` are the live code on the row's windows: equal to the live scan to the bit."""
    kept = sample_tables["SOLUSDT"]
    settings = make_settings()
    lean = build_symbol_signals(read_history(SAMPLE, "SOLUSDT"), build_consensus(settings),
                                SignalConfig.from_settings(settings))
    for name in ("valid", "direction", "score", "atr", "price", "adx", "atr_ratio"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(kept, name), err_msg=name)
    with pytest.raises(ValueError, match="keep_features"):
        lean.column("5m", "rsi")
    for scan in await live_scans(SAMPLE, "SOLUSDT", random_bursts(lean, 15, seed=5)):
        i = lean.row_at(scan.open_ms)
        assert (i is None) == (scan.signal is None)
        if i is not None:
            assert lean.signal_at(i) == replace(scan.signal)
            assert lean.features_at(i) == scan.features
            ctx, live = lean.context_at(i), scan.context
            assert ctx is not None and live is not None
            assert ctx.atr_pct_history == live.atr_pct_history and ctx.returns == live.returns


def test_signal_at_agrees_with_the_arrays_on_every_directional_row(sample_tables):
    for table in sample_tables.values():
        rows = np.flatnonzero(table.direction != 0)
        assert len(rows) > 100
        for i in rows[::5]:
            sig = table.signal_at(int(i))
            assert sig is not None and int(sig.direction) == table.direction[i] and sig.score == table.score[i]


# ---- hand-made damage on real candles: gaps, bad candles, halted market, duplicates -------------------------

EVENTS = {"gap": 12 * DAY + 7, "bad": 24 * DAY + 100, "halt": 36 * DAY + 50, "nan": 48 * DAY + 3}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    """BTC sample candles with a 7-candle gap, an OHLC violation, a 14-candle flat zero-volume halt, a NaN
    close, and the file shuffled with duplicated rows (the reader sorts and keeps the last)."""
    folder = tmp_path_factory.mktemp("damaged")
    df = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz").iloc[:60 * DAY].copy()
    df.loc[EVENTS["bad"], "high"] = df.loc[EVENTS["bad"], "low"] * 0.999
    h = EVENTS["halt"]
    flat = df.loc[h - 1, "close"]
    df.loc[h:h + 13, ["open", "high", "low", "close"]] = flat
    df.loc[h:h + 13, "volume"] = 0.0
    df.loc[EVENTS["nan"], "close"] = np.nan
    df = df.drop(index=range(EVENTS["gap"], EVENTS["gap"] + 7))
    dupes = df.sample(50, random_state=1)
    df = pd.concat([df.sample(frac=1.0, random_state=2), dupes])
    with gzip.open(folder / "BTCUSDT-5m.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    shutil.copy(SAMPLE / "exchange_info.json", folder / "exchange_info.json")
    (folder / "leverage_brackets.json").write_text(json.dumps({"symbols": [], "default": []}))
    return folder


async def test_damaged_history_rows_equal_the_live_scan(damaged):
    table = table_for(damaged, ["BTCUSDT"])["BTCUSDT"]
    original = pd.read_csv(SAMPLE / "BTCUSDT-5m.csv.gz")["open_time"]
    rows = []
    for name, r in EVENTS.items():
        at = int(np.searchsorted(table.open_ms, int(original[r])))
        assert (name == "halt") == bool(table.valid[at]), name  # the gap, a bad or NaN candle: left out
        back = first_valid_after(table, at + 1)
        rows += [at - 3, at, at + 12, at + 300, back - 2]
    missing = int(original[EVENTS["gap"]])  # the first candle of the gap: the live scan tolerates one behind
    assert table.row_at(missing) == int(np.searchsorted(table.open_ms, missing)) - 1
    assert table.row_at(missing + STEP_MS) is None
    halt = int(np.searchsorted(table.open_ms, int(original[EVENTS["halt"]])))
    assert table.valid[halt + 10] and not table.valid[halt + 11] and not table.valid[halt + 13]
    assert table.valid[halt + 14]
    rows += [halt + 9, halt + 299, halt + 305]  # windows that start inside the flat halt
    bursts = sorted({int(table.open_ms[r]) for r in rows if 0 <= r < len(table) - 4})
    present, _ = await check(damaged, table, bursts, length=4)
    assert present > 20


# ---- the shared real data: the ETHUSDT gap, the 2024-10-28 halt, other periods ----------------------------

def _ms(text: str) -> int:
    return to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def shared_table(symbol: str, start: str | None = None, end: str | None = None) -> SymbolSignals:
    """The table of a shared-data symbol, from ``start`` (a window reaches back at most 300 4h candles, 50 days:
    rows more than 50 days after ``start`` are the rows of the full-history table) to ``end``."""
    settings = make_settings(symbols=[symbol], universe_size=1)
    history = read_history(SHARED, symbol)
    lo = 0 if start is None else int(np.searchsorted(history.open_time, _ms(start)))
    hi = len(history) if end is None else int(np.searchsorted(history.open_time, _ms(end)))
    return build_symbol_signals(history.slice(lo, hi), build_consensus(settings), SignalConfig.from_settings(settings),
                                keep_features=True)


@pytest.fixture(scope="module")
def shared_tables() -> dict[str, SymbolSignals]:
    return {"ETHUSDT": shared_table("ETHUSDT", "2024-03-20T00:00", "2025-02-01T00:00"),
            "BTCUSDT": shared_table("BTCUSDT", "2024-09-01T00:00", "2024-11-15T00:00")}


@needs_shared
async def test_around_the_ethusdt_gap(shared_tables):
    table = shared_tables["ETHUSDT"]
    last = table.index_of(_ms("2024-05-14T15:40"))
    resumed = last + 1
    assert int(table.open_ms[resumed]) - int(table.open_ms[last]) > 200 * 86_400_000
    back = first_valid_after(table, resumed)
    assert back - resumed == 60 * 48 - 1  # ten days of 4h candles before the symbol is scanned again
    assert not table.valid[resumed:back].any() and table.valid[last]
    bursts = [*around(table, [last, resumed, back, back + 300], before=3), int(table.open_ms[last])]
    await check(SHARED, table, sorted(set(bursts)), length=5)


@needs_shared
async def test_around_the_btcusdt_halt(shared_tables):
    table = shared_tables["BTCUSDT"]
    first_zero = table.index_of(_ms("2024-10-28T20:00"))
    assert not table.valid[first_zero + 11] and table.valid[first_zero + 10] and table.valid[first_zero + 14]
    await check(SHARED, table, [int(table.open_ms[first_zero + 8])], length=9)
    await check(SHARED, table, around(table, [first_zero + 300]), length=4)


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
async def test_many_rows_of_the_shared_history(symbol):
    table = shared_table(symbol)  # the whole history
    present, directional = await check(SHARED, table, sorted(random_bursts(table, 150, seed=11)))
    assert present > 300 and directional > 5


@pytest.mark.slow
def test_every_row_of_a_month_equals_the_live_code_on_its_windows():
    """Every scanned row of February 2025 (the 2025-02-03 crash included): the vectorised direction, score,
    ATR and price equal ``Consensus.decide`` + ``evaluate_snapshot``'s ATR choice run on the row's windows
    (the windows themselves are the live ones: see the tests above)."""
    settings = make_settings()
    consensus = build_consensus(settings)
    table = build_symbol_signals(read_history(SAMPLE, "BTCUSDT"), consensus, SignalConfig.from_settings(settings))
    rows = np.flatnonzero(table.valid & (table.open_ms >= _ms("2025-02-01T00:00"))
                          & (table.open_ms < _ms("2025-03-01T00:00")))
    assert len(rows) == 28 * DAY
    for i in rows:
        features = compute_features(table.windows_at(int(i)))
        live = consensus.decide("BTCUSDT", features)
        stop = features[settings.stop_atr_timeframe]
        assert int(live.direction) == table.direction[i], i
        assert _close(live.score, float(table.score[i]), 1e-12) and _close(stop.atr, float(table.atr[i]), 1e-12)
        assert _close(stop.atr, float(table.stop_atr[i]), 1e-12)
        assert live.price == table.price[i]
    assert np.count_nonzero(table.direction[rows]) > 100
