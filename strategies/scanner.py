"""Turns a market snapshot into ranked signals: features → voters → consensus → ranking. Pure computation."""

from __future__ import annotations

import logging
from dataclasses import replace

from engine.market import MarketSnapshot
from strategies.consensus import Consensus, rank
from strategies.features import InsufficientData, compute_features
from strategies.types import Signal

log = logging.getLogger(__name__)


def evaluate_snapshot(snapshot: MarketSnapshot, consensus: Consensus, *, stop_timeframe: str | None = None
                      ) -> list[Signal]:
    """Actionable (non-FLAT, above threshold) signals of every usable symbol, best first.

    ``stop_timeframe`` picks whose ATR sizes the stop (e.g. 1h: a 5m ATR puts stops inside the noise);
    the entry timeframe's ATR is used when it is absent.
    """
    signals: list[Signal] = []
    for symbol, frames in snapshot.frames.items():
        try:
            features = compute_features(frames)
        except InsufficientData as exc:
            log.debug("%s skipped: %s", symbol, exc)
            continue
        signal = consensus.decide(symbol, features)
        if stop_timeframe and stop_timeframe in features and features[stop_timeframe].atr > 0:
            signal = replace(signal, atr=features[stop_timeframe].atr)
        signals.append(signal)
    return rank(signals)
