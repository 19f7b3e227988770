"""What the fast engine needs from the signal side: per symbol and per closed 5m candle ``i``, the Signal and the
SymbolContext the live scan would produce on the window ending at candle ``i``.

``SymbolSignals`` is that interface (the vectorised ``strategies.signal_table`` and the slow reference in
``engine.backtest.reference`` both provide it); ``ScanView`` is one scan as the trader sees it, built from the
tables at a scan time: ranked candidates, every evaluated symbol's signal, and the per-symbol context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from strategies.scanner import SymbolContext
from strategies.types import Direction, Signal

BASE_MS = 300_000


class SymbolSignals(Protocol):
    """One symbol's signals, indexed like its 5m candles. ``direction`` (int8: −1, 0, 1; 0 also when the scan
    would have left the symbol out) and ``score`` (float64) are for fast ranking."""

    direction: np.ndarray
    score: np.ndarray

    def signal_at(self, i: int) -> Signal | None:
        """The Signal of the scan whose newest closed candle is ``i``; ``None`` when the scan left it out."""
        ...

    def context_at(self, i: int) -> SymbolContext | None:
        ...


class ScanView:
    """One scan at ``now_ms``: the same ranking as ``strategies.consensus.rank`` (non-FLAT, best score first,
    ties by symbol), signals and contexts resolved lazily from the tables."""

    __slots__ = ("_contexts", "_index", "_ranked", "_signals", "_tables")

    def __init__(self, tables: Mapping[str, SymbolSignals], index: Mapping[str, int] | StepIndex) -> None:
        self._tables = tables
        self._index = index  # symbol → candle index of the scan (only symbols whose newest candle just closed)
        self._signals: dict[str, Signal | None] = {}
        self._contexts: dict[str, SymbolContext | None] = {}
        self._ranked: list[Signal] | None = None

    @property
    def ranked(self) -> list[Signal]:
        if self._ranked is None:
            tables = self._tables
            candidates = [(-float(tables[s].score[i]), s) for s, i in self._index.items()
                          if tables[s].direction[i] != 0]
            self._ranked = []
            for _, symbol in sorted(candidates):
                signal = self._ranked_signal(symbol)
                if signal is not None and signal.direction is not Direction.FLAT:
                    self._ranked.append(signal)
        return self._ranked

    def _ranked_signal(self, symbol: str) -> Signal | None:
        """A ranked candidate as the entry decision reads it. Tables with row arrays (the vectorised ones: their
        ``direction``, ``score``, ``price`` and ``atr`` equal ``signal_at``'s, which the signal parity test pins)
        give it without votes, so a scan does not recompute every timeframe's features per candidate; others
        give the full ``signal_at``."""
        if symbol in self._signals:
            return self._signals[symbol]
        table = self._tables[symbol]
        i = self._index.get(symbol)
        if i is None:
            return None
        price, atr = getattr(table, "price", None), getattr(table, "atr", None)
        if price is None or atr is None:
            return self.signal(symbol)
        return Signal(symbol=symbol, direction=Direction(int(table.direction[i])), score=float(table.score[i]),
                      price=float(price[i]), atr=float(atr[i]))

    def signal(self, symbol: str) -> Signal | None:
        if symbol not in self._signals:
            i = self._index.get(symbol)
            self._signals[symbol] = None if i is None else self._tables[symbol].signal_at(i)
        return self._signals[symbol]

    def context(self, symbol: str) -> SymbolContext | None:
        if symbol not in self._contexts:
            i = self._index.get(symbol)
            self._contexts[symbol] = None if i is None else self._tables[symbol].context_at(i)
        return self._contexts[symbol]

    def exit_inputs(self, symbol: str, against: Direction) -> tuple[Direction | None, float, float | None]:
        """What exit management reads of the scan for an open trade: the consensus direction, its score and the
        stop-timeframe ATR, as ``signal(symbol)`` has them. Tables with ``stop_atr_at`` (the vectorised ones) give
        them from their arrays and the ATR alone; the full signal is computed only when the consensus points
        ``against`` the trade (then its exact score matters) or the ATR needs the signal's fallback."""
        table = self._tables.get(symbol)
        i = self._index.get(symbol)
        stop_atr_at = getattr(table, "stop_atr_at", None)
        if table is not None and i is not None and stop_atr_at is not None and table.valid[i]:
            direction = Direction(int(table.direction[i]))
            atr = stop_atr_at(i)
            if direction is not against and atr is not None:
                return direction, float(table.score[i]), atr
        signal = self.signal(symbol)
        if signal is None:
            return None, 0.0, None
        return signal.direction, signal.score, signal.atr if signal.atr > 0 else None

    def atr_ratio(self, symbol: str) -> float | None:
        """``context(symbol).atr_ratio``, read from the table's ``atr_ratio`` array when it has one (the vectorised
        tables do: no live computation per step), else from the context."""
        i = self._index.get(symbol)
        if i is None:
            return None
        ratios = getattr(self._tables[symbol], "atr_ratio", None)
        if ratios is not None:
            value = float(ratios[i])
            return None if np.isnan(value) else value
        context = self.context(symbol)
        return context.atr_ratio if context is not None else None

    def returns(self, symbols: Iterable[str]) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]] = {}
        for symbol in symbols:
            if (ctx := self.context(symbol)) is not None:
                out[symbol] = ctx.returns
        return out


EMPTY_SCAN = ScanView({}, {})


class StepIndex:
    """``ScanView``'s symbol → row mapping for one step of ``scan_indices``' arrays, read on demand (a monitor
    step looks up one or two symbols; building a dict of every symbol per step costs more than the lookups)."""

    __slots__ = ("_indices", "_step")

    def __init__(self, indices: Mapping[str, np.ndarray], step: int) -> None:
        self._indices = indices
        self._step = step

    def get(self, symbol: str, default: int | None = None) -> int | None:
        rows = self._indices.get(symbol)
        if rows is None:
            return default
        i = int(rows[self._step])
        return i if i >= 0 else default

    def items(self) -> Iterable[tuple[str, int]]:
        step = self._step
        return [(s, int(rows[step])) for s, rows in self._indices.items() if rows[step] >= 0]


def scan_indices(open_times: Mapping[str, np.ndarray], universe: Sequence[str], now_ms: np.ndarray,
                 tables: Mapping[str, SymbolSignals] | None = None) -> dict[str, np.ndarray]:
    """For each symbol and each scan time in ``now_ms``, the row whose signal that scan has, or −1 when the scan
    leaves the symbol out. A table with ``rows_at`` (the vectorised one) answers as the live validation does: a
    missing newest candle is tolerated while the lag allows (the scan then has the previous row), an invalid row
    is left out. Otherwise: the index of the 5m candle that just closed, −1 when it is missing."""
    expected = (now_ms // BASE_MS) * BASE_MS - BASE_MS
    out: dict[str, np.ndarray] = {}
    for symbol in universe:
        rows_at = getattr((tables or {}).get(symbol), "rows_at", None)
        if rows_at is not None:
            out[symbol] = np.asarray(rows_at(expected), dtype=np.int64)
            continue
        times = open_times[symbol]
        i = np.searchsorted(times, expected, side="right") - 1
        ok = (i >= 0) & (times[np.maximum(i, 0)] == expected) if len(times) else np.zeros(len(expected), bool)
        out[symbol] = np.where(ok, i, -1)
    return out
