"""The first technical voter: multi-timeframe trend + momentum with an over-extension guard.

Timeframe roles (entry, momentum, trend) as ``strategies.rules.assign_roles`` gives them.

LONG when every trend timeframe is up (fast EMA above slow EMA, fast EMA rising, close above the slow EMA)
with a trend present (mean ADX of the trend timeframes >= ``min_adx``), the momentum timeframe confirms
(RSI inside ``rsi_long`` and the MACD histogram positive) and the entry timeframe is not over-extended
(close within ``max_extension_atr`` ATRs of its fast EMA). SHORT is the mirror image. FLAT otherwise.

Confidence = ``base_confidence + (1 - base_confidence) * strength`` where strength is the mean of: ADX
above ``min_adx`` (full at ``adx_full``), EMA separation in ATRs on the trend timeframes (full at
``trend_full_atr``), and how central the momentum RSI sits in its band.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from strategies.features import Features, TimeframeFeatures
from strategies.rules import assign_roles, clip, clip_arr, usable, usable_arr
from strategies.types import Direction, Vote
from strategies.voters import FeatureColumns

logger = logging.getLogger(__name__)

#: Indicators the rule reads that may be undefined early in a window.
_INDICATORS = ("adx", "rsi", "atr", "ema_fast", "ema_slow", "macd_hist")


@dataclass(frozen=True, slots=True)
class TrendMomentumParams:
    min_adx: float = 20.0
    adx_full: float = 40.0
    trend_full_atr: float = 3.0
    rsi_long: tuple[float, float] = (50.0, 70.0)
    rsi_short: tuple[float, float] = (30.0, 50.0)
    max_extension_atr: float = 1.5
    base_confidence: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.base_confidence <= 1.0:
            raise ValueError("base_confidence must be in [0, 1]")
        if self.adx_full <= self.min_adx:
            raise ValueError("adx_full must be above min_adx")
        if self.trend_full_atr <= 0 or self.max_extension_atr <= 0:
            raise ValueError("trend_full_atr and max_extension_atr must be positive")
        for lo, hi in (self.rsi_long, self.rsi_short):
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError("RSI bands must satisfy 0 <= low < high <= 100")


class TrendMomentumVoter:
    name: str = "trend_momentum"

    def __init__(self, params: TrendMomentumParams = TrendMomentumParams(), *, name: str | None = None) -> None:
        self.params = params
        if name is not None:
            self.name = name

    def vote(self, symbol: str, features: Features) -> Vote:
        roles = assign_roles(features.timeframes)
        used = {roles.entry, roles.momentum, *roles.trend}
        if any(not usable(features[tf], _INDICATORS) for tf in used):
            return self._flat("indicators not defined yet")
        trend = [features[tf] for tf in roles.trend]
        direction = _trend_direction(trend)
        if direction is Direction.FLAT:
            return self._flat(f"trend {','.join(roles.trend)} not aligned")
        p = self.params
        mean_adx = sum(t.adx for t in trend) / len(trend)
        if mean_adx < p.min_adx:
            return self._flat(f"trend too weak: ADX {mean_adx:.1f} < {p.min_adx:g}")
        mom = features[roles.momentum]
        lo, hi = p.rsi_long if direction is Direction.LONG else p.rsi_short
        if not lo < mom.rsi < hi:
            return self._flat(f"{roles.momentum} RSI {mom.rsi:.1f} outside {lo:g}-{hi:g}")
        if mom.macd_hist * direction <= 0:
            return self._flat(f"{roles.momentum} MACD histogram against the trend")
        entry = features[roles.entry]
        if abs(entry.extension) > p.max_extension_atr:
            return self._flat(f"{roles.entry} over-extended: {entry.extension:+.2f} ATR from EMA")

        adx_part = clip((mean_adx - p.min_adx) / (p.adx_full - p.min_adx))
        trend_part = sum(clip(abs(t.trend) / p.trend_full_atr) for t in trend) / len(trend)
        centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
        momentum_part = clip(1.0 - abs(mom.rsi - centre) / half)
        strength = (adx_part + trend_part + momentum_part) / 3.0
        confidence = clip(p.base_confidence + (1.0 - p.base_confidence) * strength)
        word = "up" if direction is Direction.LONG else "down"
        reason = (f"{','.join(roles.trend)} {word} (ADX {mean_adx:.0f}); {roles.momentum} RSI {mom.rsi:.0f}, "
                  f"MACD hist {'+' if mom.macd_hist > 0 else '-'}; {roles.entry} {entry.extension:+.2f} ATR "
                  f"from EMA")
        return Vote(self.name, direction, confidence, reason)

    def _flat(self, reason: str) -> Vote:
        return Vote(self.name, Direction.FLAT, 0.0, reason)

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """``vote`` for every candle at once: ``(direction int8, confidence)``; the same rule and the same
        floating-point operations in the same order, so confidences are bit-identical."""
        roles = assign_roles(columns.timeframes)
        p = self.params

        def col(tf: str, name: str) -> np.ndarray:
            return columns.column(tf, name)

        ok_rows = usable_arr(columns, (roles.entry, roles.momentum, *roles.trend), _INDICATORS)
        up = ok_rows.copy()
        down = ok_rows.copy()
        mean_adx = np.zeros(len(ok_rows))
        trend_part = np.zeros(len(ok_rows))
        for tf in roles.trend:
            fast, slow, slope, close = (col(tf, n) for n in ("ema_fast", "ema_slow", "ema_fast_slope", "close"))
            up &= (fast > slow) & (slope > 0) & (close > slow)
            down &= (fast < slow) & (slope < 0) & (close < slow)
            mean_adx = mean_adx + col(tf, "adx")
            trend_part = trend_part + clip_arr(np.abs(col(tf, "trend")) / p.trend_full_atr)
        mean_adx = mean_adx / len(roles.trend)
        trend_part = trend_part / len(roles.trend)
        direction = np.where(up, 1, np.where(down, -1, 0)).astype(np.int8)
        rsi = col(roles.momentum, "rsi")
        hist = col(roles.momentum, "macd_hist")
        lo = np.where(direction > 0, p.rsi_long[0], p.rsi_short[0])
        hi = np.where(direction > 0, p.rsi_long[1], p.rsi_short[1])
        with np.errstate(invalid="ignore"):
            ok = ((direction != 0) & (mean_adx >= p.min_adx) & (lo < rsi) & (rsi < hi) & (hist * direction > 0)
                  & ~(np.abs(col(roles.entry, "extension")) > p.max_extension_atr))
            adx_part = clip_arr((mean_adx - p.min_adx) / (p.adx_full - p.min_adx))
            centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
            momentum_part = clip_arr(1.0 - np.abs(rsi - centre) / half)
            strength = (adx_part + trend_part + momentum_part) / 3.0
            confidence = clip_arr(p.base_confidence + (1.0 - p.base_confidence) * strength)
        return np.where(ok, direction, 0).astype(np.int8), np.where(ok, confidence, 0.0)


def _trend_direction(trend: list[TimeframeFeatures]) -> Direction:
    if all(t.ema_fast > t.ema_slow and t.ema_fast_slope > 0 and t.close > t.ema_slow for t in trend):
        return Direction.LONG
    if all(t.ema_fast < t.ema_slow and t.ema_fast_slope < 0 and t.close < t.ema_slow for t in trend):
        return Direction.SHORT
    return Direction.FLAT
