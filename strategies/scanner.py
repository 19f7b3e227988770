"""Turns a market snapshot into ranked signals plus the per-symbol context risk needs (regime, volatility
history, returns for the correlation guard): features → voters → consensus → ranking. Pure computation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from engine.exchange.types import KlineBatch
from engine.market import MarketSnapshot
from engine.policy.risk import volatility_ratio
from strategies.consensus import Consensus, rank
from strategies.features import FeatureMemo, FeatureParams, Features, atr, compute_features_many, read_only
from strategies.types import Signal, Vote

log = logging.getLogger(__name__)

HISTORY_POINTS = 100


@dataclass(frozen=True, slots=True)
class SymbolContext:
    """Per-symbol values on the stop timeframe: trend strength, ATR % history (oldest first), log returns."""

    adx: float
    atr_pct_history: tuple[float, ...]
    returns: tuple[float, ...]

    @property
    def atr_pct(self) -> float:
        return self.atr_pct_history[-1] if self.atr_pct_history else 0.0

    @property
    def atr_ratio(self) -> float | None:
        """Current ATR % over the median of its own history (``None`` without history)."""
        if len(self.atr_pct_history) < 2:
            return None
        return volatility_ratio(self.atr_pct, self.atr_pct_history[:-1])


class ScanMemo:
    """What one scan leaves for the next (the trader keeps it): the features of each timeframe batch, and each
    symbol's context on the stop-timeframe batch it was last computed from. The market cache hands out the same
    frozen batch until one of its candles closes (a 1h frame changes once in twelve 5-minute scans), and both
    are pure functions of it: the same batch object with read-only arrays (and, for a context, the same ADX)
    gives the same values. The memo keeps the batches, so their ids are not reused."""

    def __init__(self) -> None:
        self.features = FeatureMemo()
        self._seen: dict[str, tuple[KlineBatch, float, SymbolContext]] = {}

    def context(self, symbol: str, batch: KlineBatch, adx: float) -> SymbolContext:
        seen = self._seen.get(symbol)
        if seen is not None and seen[0] is batch and seen[1] == adx:
            return seen[2]
        context = symbol_context(batch.high, batch.low, batch.close, adx)
        if read_only(batch):
            self._seen[symbol] = (batch, adx, context)
        else:
            self._seen.pop(symbol, None)
        return context


class ScanResult:
    """Signals of one scan. Per-symbol context is computed on first use (only a few symbols need it)."""

    def __init__(self, ranked: list[Signal] | None = None, signals: dict[str, Signal] | None = None,
                 stop_frames: dict[str, tuple[KlineBatch, float]] | None = None,
                 features: dict[str, Features] | None = None, memo: ScanMemo | None = None) -> None:
        self.ranked = ranked or []            # actionable, best first
        self.signals = signals or {}          # every evaluated symbol, FLAT included
        self.features = features or {}        # what the voters saw, per symbol
        self._stop_frames = stop_frames or {}  # symbol → (stop-timeframe candles, ADX)
        self._context: dict[str, SymbolContext] = {}
        self._memo = memo

    def candidates(self, n: int) -> list[tuple[str, Features]]:
        """The ``n`` symbols the local voters rate best (a majority, above the threshold or not): the only ones
        worth asking a slow, paid voter about."""
        best = sorted((s for s in self.signals.values() if s.score > 0 and s.symbol in self.features),
                      key=lambda s: (-s.score, s.symbol))
        return [(s.symbol, self.features[s.symbol]) for s in best[:n]]

    def with_votes(self, consensus: Consensus, extra: Mapping[str, Sequence[Vote]]) -> ScanResult:
        """The same scan with late votes (LLMs) added to the symbols they are about, re-combined and re-ranked."""
        if not extra:
            return self
        signals = dict(self.signals)
        for symbol, votes in extra.items():
            if symbol in signals and votes:
                signal = signals[symbol]
                all_votes = (*signal.votes, *votes)
                direction, score = consensus.combine(all_votes, consensus.weights_for_symbol(symbol))
                signals[symbol] = replace(signal, direction=direction, score=score, votes=all_votes)
        result = ScanResult(rank(signals.values()), signals, self._stop_frames, self.features, self._memo)
        result._context = self._context
        return result

    def stop_frame(self, symbol: str) -> KlineBatch | None:
        """The stop-timeframe candles ``symbol`` was evaluated on."""
        frame = self._stop_frames.get(symbol)
        return frame[0] if frame is not None else None

    def context(self, symbol: str) -> SymbolContext | None:
        if symbol not in self._context:
            if symbol not in self._stop_frames:
                return None
            batch, adx = self._stop_frames[symbol]
            self._context[symbol] = (self._memo.context(symbol, batch, adx) if self._memo is not None
                                     else symbol_context(batch.high, batch.low, batch.close, adx))
        return self._context[symbol]

    def returns(self, symbols: Iterable[str]) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]] = {}
        for symbol in symbols:
            if (ctx := self.context(symbol)) is not None:
                out[symbol] = ctx.returns
        return out


def evaluate_snapshot(snapshot: MarketSnapshot, consensus: Consensus, *, stop_timeframe: str | None = None,
                      memo: ScanMemo | None = None) -> ScanResult:
    """Signals of every usable symbol. ``stop_timeframe`` picks whose ATR sizes the stop (a 5m ATR puts stops
    inside the noise); the entry timeframe is used when it is absent. ``memo`` (kept between scans) spares
    recomputing what depends only on batches that have not changed since the last scan."""
    signals: dict[str, Signal] = {}
    stop_frames: dict[str, tuple[KlineBatch, float]] = {}
    evaluated: dict[str, Features] = {}
    computed, skipped = compute_features_many(snapshot.frames, FeatureParams(),
                                              memo.features if memo is not None else None)
    for symbol, exc in skipped.items():
        log.debug("%s skipped: %s", symbol, exc)
    consensus.prepare(computed)
    for symbol, features in computed.items():
        frames = snapshot.frames[symbol]
        signal = consensus.decide(symbol, features)
        tf = stop_timeframe if stop_timeframe in features else features.timeframes[0]
        if features[tf].atr > 0:
            signal = replace(signal, atr=features[tf].atr)
        signals[symbol] = signal
        evaluated[symbol] = features
        stop_frames[symbol] = (frames[tf], features[tf].adx)
    return ScanResult(rank(signals.values()), signals, stop_frames, evaluated, memo)


def symbol_context(high: np.ndarray, low: np.ndarray, close: np.ndarray, adx: float) -> SymbolContext:
    """The context of one symbol from its stop-timeframe window and that timeframe's ADX."""
    atr_series = atr(high, low, close)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = atr_series / close * 100.0
        rets = np.diff(np.log(close[-(HISTORY_POINTS + 1):]))
    pct = pct[np.isfinite(pct)][-HISTORY_POINTS:]
    rets = rets[np.isfinite(rets)]
    return SymbolContext(float(adx) if np.isfinite(adx) else 0.0, tuple(float(x) for x in pct),
                         tuple(float(x) for x in rets))
