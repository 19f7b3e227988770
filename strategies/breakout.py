"""Breakout voter: a close beyond the Bollinger bands on unusually high volume.

On the signal timeframe (``timeframe``: the momentum timeframe, 15m by default, or the entry one): LONG when the
close is above the upper band (%B > 1) and the candle's volume z-score (against the ``window`` candles before it)
is at least ``min_volume_z`` (2: a volume two standard deviations above normal); SHORT when it closes below the
lower band (%B < 0) on such volume; FLAT otherwise. Volume is what tells a breakout from a stretch that will
revert (the mean-reversion voter fades the same closes when volume and trend are absent).

Confidence = ``base_confidence + (1 - base_confidence) * strength``; strength is the mean of the volume surprise
above ``min_volume_z`` (full at ``volume_z_full``) and how far the close is beyond the band (full at
``band_full`` band widths).
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

_INDICATORS = ("bb_pct_b", "volume_z")


@dataclass(frozen=True, slots=True)
class BreakoutParams:
    timeframe: Literal["entry", "momentum"] = "momentum"
    min_volume_z: float = 2.0
    volume_z_full: float = 4.0
    band_full: float = 0.5
    base_confidence: float = 0.5

    def __post_init__(self) -> None:
        rules.check_unit("base_confidence", self.base_confidence)
        rules.check_positive(min_volume_z=self.min_volume_z, band_full=self.band_full)
        if self.volume_z_full <= self.min_volume_z:
            raise ValueError("volume_z_full must be above min_volume_z")
        rules.check_role(self.timeframe)


class BreakoutVoter(rules.RuleVoter):
    name = "breakout"
    default_params = BreakoutParams()
    params: BreakoutParams

    def vote(self, symbol: str, features: Features) -> Vote:
        p = self.params
        tf = rules.assign_roles(features.timeframes).of(p.timeframe)
        sig = features[tf]
        if not rules.usable(sig, _INDICATORS):
            return self.flat("indicators not defined yet")
        if sig.bb_pct_b > 1.0:
            direction, band_part, side = Direction.LONG, sig.bb_pct_b - 1.0, "above the upper"
        elif sig.bb_pct_b < 0.0:
            direction, band_part, side = Direction.SHORT, -sig.bb_pct_b, "below the lower"
        else:
            return self.flat(f"{tf} inside the Bollinger bands (%B {sig.bb_pct_b:.2f})")
        if not sig.volume_z >= p.min_volume_z:
            return self.flat(f"{tf} closed {side} band on ordinary volume (z {sig.volume_z:.1f} "
                              f"< {p.min_volume_z:g})")
        volume_part = (sig.volume_z - p.min_volume_z) / (p.volume_z_full - p.min_volume_z)
        strength = (rules.clip(volume_part) + rules.clip(band_part / p.band_full)) / 2.0
        return Vote(self.name, direction, rules.confidence(p.base_confidence, strength),
                    f"{tf} closed {side} band (%B {sig.bb_pct_b:.2f}) on volume z {sig.volume_z:.1f}")

    def vote_arrays(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """``vote`` for every candle at once, with the same floating-point operations in the same order."""
        p = self.params
        tf = rules.assign_roles(columns.timeframes).of(p.timeframe)
        ok = rules.usable_arr(columns, (tf,), _INDICATORS)
        pct_b, volume_z = columns.column(tf, "bb_pct_b"), columns.column(tf, "volume_z")
        with np.errstate(invalid="ignore"):
            ok &= volume_z >= p.min_volume_z
            long = ok & (pct_b > 1.0)
            short = ok & (pct_b < 0.0)
            band_part = np.where(long, pct_b - 1.0, -pct_b)
            volume_part = (volume_z - p.min_volume_z) / (p.volume_z_full - p.min_volume_z)
            strength = (rules.clip_arr(volume_part) + rules.clip_arr(band_part / p.band_full)) / 2.0
            conf = rules.confidence_arr(p.base_confidence, strength)
        direction = np.where(long, 1, np.where(short, -1, 0)).astype(np.int8)
        return direction, np.where(direction != 0, conf, 0.0)
