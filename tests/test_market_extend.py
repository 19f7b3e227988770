"""engine.market.extend_validated: extending a validated series checks only the new rows, and says exactly what
``validate_klines`` of the whole series says, or hands the case back (``None``) for the full check."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from core.clock import from_ms
from core.intervals import interval_ms
from engine.exchange.types import KlineBatch
from engine.market import ValidationResult, extend_validated, validate_klines
from tests.helpers_market import make_batch

IV = interval_ms("5m")
COLS = ("open_time", "open", "high", "low", "close", "volume")


def _rows(batch: KlineBatch, start: int, stop: int) -> KlineBatch:
    return KlineBatch(batch.symbol, batch.interval, *(getattr(batch, n)[start:stop].copy() for n in COLS))


def _same(a: ValidationResult, b: ValidationResult) -> None:
    for f in fields(ValidationResult):
        if f.name != "batch":
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    for n in COLS:
        assert np.array_equal(getattr(a.batch, n), getattr(b.batch, n)), n
        assert getattr(a.batch, n).dtype == getattr(b.batch, n).dtype


def _case(valid: KlineBatch, added: KlineBatch, now_ms: int, **kw: int) -> ValidationResult | None:
    merged = KlineBatch(valid.symbol, valid.interval, *(np.concatenate((getattr(valid, n), getattr(added, n)))
                                                        for n in COLS))
    full = validate_klines(merged, "5m", from_ms(now_ms), **kw)
    fast = extend_validated(valid, added, from_ms(now_ms), **kw)
    if fast is not None:
        _same(fast, full)
    return fast


def test_the_scan_step_is_handled_and_equals_the_full_check():
    series = make_batch(n=400)
    valid = validate_klines(_rows(series, 0, 300), "5m", from_ms(int(series.open_time[300]))).batch
    refreshed = _rows(series, 299, 302)  # the last cached candle again, one new closed, one forming
    refreshed.close[0] *= 1.0005  # Binance may restate the last candle: the received one wins
    refreshed.high[0] = max(refreshed.high[0], refreshed.close[0])
    now_ms = int(series.open_time[301]) + 5_000
    fast = _case(valid, refreshed, now_ms)
    assert fast is not None and fast.ok and fast.duplicates_dropped == 1 and fast.forming_dropped == 1
    assert len(fast.batch) == 301 and fast.batch.close[299] == refreshed.close[0]
    assert _case(valid, _rows(series, 300, 302), now_ms) is not None  # derived candles: no overlap


@pytest.mark.parametrize("seed", range(40))
def test_random_extensions_agree_with_the_full_check_or_are_handed_back(seed: int):
    rng = np.random.default_rng(seed)
    series = make_batch(n=200)
    cut = int(rng.integers(60, 190))
    valid = validate_klines(_rows(series, 0, cut), "5m", from_ms(int(series.open_time[cut]))).batch
    start = cut - int(rng.integers(0, 2))
    added = _rows(series, start, min(200, start + int(rng.integers(1, 6))))
    broken = int(rng.integers(0, 7))
    k = int(rng.integers(0, len(added)))
    if broken == 1:
        added.high[k] = added.low[k] * 0.5  # OHLC violation
    elif broken == 2:
        added.volume[k] = np.nan
    elif broken == 3:
        added.open_time[k] += IV * 3  # a gap or disorder
    elif broken == 4:
        added.volume[-1] = 0.0
        added.volume[max(0, len(added) - 2)] = 0.0
    now_ms = int(added.open_time[0]) + IV * int(rng.integers(0, 6)) + int(rng.integers(0, IV))
    fast = _case(valid, added, now_ms, min_candles=int(rng.integers(1, 250)), max_zero_volume_run=2)
    if broken in (1, 2) and int(added.open_time[k]) + IV <= now_ms:
        assert fast is None
