"""Adaptive stop-loss / take-profit multiples and an hour-of-day size multiplier, learned from the
symbol's own recent trades. Pure functions over ``TradeOutcome`` values; no I/O.

**k and m** (stop = k × ATR, take-profit = m × ATR). Each closed trade is remembered by its excursions in
ATR units at entry: MAE (how far it went against us), MFE (how far in favour) and the final move. For
every (k, m) on a grid within the bounds (with m ≥ k × minimum reward/risk) the recent trades are replayed
against those fixed levels:

- MAE ≥ k → stopped: −k (when both levels were reached the stop is assumed first — conservative);
- else MFE ≥ m → target: +m;
- else the real final move (clamped to (−k, m)).

The expectancy in R (mean result / k) is the simulated win rate × reward minus loss rate × risk; the best
(k, m) is shrunk toward the configured base by ``n / (n + shrink_trades)`` so a handful of trades moves it
only a little, then clamped to the bounds. Trades of the current regime are used when there are at least
``min_samples`` of them, else all of the symbol's trades, else the base multiples (no adaptation).
Excursions are only known until the real exit, so a trade stopped by a tighter stop than a candidate k is
counted at its real result.

**Hour of day**: ``1 + gain × (mean R of trades opened in this UTC hour − mean R of all trades)``, clamped
to [min, max], with at least ``hour_min_samples`` trades in that hour (else 1). It scales the risk amount.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from engine.exchange.types import PositionSide

log = logging.getLogger(__name__)

QUANTUM = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    enabled: bool = True
    min_samples: int = 20
    lookback: int = 50
    k_min: Decimal = Decimal("1.0")
    k_max: Decimal = Decimal("4.0")
    m_min: Decimal = Decimal("1.5")
    m_max: Decimal = Decimal("8.0")
    grid_step: Decimal = Decimal("0.25")
    min_reward_risk: Decimal = Decimal("1.5")
    shrink_trades: int = 20
    hour_min_samples: int = 5
    hour_gain: Decimal = Decimal("0.5")
    hour_mult_min: Decimal = Decimal("0.5")
    hour_mult_max: Decimal = Decimal("1.25")


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """One closed trade as the learner sees it. Excursions and moves are in ATR units at entry."""

    symbol: str
    r_multiple: float
    mae_atr: float
    mfe_atr: float
    exit_atr: float
    opened_at: datetime
    regime: str = ""

    @property
    def won(self) -> bool:
        return self.r_multiple > 0

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "r": self.r_multiple, "mae": self.mae_atr, "mfe": self.mfe_atr,
                "exit": self.exit_atr, "opened_at": self.opened_at.isoformat(), "regime": self.regime}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TradeOutcome:
        return cls(raw["symbol"], float(raw["r"]), float(raw["mae"]), float(raw["mfe"]), float(raw["exit"]),
                   datetime.fromisoformat(raw["opened_at"]), raw.get("regime", ""))

    @classmethod
    def from_prices(cls, *, symbol: str, side: PositionSide, entry: Decimal, exit_price: Decimal,
                    initial_stop: Decimal, atr: Decimal, best: Decimal, worst: Decimal, opened_at: datetime,
                    regime: str = "", net_pnl: Decimal | None = None, quantity: Decimal | None = None
                    ) -> TradeOutcome:
        """From entry/exit, the initial stop, the ATR at entry and the best/worst prices seen while open.
        ``r_multiple`` is ``net_pnl / (quantity × initial risk)`` when both are given, else the price move."""
        risk = abs(entry - initial_stop)
        move = (exit_price - entry) * side.sign
        if net_pnl is not None and quantity and risk > 0:
            r = net_pnl / (quantity * risk)
        else:
            r = move / risk if risk > 0 else Decimal(0)
        unit = atr if atr > 0 else (risk or Decimal(1))
        mae = max((entry - worst) * side.sign, Decimal(0)) / unit
        mfe = max((best - entry) * side.sign, Decimal(0)) / unit
        return cls(symbol, float(r), float(mae), float(mfe), float(move / unit), opened_at, regime)


@dataclass(frozen=True, slots=True)
class AdaptiveLevels:
    """What ``plan_entry`` takes: ``stop_mult``, ``tp_mult``, ``size_mult``."""

    stop_mult: Decimal
    tp_mult: Decimal
    size_mult: Decimal = Decimal(1)
    source: str = "base"          # base | symbol | regime
    samples: int = 0
    win_rate: float | None = None
    expectancy_r: float | None = None


def simulate(outcome: TradeOutcome, k: float, m: float) -> float:
    """Result in ATR units of ``outcome`` replayed against a stop at k and a target at m."""
    if outcome.mae_atr >= k:
        return -k
    if outcome.mfe_atr >= m:
        return m
    return min(max(outcome.exit_atr, -k), m)


def expectancy_r(outcomes: Sequence[TradeOutcome], k: float, m: float) -> float:
    """Mean simulated result per unit of risk (R)."""
    return statistics.fmean(simulate(o, k, m) for o in outcomes) / k


def _grid(low: Decimal, high: Decimal, step: Decimal) -> list[Decimal]:
    out, value = [], low
    while value <= high:
        out.append(value)
        value += step
    return out


def best_multiples(outcomes: Sequence[TradeOutcome], cfg: AdaptiveConfig, base_k: Decimal,
                   base_m: Decimal) -> tuple[Decimal, Decimal, float]:
    """The (k, m) on the grid with the highest simulated expectancy in R; ties → nearest the base."""
    best: tuple[float, Decimal, Decimal, Decimal] | None = None
    # the same arithmetic as ``expectancy_r`` (fsum of the simulated results / n / k), the simulation of every
    # (k, m) at once: results[ik, im, trade]
    ks, ms = _grid(cfg.k_min, cfg.k_max, cfg.grid_step), _grid(cfg.m_min, cfg.m_max, cfg.grid_step)
    kf = np.array([float(k) for k in ks])[:, None, None]
    mf = np.array([float(m) for m in ms])[None, :, None]
    mae = np.array([o.mae_atr for o in outcomes], dtype=np.float64)
    mfe = np.array([o.mfe_atr for o in outcomes], dtype=np.float64)
    final = np.array([o.exit_atr for o in outcomes], dtype=np.float64)
    results = np.where(mae >= kf, -kf, np.where(mfe >= mf, mf, np.minimum(np.maximum(final, -kf), mf)))
    rows = results.reshape(len(ks) * len(ms), len(outcomes)).tolist()
    n = len(outcomes)
    for ik, k in enumerate(ks):
        for im, m in enumerate(ms):
            if m < k * cfg.min_reward_risk:
                continue
            if n == 0:
                raise statistics.StatisticsError("fmean requires at least one data point")
            e = math.fsum(rows[ik * len(ms) + im]) / n / float(k)
            key = (-round(e, 12), abs(k - base_k) + abs(m - base_m), k, m)
            if best is None or key < best:
                best = key
    if best is None:
        return base_k, base_m, expectancy_r(outcomes, float(base_k), float(base_m)) if outcomes else 0.0
    return best[2], best[3], -best[0]


def _sample(outcomes: Sequence[TradeOutcome], symbol: str, regime: str, cfg: AdaptiveConfig
            ) -> tuple[list[TradeOutcome], str]:
    mine = [o for o in outcomes if o.symbol == symbol][-cfg.lookback:]
    same_regime = [o for o in outcomes if o.symbol == symbol and o.regime == regime][-cfg.lookback:]
    if regime and len(same_regime) >= cfg.min_samples:
        return same_regime, "regime"
    if len(mine) >= cfg.min_samples:
        return mine, "symbol"
    return [], "base"


def _clamp(value: Decimal, low: Decimal, high: Decimal) -> Decimal:
    return min(max(value, low), high)


def adaptive_levels(outcomes: Sequence[TradeOutcome], *, symbol: str, regime: str, hour: int,
                    base_k: Decimal, base_m: Decimal, cfg: AdaptiveConfig) -> AdaptiveLevels:
    """k, m and the hour multiplier for a new ``symbol`` entry in ``regime`` at UTC ``hour``.

    ``outcomes`` are closed trades, oldest first (any symbols; filtered here).
    """
    size = hour_multiplier(outcomes, symbol=symbol, hour=hour, cfg=cfg) if cfg.enabled else Decimal(1)
    sample, source = _sample(outcomes, symbol, regime, cfg) if cfg.enabled else ([], "base")
    if not sample:
        return AdaptiveLevels(base_k, base_m, size)
    best_k, best_m, _ = best_multiples(sample, cfg, base_k, base_m)
    weight = Decimal(len(sample)) / Decimal(len(sample) + max(cfg.shrink_trades, 0))
    k = _clamp(base_k + (best_k - base_k) * weight, cfg.k_min, cfg.k_max).quantize(QUANTUM, ROUND_HALF_EVEN)
    m = _clamp(base_m + (best_m - base_m) * weight, cfg.m_min, cfg.m_max).quantize(QUANTUM, ROUND_HALF_EVEN)
    m = max(m, (k * cfg.min_reward_risk).quantize(QUANTUM, ROUND_HALF_EVEN))
    win_rate = sum(o.won for o in sample) / len(sample)
    log.debug("%s %s: k %s m %s from %d trades (%s)", symbol, regime, k, m, len(sample), source)
    return AdaptiveLevels(k, m, size, source, len(sample), win_rate, expectancy_r(sample, float(k), float(m)))


def hour_multiplier(outcomes: Sequence[TradeOutcome], *, symbol: str | None, hour: int,
                    cfg: AdaptiveConfig) -> Decimal:
    """Size multiplier for entries at UTC ``hour`` from past results (``symbol=None``: all symbols)."""
    pool = [o for o in outcomes if symbol is None or o.symbol == symbol]
    at_hour = [o for o in pool if o.opened_at.hour == hour]
    if len(at_hour) < max(cfg.hour_min_samples, 1):
        return Decimal(1)
    diff = statistics.fmean(o.r_multiple for o in at_hour) - statistics.fmean(o.r_multiple for o in pool)
    mult = Decimal(1) + cfg.hour_gain * Decimal(repr(diff))
    return _clamp(mult, cfg.hour_mult_min, cfg.hour_mult_max).quantize(QUANTUM, ROUND_HALF_EVEN)


def regime_of(adx: float, atr_ratio: float | None, *, trend_adx: float = 25.0, high_vol_ratio: float = 1.5) -> str:
    """A coarse market regime label: ``high_vol`` (ATR% well above its norm), ``trend`` (ADX high), ``range``."""
    if atr_ratio is not None and atr_ratio >= high_vol_ratio:
        return "high_vol"
    return "trend" if adx >= trend_adx else "range"
