"""The ML voter's training data: the exact live features (signal tables with ``keep_features``) and the triple-barrier
labels of Vigil's own stop and take-profit, one row per symbol and sampled 5m candle.

Row ``i`` of a symbol is the scan right after its 5m candle ``i`` closed: the inputs are
``ml_voter.matrix_from_columns``
on the table's kept feature columns (what ``MLVoter.vote`` computes live at that scan), the labels are those of an
entry at that candle's close with the stop sized on the stop timeframe's ATR the scan sees. Rows the live scan would
leave out (invalid windows) and rows without a label (the horizon runs past the data or across a gap) are dropped.
Sampling keeps the candles whose open time is a multiple of ``stride`` × 5 minutes (the same candles whatever the
window, so two datasets over overlapping windows share their rows).

Memory: ``build_live_dataset`` holds one symbol's table at a time (~400 bytes per 5m candle with the features kept)
and only the sampled rows as float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from engine.exchange.types import KlineBatch
from strategies.consensus import Consensus
from strategies.labels import BarrierParams, Labels, segment_ends, triple_barrier
from strategies.ml import SIDES, Dataset
from strategies.ml_voter import feature_names, matrix_from_columns
from strategies.signal_table import BASE_MS, SignalConfig, SymbolSignals, build_symbol_signals


def table_labels(table: SymbolSignals, batch: KlineBatch, label: BarrierParams) -> Labels:
    """Triple-barrier labels of every row of ``table`` (built from ``batch``), sized on the stop timeframe's ATR."""
    if not np.array_equal(table.open_ms, batch.open_time):
        raise ValueError(f"{batch.symbol}: the candles differ from the signal table's; pass the table's own history")
    atr = table.column(table.config.stop, "atr")
    return triple_barrier(batch.high, batch.low, batch.close, atr, label,
                          segment_end=segment_ends(table.open_ms, BASE_MS))


def sampled(open_ms: np.ndarray, stride: int) -> np.ndarray:
    return (open_ms // BASE_MS) % stride == 0


def table_rows(table: SymbolSignals, labels: Labels, stride: int, lo_ms: int | None = None,
               hi_ms: int | None = None) -> tuple[np.ndarray, np.ndarray, Labels]:
    """``(X float32, open_ms, labels)`` of the sampled, valid, labelled rows of one table in ``[lo_ms, hi_ms)``."""
    keep = table.valid & sampled(table.open_ms, stride) & ~np.isnan(labels.long) & ~np.isnan(labels.short)
    if lo_ms is not None:
        keep &= table.open_ms >= lo_ms
    if hi_ms is not None:
        keep &= table.open_ms < hi_ms
    rows = np.flatnonzero(keep)
    X = matrix_from_columns(table.columns_at(rows), table.config.timeframes).astype(np.float32)
    return X, table.open_ms[rows], Labels(*(a[rows] for a in (labels.long, labels.short, labels.long_outcome,
                                                              labels.short_outcome)))


def assemble(parts: Mapping[str, tuple[np.ndarray, np.ndarray, Labels]], timeframes: tuple[str, ...]) -> Dataset:
    """One time-ordered ``Dataset`` from per-symbol ``table_rows``."""
    symbols = sorted(parts)
    names = feature_names(timeframes)
    if not symbols or not any(len(parts[s][1]) for s in symbols):
        raise ValueError("no labelled rows: the data is too short for the features and the label horizon")
    X = np.concatenate([parts[s][0] for s in symbols]).reshape(-1, len(names))
    open_ms = np.concatenate([parts[s][1] for s in symbols])
    code = np.concatenate([np.full(len(parts[s][1]), k, np.int16) for k, s in enumerate(symbols)])
    order = np.argsort(open_ms, kind="stable")
    y = {side: np.concatenate([getattr(parts[s][2], side) for s in symbols])[order] for side in SIDES}
    outcome = {side: np.concatenate([getattr(parts[s][2], f"{side}_outcome") for s in symbols])[order]
               for side in SIDES}
    return Dataset(X[order], names, open_ms[order], code[order], symbols, y, outcome)


def build_live_dataset(histories: Mapping[str, KlineBatch], cfg: SignalConfig, label: BarrierParams, *,
                       stride: int = 3, progress: Callable[[str], None] | None = None) -> Dataset:
    """The training data of several symbols from their 5m histories (sorted, unique), one symbol at a time."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    parts = {}
    for symbol, batch in histories.items():
        if progress is not None:
            progress(symbol)
        table = build_symbol_signals(batch, Consensus([]), cfg, keep_features=True)
        parts[symbol] = table_rows(table, table_labels(table, batch, label), stride)
        del table
    return assemble(parts, cfg.timeframes)
