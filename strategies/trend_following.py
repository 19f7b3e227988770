"""Trend-following voter: the EMAs stacked the same way on every trend timeframe, confirmed by the directional
indicators and a trending ADX.

LONG when on every trend timeframe (``strategies.rules.assign_roles``: 1h and 4h by default) the close is above
the fast EMA and the fast EMA above the slow one, +DI is above −DI, and the mean ADX of the trend timeframes is at
least ``min_adx`` (25: Wilder's threshold for a trending market, the regime code's too). SHORT is the mirror image,
FLAT otherwise. Unlike ``trend_momentum`` it has no momentum band and no over-extension guard: it follows the
trend wherever price stands within it.

Confidence = ``base_confidence + (1 - base_confidence) * strength``; strength is the mean of ADX above ``min_adx``
(full at ``adx_full``) and the EMA separation in ATRs on the trend timeframes (full at ``trend_full_atr``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from strategies import rules
from strategies.features import Features, TimeframeFeatures
from strategies.types import Direction, Vote
from strategies.voters import FeatureColumns

log = logging.getLogger(__name__)

_INDICATORS = ("adx", "plus_di", "minus_di", "ema_fast", "ema_slow")


@dataclass(frozen=True, slots=True)
class TrendFollowingParams:
    min_adx: float = 25.0
    adx_full: float = 50.0
    trend_full_atr: float = 3.0
    base_confidence: float = 0.5

    def __post_init__(self) -> None:
        rules.check_unit("base_confidence", self.base_confidence)
        rules.check_positive(min_adx=self.min_adx, trend_full_atr=self.trend_full_atr)
        if self.adx_full <= self.min_adx:
            raise ValueError("adx_full must be above min_adx")


class TrendFollowingVoter(rules.RuleVoter):
    name = "trend_following"
    default_params = TrendFollowingParams()
    params: TrendFollowingParams

    def vote(self, symbol: str, features: Features) -> Vote:
        trend_tfs = rules.assign_roles(features.timeframes).trend
        trend = [features[tf] for tf in trend_tfs]
        if not all(rules.usable(t, _INDICATORS) for t in trend):
            return self.flat("indicators not defined yet")
        direction = _stacked(trend)
        if direction is Direction.FLAT:
            return self.flat(f"EMAs and DI of {','.join(trend_tfs)} not aligned")
        p = self.params
        mean_adx = sum(t.adx for t in trend) / len(trend)
        if mean_adx < p.min_adx:
            return self.flat(f"no trend: ADX {mean_adx:.1f} < {p.min_adx:g}")
        adx_part = rules.clip((mean_adx - p.min_adx) / (p.adx_full - p.min_adx))
        trend_part = sum(rules.clip(abs(t.trend) / p.trend_full_atr) for t in trend) / len(trend)
        conf = rules.confidence(p.base_confidence, (adx_part + trend_part) / 2.0)
        word = "up" if direction is Direction.LONG else "down"
        separation = ", ".join(f"{tf} {t.trend:+.1f}" for tf, t in zip(trend_tfs, trend, strict=True))
        return Vote(self.name, direction, conf,
                    f"{','.join(trend_tfs)} stacked {word} (ADX {mean_adx:.0f}; EMA gap in ATR {separation})")

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """``vote`` for every candle at once, with the same floating-point operations in the same order."""
        trend_tfs = rules.assign_roles(columns.timeframes).trend
        p = self.params
        ok = rules.usable_arr(columns, trend_tfs, _INDICATORS)
        up, down = ok.copy(), ok.copy()
        mean_adx = np.zeros(len(ok))
        trend_part = np.zeros(len(ok))
        for tf in trend_tfs:
            close, fast, slow, pdi, mdi = (columns.column(tf, n)
                                           for n in ("close", "ema_fast", "ema_slow", "plus_di", "minus_di"))
            up &= (close > fast) & (fast > slow) & (pdi > mdi)
            down &= (close < fast) & (fast < slow) & (pdi < mdi)
            mean_adx = mean_adx + columns.column(tf, "adx")
            trend_part = trend_part + rules.clip_arr(np.abs(columns.column(tf, "trend")) / p.trend_full_atr)
        mean_adx = mean_adx / len(trend_tfs)
        trend_part = trend_part / len(trend_tfs)
        direction = np.where(up, 1, np.where(down, -1, 0)).astype(np.int8)
        with np.errstate(invalid="ignore"):
            voting = (direction != 0) & (mean_adx >= p.min_adx)
            adx_part = rules.clip_arr((mean_adx - p.min_adx) / (p.adx_full - p.min_adx))
            conf = rules.confidence_arr(p.base_confidence, (adx_part + trend_part) / 2.0)
        return np.where(voting, direction, 0).astype(np.int8), np.where(voting, conf, 0.0)


def _stacked(trend: list[TimeframeFeatures]) -> Direction:
    if all(t.close > t.ema_fast > t.ema_slow and t.plus_di > t.minus_di for t in trend):
        return Direction.LONG
    if all(t.close < t.ema_fast < t.ema_slow and t.plus_di < t.minus_di for t in trend):
        return Direction.SHORT
    return Direction.FLAT
