"""Mean-reversion voter: fades a close outside the Bollinger bands with the RSI at an extreme, only in a range.

On the signal timeframe (``timeframe``: the momentum timeframe, 15m by default, or the entry one):

- ranging first: its ADX and the mean ADX of the trend timeframes are both below ``max_adx`` (20: Wilder's "no
  trend" level); otherwise FLAT, since fading a trending market fights the trend;
- LONG (back up toward the mean) when the close is below the lower band (%B < 0) and RSI <= ``rsi_oversold``
  (30); SHORT when it is above the upper band (%B > 1) and RSI >= ``rsi_overbought`` (70); FLAT otherwise.

Confidence = ``base_confidence + (1 - base_confidence) * strength``; strength is the mean of how far the close is
beyond the band (full at ``band_full`` band widths) and how far the RSI is past its level (full ``rsi_full``
points beyond).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies import rules
from strategies.features import Features
from strategies.types import Direction, Vote
from strategies.voters import FeatureColumns

log = logging.getLogger(__name__)

_INDICATORS = ("adx", "rsi", "bb_pct_b")


@dataclass(frozen=True, slots=True)
class MeanReversionParams:
    timeframe: Literal["entry", "momentum"] = "momentum"
    max_adx: float = 20.0
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    rsi_full: float = 10.0
    band_full: float = 0.5
    base_confidence: float = 0.5

    def __post_init__(self) -> None:
        rules.check_unit("base_confidence", self.base_confidence)
        rules.check_positive(max_adx=self.max_adx, rsi_full=self.rsi_full, band_full=self.band_full)
        if not 0.0 < self.rsi_oversold < self.rsi_overbought < 100.0:
            raise ValueError("RSI levels must satisfy 0 < rsi_oversold < rsi_overbought < 100")
        rules.check_role(self.timeframe)


class MeanReversionVoter(rules.RuleVoter):
    name = "mean_reversion"
    default_params = MeanReversionParams()
    params: MeanReversionParams

    def vote(self, symbol: str, features: Features) -> Vote:
        p = self.params
        roles = rules.assign_roles(features.timeframes)
        tf = roles.of(p.timeframe)
        sig = features[tf]
        trend = [features[t] for t in roles.trend]
        if not all(rules.usable(f, _INDICATORS) for f in (sig, *trend)):
            return self.flat("indicators not defined yet")
        trend_adx = sum(t.adx for t in trend) / len(trend)
        if not (sig.adx < p.max_adx and trend_adx < p.max_adx):
            return self.flat(f"not ranging: ADX {tf} {sig.adx:.1f}, {','.join(roles.trend)} {trend_adx:.1f} "
                              f"(needs < {p.max_adx:g})")
        if sig.bb_pct_b < 0.0:
            direction, band_part, rsi_ok = Direction.LONG, -sig.bb_pct_b, sig.rsi <= p.rsi_oversold
            rsi_part = (p.rsi_oversold - sig.rsi) / p.rsi_full
        elif sig.bb_pct_b > 1.0:
            direction, band_part, rsi_ok = Direction.SHORT, sig.bb_pct_b - 1.0, sig.rsi >= p.rsi_overbought
            rsi_part = (sig.rsi - p.rsi_overbought) / p.rsi_full
        else:
            return self.flat(f"{tf} inside the Bollinger bands (%B {sig.bb_pct_b:.2f})")
        side = "below the lower" if direction is Direction.LONG else "above the upper"
        if not rsi_ok:
            return self.flat(f"{tf} {side} band but RSI {sig.rsi:.0f} not extreme")
        strength = (rules.clip(band_part / p.band_full) + rules.clip(rsi_part)) / 2.0
        return Vote(self.name, direction, rules.confidence(p.base_confidence, strength),
                    f"range (ADX {sig.adx:.0f}): {tf} {side} band (%B {sig.bb_pct_b:.2f}), RSI {sig.rsi:.0f}; "
                    f"back toward the mean")

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """``vote`` for every candle at once, with the same floating-point operations in the same order."""
        p = self.params
        roles = rules.assign_roles(columns.timeframes)
        tf = roles.of(p.timeframe)
        ok = rules.usable_arr(columns, (tf, *roles.trend), _INDICATORS)
        trend_adx = np.zeros(len(ok))
        for t in roles.trend:
            trend_adx = trend_adx + columns.column(t, "adx")
        trend_adx = trend_adx / len(roles.trend)
        adx, rsi, pct_b = (columns.column(tf, n) for n in ("adx", "rsi", "bb_pct_b"))
        with np.errstate(invalid="ignore"):
            ok &= (adx < p.max_adx) & (trend_adx < p.max_adx)
            long = ok & (pct_b < 0.0) & (rsi <= p.rsi_oversold)
            short = ok & (pct_b > 1.0) & (rsi >= p.rsi_overbought)
            band_part = np.where(long, -pct_b, pct_b - 1.0)
            rsi_part = np.where(long, (p.rsi_oversold - rsi) / p.rsi_full, (rsi - p.rsi_overbought) / p.rsi_full)
            strength = (rules.clip_arr(band_part / p.band_full) + rules.clip_arr(rsi_part)) / 2.0
            conf = rules.confidence_arr(p.base_confidence, strength)
        direction = np.where(long, 1, np.where(short, -1, 0)).astype(np.int8)
        return direction, np.where(direction != 0, conf, 0.0)
