"""The entry decision for one ranked signal: open-position limits, then the regime and the adaptive levels, then
the sized plan. Pure; the live trader and the fast backtest engine call it with what they know at the scan."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.enums import PositionSide
from engine.exchange.types import MarginType, SymbolRules
from engine.policy.adaptive import AdaptiveConfig, AdaptiveLevels, TradeOutcome, adaptive_levels, regime_of
from engine.policy.risk import EntryPlan, LimitsConfig, OpenPosition, RiskConfig, entry_limits_block, plan_entry
from strategies.types import Direction, Signal


@dataclass(frozen=True, slots=True)
class MarketContext:
    """The symbol's context on the stop timeframe (``strategies.scanner.SymbolContext`` values)."""

    adx: float
    atr_ratio: float | None
    atr_pct_history: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EntryDecision:
    side: PositionSide
    plan: EntryPlan | None   # None: refused, see ``reason``
    reason: str
    atr: Decimal             # the signal's ATR, as stored with the trade for learning
    regime: str


LevelCache = MutableMapping[tuple[str, str, int], AdaptiveLevels]


def side_of(signal: Signal) -> PositionSide:
    return PositionSide.LONG if signal.direction is Direction.LONG else PositionSide.SHORT


def decide_entry(*, signal: Signal, rules: SymbolRules, mark_price: Decimal, funding_rate: Decimal,
                 next_funding_time: datetime, equity: Decimal, available: Decimal, wallet: Decimal,
                 open_positions: Sequence[OpenPosition], returns: Mapping[str, Sequence[float]],
                 context: MarketContext | None, outcomes: Sequence[TradeOutcome], now: datetime, risk: RiskConfig,
                 limits: LimitsConfig, adaptive: AdaptiveConfig, margin_type: MarginType,
                 level_cache: LevelCache | None = None) -> EntryDecision:
    """Plan the entry of ``signal`` or say why not. ``level_cache`` (cleared by the caller whenever
    ``outcomes`` change) memoises the adaptive levels per (symbol, regime, hour)."""
    side = side_of(signal)
    atr = Decimal(repr(signal.atr))
    limit = entry_limits_block(symbol=signal.symbol, side=side, equity=equity, open_positions=open_positions,
                               cfg=limits, now=now, returns=returns, funding_rate=funding_rate,
                               next_funding_time=next_funding_time)
    if limit:
        return EntryDecision(side, None, limit, atr, "")
    regime = regime_of(context.adx, context.atr_ratio) if context else ""
    key = (signal.symbol, regime, now.hour)
    levels = level_cache.get(key) if level_cache is not None else None
    if levels is None:
        levels = adaptive_levels(outcomes, symbol=signal.symbol, regime=regime, hour=now.hour,
                                 base_k=risk.stop_atr_mult, base_m=risk.take_profit_atr_mult, cfg=adaptive)
        if level_cache is not None:
            level_cache[key] = levels
    plan = plan_entry(
        rules=rules, side=side, price=mark_price, atr=atr, equity=equity, available=available, cfg=risk,
        open_positions=open_positions, margin_type=margin_type, wallet_balance=wallet,
        atr_pct_history=context.atr_pct_history if context else (),
        trade_r_multiples=[o.r_multiple for o in outcomes if o.symbol == signal.symbol],
        stop_mult=levels.stop_mult, tp_mult=levels.tp_mult, size_mult=levels.size_mult)
    if not plan.ok:
        return EntryDecision(side, None, plan.reason, atr, regime)
    return EntryDecision(side, plan, "", atr, regime)
