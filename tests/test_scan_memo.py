"""strategies.scanner.ScanMemo: a context is recomputed only when its stop-timeframe batch changes, and is the
same as computed afresh."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.exchange.types import KlineBatch
from engine.market import MarketSnapshot, _freeze
from strategies.consensus import Consensus
from strategies.scanner import ScanMemo, evaluate_snapshot
from strategies.technical import TrendMomentumVoter
from tests.helpers_market import sample_klines, window

END_MS = 1_743_000_000_000


def _frames(symbol: str, end_ms: int) -> dict[str, KlineBatch]:
    return {tf: _freeze(window(sample_klines(symbol, tf), end_ms, 300)) for tf in ("5m", "15m", "1h", "4h")}


def test_contexts_are_reused_while_the_stop_batch_is_unchanged_and_equal_fresh_ones():
    consensus = Consensus([TrendMomentumVoter()])
    memo = ScanMemo()
    frames = {s: _frames(s, END_MS) for s in ("BTCUSDT", "ETHUSDT")}
    first = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), frames, {}), consensus, stop_timeframe="1h", memo=memo)
    fresh = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), frames, {}), consensus, stop_timeframe="1h")
    assert first.context("BTCUSDT") == fresh.context("BTCUSDT")
    later = {s: {**f, "5m": _frames(s, END_MS + 300_000)["5m"]} for s, f in frames.items()}  # a 5m candle later
    second = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), later, {}), consensus, stop_timeframe="1h", memo=memo)
    assert second.context("BTCUSDT") is first.context("BTCUSDT")  # same 1h batch object: not recomputed
    moved = {s: _frames(s, END_MS + 3_600_000) for s in frames}  # an hour later: a new 1h batch
    third = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), moved, {}), consensus, stop_timeframe="1h", memo=memo)
    again = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), moved, {}), consensus, stop_timeframe="1h")
    assert third.context("BTCUSDT") is not first.context("BTCUSDT")
    assert third.context("BTCUSDT") == again.context("BTCUSDT")


def test_writable_batches_are_not_remembered():
    memo = ScanMemo()
    batch = window(sample_klines("BTCUSDT", "1h"), END_MS, 300)  # writable arrays: someone may change them
    assert memo.context("BTCUSDT", batch, 25.0) is not memo.context("BTCUSDT", batch, 25.0)
    frozen = _freeze(batch)
    assert memo.context("BTCUSDT", frozen, 25.0) is memo.context("BTCUSDT", frozen, 25.0)


def test_features_of_unchanged_batches_are_reused_and_equal_fresh_ones():
    consensus = Consensus([TrendMomentumVoter()])
    memo = ScanMemo()
    frames = {s: _frames(s, END_MS) for s in ("BTCUSDT", "ETHUSDT")}
    first = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), frames, {}), consensus, memo=memo)
    later = {s: {**f, "5m": _frames(s, END_MS + 300_000)["5m"]} for s, f in frames.items()}
    second = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), later, {}), consensus, memo=memo)
    fresh = evaluate_snapshot(MarketSnapshot(datetime.now(UTC), later, {}), consensus)
    for symbol in later:
        assert second.features[symbol] == fresh.features[symbol]
        assert second.signals[symbol] == fresh.signals[symbol]
        assert second.features[symbol]["4h"] is first.features[symbol]["4h"]  # not recomputed
        assert second.features[symbol]["5m"] is not first.features[symbol]["5m"]
