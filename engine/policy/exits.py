"""Exit management for open positions, evaluated by the 60 s monitor. Pure: state in, actions out.

``evaluate_exits(state, market, config, now, rules=...)`` returns what to do now, in order:

1. a full exit (``CloseAll``) when one of these holds, and then nothing else:
   - time stop: the position is older than ``time_stop`` (default 72 h);
   - signal exit: the consensus points the other way with a score ≥ ``signal_exit_score``;
   - stale trade: older than ``stale_after`` and its best profit never reached ``stale_min_r`` R;
2. partial take-profits (``ClosePartial``) on the ladder (default ⅓ at 1R, ⅓ at 2R, the rest trails);
   fractions are of the initial quantity, floored to the market step; a step that would leave less than
   the minimum quantity closes everything instead;
3. a stop move (``MoveStop``), the tightest of:
   - break-even (entry plus a fee offset) once the best profit has reached the first ladder step;
   - the trailing stop, active once the best profit reached ``trail_activation_r`` R (or
     ``trail_activation_pct`` % of the entry): it keeps ``trail_lock_share`` of the peak profit, or sits
     ``trail_atr_mult`` ATR behind the peak;
   The stop only ever tightens, and moves only when it improves by at least ``min_stop_step_pct`` % of
   the price (and one tick) to limit cancel/replace churn. If the new stop is already at or through the
   mark price — the exchange would refuse it — the position is closed at market instead.

Prices are rounded to the tick (stops away from the price), quantities floored to the market step.
R is the initial risk per unit, ``|entry − initial stop|``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from core.enums import ExitReason
from engine.exchange.rules import round_price, round_quantity
from engine.exchange.types import PositionSide, SymbolRules
from strategies.types import Direction

log = logging.getLogger(__name__)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
THIRD = Decimal(1) / Decimal(3)
FRACTION_QUANTUM = Decimal("1e-12")


class TrailMethod(StrEnum):
    PEAK_SHARE = "peak_share"
    ATR = "atr"


@dataclass(frozen=True, slots=True)
class LadderStep:
    """Close ``fraction`` of the initial quantity once the profit reaches ``r`` R."""

    r: Decimal
    fraction: Decimal


DEFAULT_LADDER = (LadderStep(Decimal(1), THIRD), LadderStep(Decimal(2), THIRD))


@dataclass(frozen=True, slots=True)
class ExitConfig:
    trail_enabled: bool = True
    trail_activation_r: Decimal = Decimal(1)
    #: profit in % of the entry that also activates the trail; 0 = only R
    trail_activation_pct: Decimal = ZERO
    trail_method: TrailMethod = TrailMethod.PEAK_SHARE
    trail_lock_share: Decimal = Decimal("0.5")
    trail_atr_mult: Decimal = Decimal("2")
    min_stop_step_pct: Decimal = Decimal("0.1")
    ladder: tuple[LadderStep, ...] = DEFAULT_LADDER
    breakeven_after_first: bool = True
    #: break-even stop sits this % beyond the entry (covers the round-trip fees)
    breakeven_offset_pct: Decimal = Decimal("0.1")
    time_stop: timedelta | None = timedelta(hours=72)
    stale_after: timedelta | None = timedelta(hours=24)
    stale_min_r: Decimal = Decimal("0.5")
    #: close when the consensus is the other way with at least this score; 0 = off
    signal_exit_score: float = 0.75


# ------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class MoveStop:
    new_price: Decimal
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ClosePartial:
    quantity: Decimal
    reason: str
    step: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CloseAll:
    reason: str
    detail: str = ""


ExitAction = MoveStop | ClosePartial | CloseAll


# ------------------------------------------------------------------------------------------- state
@dataclass(frozen=True, slots=True)
class PositionState:
    """What the exit logic remembers about one open trade (persist it with ``to_dict``)."""

    trade_id: int
    symbol: str
    side: PositionSide
    entry_price: Decimal
    initial_quantity: Decimal
    quantity: Decimal
    initial_stop: Decimal
    stop_price: Decimal
    opened_at: datetime
    best_price: Decimal
    worst_price: Decimal
    partials_done: int = 0

    @classmethod
    def opened(cls, *, trade_id: int, symbol: str, side: PositionSide, entry_price: Decimal, quantity: Decimal,
               stop_price: Decimal, opened_at: datetime) -> PositionState:
        return cls(trade_id, symbol, side, entry_price, quantity, quantity, stop_price, stop_price, opened_at,
                   entry_price, entry_price)

    @property
    def risk_per_unit(self) -> Decimal:
        return abs(self.entry_price - self.initial_stop)

    def profit_r(self, price: Decimal) -> Decimal | None:
        risk = self.risk_per_unit
        return (price - self.entry_price) * self.side.sign / risk if risk > 0 else None

    def better(self, a: Decimal, b: Decimal) -> Decimal:
        """The more favourable of two prices for this side."""
        return max(a, b) if self.side is PositionSide.LONG else min(a, b)

    def worse(self, a: Decimal, b: Decimal) -> Decimal:
        return min(a, b) if self.side is PositionSide.LONG else max(a, b)

    def with_stop(self, price: Decimal) -> PositionState:
        return replace(self, stop_price=price)

    def after_partial(self, filled: Decimal, step: int) -> PositionState:
        return replace(self, quantity=max(self.quantity - filled, ZERO),
                       partials_done=max(self.partials_done, step + 1))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Decimal):
                out[key] = str(value)
        out["side"] = self.side.value
        out["opened_at"] = self.opened_at.isoformat()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PositionState:
        return cls(int(raw["trade_id"]), raw["symbol"], PositionSide(raw["side"]), Decimal(raw["entry_price"]),
                   Decimal(raw["initial_quantity"]), Decimal(raw["quantity"]), Decimal(raw["initial_stop"]),
                   Decimal(raw["stop_price"]), datetime.fromisoformat(raw["opened_at"]), Decimal(raw["best_price"]),
                   Decimal(raw["worst_price"]), int(raw.get("partials_done", 0)))


@dataclass(frozen=True, slots=True)
class MarketState:
    """Market view of one symbol at this tick. ``high``/``low``: extremes since the previous tick (optional)."""

    mark_price: Decimal
    atr: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    consensus: Direction | None = None
    consensus_score: float = 0.0


def observe(state: PositionState, market: MarketState) -> PositionState:
    """The state with its best and worst prices updated from this tick (MFE / MAE tracking)."""
    long = state.side is PositionSide.LONG
    if market.high is None and market.low is None:   # the usual tick: the mark alone
        best = worst = market.mark_price
    else:
        prices = [market.mark_price, *(p for p in (market.high, market.low) if p is not None)]
        best = max(prices) if long else min(prices)
        worst = min(prices) if long else max(prices)
    new_best, new_worst = state.better(state.best_price, best), state.worse(state.worst_price, worst)
    if new_best == state.best_price and new_worst == state.worst_price:
        return state
    return replace(state, best_price=new_best, worst_price=new_worst)


# ------------------------------------------------------------------------------------------- full exits
def _full_exit(state: PositionState, market: MarketState, cfg: ExitConfig, now: datetime) -> CloseAll | None:
    age = now - state.opened_at
    if cfg.time_stop is not None and age >= cfg.time_stop:
        return CloseAll(ExitReason.TIME_STOP, f"open {_hours(age)} h, limit {_hours(cfg.time_stop)} h")
    against = Direction.SHORT if state.side is PositionSide.LONG else Direction.LONG
    if (cfg.signal_exit_score > 0 and market.consensus is against
            and market.consensus_score >= cfg.signal_exit_score):
        return CloseAll(ExitReason.SIGNAL_EXIT, f"consensus {against.name} {market.consensus_score:.2f} against the "
                        f"{state.side.value} (threshold {cfg.signal_exit_score:.2f})")
    peak_r = state.profit_r(state.best_price)
    if cfg.stale_after is not None and age >= cfg.stale_after and peak_r is not None and peak_r < cfg.stale_min_r:
        return CloseAll(ExitReason.STALE_TRADE, f"best profit {peak_r:.2f} R after {_hours(age)} h "
                        f"(needs {cfg.stale_min_r} R within {_hours(cfg.stale_after)} h)")
    return None


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}"


# ------------------------------------------------------------------------------------------- partials
def _partials(state: PositionState, market: MarketState, cfg: ExitConfig,
              rules: SymbolRules) -> tuple[list[ClosePartial], CloseAll | None]:
    now_r = state.profit_r(market.mark_price)
    out: list[ClosePartial] = []
    remaining = state.quantity
    if now_r is None:
        return out, None
    for i, step in enumerate(cfg.ladder):
        if i < state.partials_done:
            continue
        if now_r < step.r:
            break
        # ⅓ is 0.333…3 in Decimal: settle the product at 1e-12 before flooring so 0.3 x ⅓ gives 0.1
        qty = min(round_quantity(rules, (state.initial_quantity * step.fraction).quantize(FRACTION_QUANTUM)),
                  remaining)
        if qty <= 0 or qty < rules.market_min_qty:
            log.debug("%s: ladder step %d too small to trade (%s)", state.symbol, i + 1, qty)
            continue
        rest = remaining - qty
        detail = f"{now_r:.2f} R ≥ {step.r} R: close {qty} of {state.initial_quantity}"
        if rest < rules.market_min_qty:
            return out, CloseAll(f"take_profit_{i + 1}", detail + "; the rest is below the minimum quantity")
        out.append(ClosePartial(qty, f"take_profit_{i + 1}", i, detail))
        remaining = rest
    return out, None


# ------------------------------------------------------------------------------------------- stop
def _breakeven(state: PositionState, cfg: ExitConfig) -> Decimal | None:
    if not cfg.breakeven_after_first:
        return None
    trigger = cfg.ladder[0].r if cfg.ladder else cfg.trail_activation_r
    peak_r = state.profit_r(state.best_price)
    if peak_r is None or peak_r < trigger:
        return None
    return state.entry_price * (1 + state.side.sign * cfg.breakeven_offset_pct / HUNDRED)


def _trailing(state: PositionState, market: MarketState, cfg: ExitConfig) -> Decimal | None:
    if not cfg.trail_enabled:
        return None
    peak_profit = (state.best_price - state.entry_price) * state.side.sign
    if peak_profit <= 0:
        return None
    peak_r = state.profit_r(state.best_price)
    by_r = peak_r is not None and peak_r >= cfg.trail_activation_r
    by_pct = cfg.trail_activation_pct > 0 and peak_profit / state.entry_price * HUNDRED >= cfg.trail_activation_pct
    if not (by_r or by_pct):
        return None
    if cfg.trail_method is TrailMethod.ATR and market.atr is not None and market.atr > 0:
        return state.best_price - state.side.sign * cfg.trail_atr_mult * market.atr
    return state.entry_price + state.side.sign * cfg.trail_lock_share * peak_profit


def _stop_move(state: PositionState, market: MarketState, cfg: ExitConfig,
               rules: SymbolRules) -> MoveStop | CloseAll | None:
    candidates = [(p, why) for p, why in ((_breakeven(state, cfg), "break_even"),
                                          (_trailing(state, market, cfg), ExitReason.TRAILING_STOP)) if p is not None]
    if not candidates:
        return None
    long = state.side is PositionSide.LONG
    raw, reason = max(candidates, key=lambda c: c[0]) if long else min(candidates, key=lambda c: c[0])
    new = round_price(rules, raw, rounding=ROUND_FLOOR if long else ROUND_CEILING)
    improvement = (new - state.stop_price) * state.side.sign
    min_step = max(rules.tick_size, market.mark_price * cfg.min_stop_step_pct / HUNDRED)
    if improvement < min_step:
        return None
    if (market.mark_price - new) * state.side.sign <= 0:
        return CloseAll(reason, f"mark {market.mark_price} is already through the new stop {new}")
    return MoveStop(new, reason, f"{state.stop_price} → {new} (best {state.best_price})")


# ------------------------------------------------------------------------------------------- entry point
def evaluate_exits(state: PositionState, market: MarketState, config: ExitConfig, now: datetime, *,
                   rules: SymbolRules) -> list[ExitAction]:
    """What to do with this position now (see the module docstring). ``state`` is observed first, so
    the caller should also store ``observe(state, market)`` for the next tick."""
    state = observe(state, market)
    if state.quantity <= 0:
        return []
    full = _full_exit(state, market, config, now)
    if full is not None:
        return [full]
    partials, close = _partials(state, market, config, rules)
    if close is not None:
        return [*partials, close]
    actions: list[ExitAction] = [*partials]
    move = _stop_move(state, market, config, rules)
    if isinstance(move, CloseAll):
        return [move]
    if move is not None:
        actions.append(move)
    return actions
