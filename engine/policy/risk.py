"""Position sizing, stop-loss / take-profit placement, the liquidation guard and open-position limits.

Everything here is pure: numbers in, a decision out. Sizing:

1. risk amount = equity × risk% — risk% possibly replaced by capped fractional Kelly (off until enough
   trades), then scaled down when the ATR % is far above its own history, and by an adaptive multiplier;
2. quantity = risk amount / (stop distance + the exit's taker fee);
3. capped, in notional, by: the notional allowed per position (% of equity and optional USDT cap), the
   room left under the total exposure cap (% of equity, existing positions included), the margin
   available at the leverage, and the largest notional the symbol's leverage brackets allow at that
   leverage; then floored to the market step size and checked against minQty / maxQty / minNotional;
4. liquidation guard: the liquidation price (Binance formula, ``engine.exchange.liquidation``) must sit at least
   ``liq_min_stop_multiple`` × the stop distance away from the entry; if not, the leverage is lowered one
   step at a time (re-sizing each time) and, when even ``min_leverage`` fails, the trade is skipped.

Every refusal comes back as an ``EntryPlan`` with ``quantity == 0`` and a ``reason`` the operator can read.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.exchange.liquidation import DEFAULT_BRACKETS, liquidation_price, maintenance_margin
from engine.exchange.rules import round_price, round_quantity
from engine.exchange.types import LeverageBracket, MarginType, Position, PositionSide, SymbolRules

log = logging.getLogger(__name__)

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
# keep a little margin free for fees and mark-price moves between sizing and fill
MARGIN_HEADROOM = Decimal("0.95")
SCALE_QUANTUM = Decimal("0.0001")


# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True, slots=True)
class RiskConfig:
    risk_per_trade_pct: Decimal
    leverage: int
    max_position_notional_pct: Decimal
    stop_atr_mult: Decimal
    take_profit_atr_mult: Decimal
    min_stop_pct: Decimal
    max_stop_pct: Decimal
    min_reward_risk: Decimal
    taker_fee: Decimal = Decimal("0.0005")
    #: absolute notional cap per position in USDT; 0 = none
    max_position_notional_usdt: Decimal = ZERO
    #: total notional of all open positions (the new one included), % of equity
    max_total_exposure_pct: Decimal = Decimal("300")
    margin_headroom: Decimal = MARGIN_HEADROOM
    #: scale risk down when ATR% / median(ATR% history) exceeds this; 0 = off
    vol_scale_threshold: Decimal = Decimal("1.5")
    vol_min_scale: Decimal = Decimal("0.25")
    vol_min_history: int = 20
    #: capped fractional Kelly from the symbol's own R-multiples (off by default)
    kelly_enabled: bool = False
    kelly_fraction: Decimal = Decimal("0.25")
    kelly_min_trades: int = 30
    kelly_lookback: int = 100
    kelly_min_risk_pct: Decimal = Decimal("0.25")
    kelly_max_risk_pct: Decimal = Decimal("2")
    #: liquidation price must be at least this many stop distances from the entry; 0 = off
    liq_min_stop_multiple: Decimal = Decimal("2")
    min_leverage: int = 1


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Open-position limits checked before sizing."""

    max_open_positions: int = 3
    #: one position slot per this much equity (USDT); 0 = no capital-based cap
    equity_per_slot: Decimal = ZERO
    #: same-side positions whose recent returns correlate above this count as correlated; >= 1 = off
    correlation_threshold: float = 0.8
    #: a new position may correlate with at most this many existing same-side positions
    max_correlated: int = 1
    correlation_min_points: int = 30
    #: skip an entry that would PAY more than this funding rate (fraction, 0.0005 = 0.05 %); 0 = off
    funding_max_pay_rate: Decimal = Decimal("0.0005")
    #: ... at a funding time within this window from now
    funding_window: timedelta = timedelta(hours=8)


# ----------------------------------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class OpenPosition:
    """An open position as sizing and the limits need it (notional at mark, always positive)."""

    symbol: str
    side: PositionSide
    notional: Decimal
    unrealized_pnl: Decimal = ZERO
    margin_type: MarginType = MarginType.ISOLATED
    isolated_margin: Decimal = ZERO
    brackets: tuple[LeverageBracket, ...] = ()

    @classmethod
    def of(cls, position: Position, brackets: Sequence[LeverageBracket] = ()) -> OpenPosition:
        return cls(position.symbol, position.side, abs(position.notional), position.unrealized_pnl,
                   position.margin_type, position.isolated_margin, tuple(brackets))


@dataclass(frozen=True, slots=True)
class EntryPlan:
    symbol: str
    side: PositionSide
    quantity: Decimal
    reference_price: Decimal
    stop_price: Decimal
    take_profit_price: Decimal
    risk_amount: Decimal
    reason: str = ""
    #: leverage to set on the symbol before the entry (may be below the configured one: liquidation guard)
    leverage: int = 0
    stop_distance: Decimal = ZERO
    take_profit_distance: Decimal = ZERO
    liquidation_price: Decimal = ZERO
    #: which limit set the size: risk, position notional cap, total exposure cap, available margin, ...
    binding: str = ""
    risk_pct: Decimal = ZERO
    vol_scale: Decimal = ONE

    @property
    def ok(self) -> bool:
        return self.quantity > 0

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.reference_price

    def prices_at(self, rules: SymbolRules, entry: Decimal) -> tuple[Decimal, Decimal]:
        """Stop and take-profit re-anchored on the actual fill price, same distances as planned."""
        return _prices_from_distances(rules, self.side, entry, self.stop_distance, self.take_profit_distance)


@dataclass(frozen=True, slots=True)
class LiquidationCheck:
    ok: bool
    liquidation_price: Decimal
    distance: Decimal
    required: Decimal


# ----------------------------------------------------------------------------------------------- stops
def stop_distance(price: Decimal, atr: Decimal, cfg: RiskConfig, mult: Decimal | None = None) -> Decimal:
    """k × ATR clamped to [min %, max %] of the price (k = ``mult`` or the configured multiple)."""
    raw = atr * (cfg.stop_atr_mult if mult is None else mult)
    low = price * cfg.min_stop_pct / HUNDRED
    high = price * cfg.max_stop_pct / HUNDRED
    return min(max(raw, low), high)


def take_profit_distance(atr: Decimal, stop_dist: Decimal, cfg: RiskConfig, mult: Decimal | None = None) -> Decimal:
    """m × ATR, at least the minimum reward/risk times the stop distance."""
    return max(atr * (cfg.take_profit_atr_mult if mult is None else mult), stop_dist * cfg.min_reward_risk)


def protective_prices(rules: SymbolRules, side: PositionSide, entry: Decimal, stop_dist: Decimal,
                      atr: Decimal, cfg: RiskConfig, tp_mult: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """Stop and take-profit on the tick grid. The stop is rounded away from the entry (never tighter
    than planned would be a surprise; never looser than one tick either), the take-profit toward it."""
    return _prices_from_distances(rules, side, entry, stop_dist, take_profit_distance(atr, stop_dist, cfg, tp_mult))


def _prices_from_distances(rules: SymbolRules, side: PositionSide, entry: Decimal, stop_dist: Decimal,
                           tp_dist: Decimal) -> tuple[Decimal, Decimal]:
    if side is PositionSide.LONG:
        stop = round_price(rules, entry - stop_dist, rounding=ROUND_FLOOR)
        take = round_price(rules, entry + tp_dist, rounding=ROUND_FLOOR)
    else:
        stop = round_price(rules, entry + stop_dist, rounding=ROUND_CEILING)
        take = round_price(rules, entry - tp_dist, rounding=ROUND_CEILING)
    return stop, take


# ----------------------------------------------------------------------------------------------- risk %
def volatility_ratio(current_atr_pct: float, history: Sequence[float]) -> float | None:
    """Current ATR % over the median of its own history; ``None`` without usable history."""
    usable = [h for h in history if h > 0 and math.isfinite(h)]
    if not usable or not math.isfinite(current_atr_pct):
        return None
    return current_atr_pct / statistics.median(usable)


def volatility_scale(current_atr_pct: float, history: Sequence[float], cfg: RiskConfig) -> Decimal:
    """1 in normal volatility; ``threshold / ratio`` (floored at ``vol_min_scale``) above the threshold."""
    if cfg.vol_scale_threshold <= 0 or len(history) < cfg.vol_min_history:
        return ONE
    ratio = volatility_ratio(current_atr_pct, history)
    if ratio is None or Decimal(repr(ratio)) <= cfg.vol_scale_threshold:
        return ONE
    scale = cfg.vol_scale_threshold / Decimal(repr(ratio))
    return max(cfg.vol_min_scale, scale).quantize(SCALE_QUANTUM, rounding=ROUND_FLOOR)


def kelly_fraction(r_multiples: Sequence[float]) -> float | None:
    """Full Kelly fraction ``W − (1 − W) / b`` from R-multiples (b = mean win / mean loss)."""
    if not r_multiples:
        return None
    wins = [r for r in r_multiples if r > 0]
    losses = [-r for r in r_multiples if r < 0]
    w = len(wins) / len(r_multiples)
    if not losses:
        return w
    if not wins:
        return -1.0
    b = statistics.fmean(wins) / statistics.fmean(losses)
    return w - (1 - w) / b


def kelly_risk_pct(r_multiples: Sequence[float], cfg: RiskConfig) -> Decimal | None:
    """Risk % from capped fractional Kelly over the last ``kelly_lookback`` trades, ``None`` when off or
    before ``kelly_min_trades`` trades (the configured risk % applies then)."""
    if not cfg.kelly_enabled or len(r_multiples) < cfg.kelly_min_trades:
        return None
    f = kelly_fraction(list(r_multiples)[-cfg.kelly_lookback:])
    if f is None:
        return None
    pct = cfg.kelly_fraction * Decimal(repr(f)) * HUNDRED
    return min(max(pct, cfg.kelly_min_risk_pct), cfg.kelly_max_risk_pct).quantize(SCALE_QUANTUM)


# ----------------------------------------------------------------------------------------------- liquidation
def brackets_of(rules: SymbolRules) -> tuple[LeverageBracket, ...]:
    return rules.brackets or DEFAULT_BRACKETS


def bracket_notional_cap(brackets: Sequence[LeverageBracket], leverage: int) -> Decimal | None:
    """Largest notional Binance allows at ``leverage`` (``None``: no bracket allows that leverage)."""
    caps = [b.notional_cap for b in (brackets or DEFAULT_BRACKETS) if b.initial_leverage >= leverage]
    return max(caps) if caps else None


def cross_wallet_for_new(wallet_balance: Decimal, open_positions: Sequence[OpenPosition]) -> Decimal:
    """``WB`` a new CROSSED position would see: cross wallet (wallet minus isolated margins) minus the
    maintenance margin of the other cross positions plus their unrealised PnL."""
    wb = wallet_balance - sum((p.isolated_margin for p in open_positions
                               if p.margin_type is MarginType.ISOLATED), ZERO)
    for p in open_positions:
        if p.margin_type is MarginType.CROSSED:
            wb += p.unrealized_pnl - maintenance_margin(p.notional, p.brackets or DEFAULT_BRACKETS)
    return wb


def liquidation_check(*, side: PositionSide, quantity: Decimal, price: Decimal, stop_dist: Decimal, leverage: int,
                      brackets: Sequence[LeverageBracket], cfg: RiskConfig,
                      margin_type: MarginType = MarginType.ISOLATED,
                      cross_wallet: Decimal | None = None) -> LiquidationCheck:
    """Is the liquidation price at least ``liq_min_stop_multiple`` stop distances from ``price``?

    ISOLATED: the wallet is the initial margin ``notional / leverage``. CROSSED: ``cross_wallet``
    (see :func:`cross_wallet_for_new`).
    """
    isolated = margin_type is MarginType.ISOLATED or cross_wallet is None
    wallet = quantity * price / leverage if isolated or cross_wallet is None else cross_wallet
    lp = liquidation_price(side, quantity, price, wallet, brackets or DEFAULT_BRACKETS)
    required = stop_dist * cfg.liq_min_stop_multiple
    if lp <= 0:
        return LiquidationCheck(True, ZERO, price, required)
    distance = (price - lp) * side.sign
    return LiquidationCheck(distance >= required, lp, distance, required)


# ----------------------------------------------------------------------------------------------- sizing
@dataclass(frozen=True, slots=True)
class _Sized:
    quantity: Decimal
    binding: str
    refusal: str = ""


def _size_at(*, rules: SymbolRules, price: Decimal, qty_risk: Decimal, equity: Decimal, available: Decimal,
             exposure: Decimal, leverage: int, cfg: RiskConfig) -> _Sized:
    """Quantity at one leverage: the risk quantity under every notional cap, floored to the step."""
    caps: list[tuple[Decimal, str]] = [(equity * cfg.max_position_notional_pct / HUNDRED, "position notional cap")]
    if cfg.max_position_notional_usdt > 0:
        caps.append((cfg.max_position_notional_usdt, "position notional cap"))
    room = equity * cfg.max_total_exposure_pct / HUNDRED - exposure
    if room <= 0:
        return _Sized(ZERO, "total exposure cap", f"open exposure {exposure:.2f} USDT already at the cap of "
                      f"{cfg.max_total_exposure_pct}% of equity")
    caps.append((room, "total exposure cap"))
    caps.append((max(available, ZERO) * leverage * cfg.margin_headroom, "available margin"))
    bracket_cap = bracket_notional_cap(brackets_of(rules), leverage)
    if bracket_cap is None:
        return _Sized(ZERO, "bracket max notional", f"no leverage bracket allows {leverage}x")
    caps.append((bracket_cap, "bracket max notional"))
    cap, cap_name = min(caps, key=lambda c: c[0])
    qty, binding = qty_risk, "risk"
    if qty * price > cap:
        qty, binding = cap / price, cap_name
    if qty > rules.market_max_qty:
        qty, binding = rules.market_max_qty, "max quantity"
    qty = round_quantity(rules, qty)
    while qty > 0 and qty * price > cap:  # division may round up in the last digit
        qty -= rules.market_step_size
    return _Sized(max(qty, ZERO), binding)


def _refusal_for_filters(rules: SymbolRules, qty: Decimal, price: Decimal, binding: str) -> str:
    if qty <= 0 or qty < rules.market_min_qty:
        return f"size {qty} below the minimum quantity {rules.market_min_qty} ({binding} binds)"
    if qty * price < rules.min_notional:
        return (f"order value {(qty * price):.2f} USDT below the minimum notional {rules.min_notional} USDT "
                f"({binding} binds)")
    return ""


def effective_risk_pct(*, atr_pct: float, cfg: RiskConfig, atr_pct_history: Sequence[float] = (),
                       trade_r_multiples: Sequence[float] = (), size_mult: Decimal = ONE) -> tuple[Decimal, Decimal]:
    """(risk %, volatility scale): Kelly (if on and enough trades) or the configured %, × vol scale × mult."""
    base = kelly_risk_pct(trade_r_multiples, cfg)
    base = cfg.risk_per_trade_pct if base is None else base
    scale = volatility_scale(atr_pct, atr_pct_history, cfg)
    return base * scale * size_mult, scale


def plan_entry(*, rules: SymbolRules, side: PositionSide, price: Decimal, atr: Decimal, equity: Decimal,
               available: Decimal, cfg: RiskConfig, open_positions: Sequence[OpenPosition] = (),
               margin_type: MarginType = MarginType.ISOLATED, wallet_balance: Decimal | None = None,
               atr_pct_history: Sequence[float] = (), trade_r_multiples: Sequence[float] = (),
               stop_mult: Decimal | None = None, tp_mult: Decimal | None = None,
               size_mult: Decimal = ONE) -> EntryPlan:
    """Size an entry at ``price`` (the reference/mark price) for the given ATR and account.

    ``open_positions`` feed the exposure cap and, for CROSSED margin, the liquidation guard (with
    ``wallet_balance``); ``atr_pct_history`` the volatility scaling; ``trade_r_multiples`` (the symbol's
    closed trades, oldest first) the optional Kelly sizing; ``stop_mult``/``tp_mult``/``size_mult`` come
    from ``engine.policy.adaptive``.
    """
    dist = stop_distance(price, atr, cfg, stop_mult)
    tp_dist = take_profit_distance(atr, dist, cfg, tp_mult)
    stop, take = _prices_from_distances(rules, side, price, dist, tp_dist)
    atr_pct = float(atr / price * HUNDRED) if price > 0 else 0.0
    risk_pct, vol_scale = effective_risk_pct(atr_pct=atr_pct, cfg=cfg, atr_pct_history=atr_pct_history,
                                             trade_r_multiples=trade_r_multiples, size_mult=size_mult)
    risk_amount = equity * risk_pct / HUNDRED

    def plan(qty: Decimal, reason: str = "", *, leverage: int = cfg.leverage, binding: str = "",
             lp: Decimal = ZERO) -> EntryPlan:
        return EntryPlan(rules.symbol, side, qty, price, stop, take, risk_amount, reason, leverage, dist, tp_dist,
                         lp, binding, risk_pct, vol_scale)

    if equity <= 0:
        return plan(ZERO, "no equity")
    if stop <= 0 or take <= 0:
        return plan(ZERO, "stop or take-profit would be at a non-positive price")
    if risk_amount <= 0:
        return plan(ZERO, "risk per trade is zero")
    # risk per unit includes the exit's taker fee at the stop, so a stopped trade loses ~risk_amount
    per_unit = abs(price - stop) + (price + stop) * cfg.taker_fee
    qty_risk = risk_amount / per_unit
    exposure = sum((p.notional for p in open_positions), ZERO)
    cross_wallet = None
    if margin_type is MarginType.CROSSED:
        cross_wallet = cross_wallet_for_new(equity if wallet_balance is None else wallet_balance, open_positions)
    brackets = brackets_of(rules)
    last_liq = f"no leverage from {cfg.leverage}x down"
    lowest = max(1, min(cfg.min_leverage, cfg.leverage))
    for leverage in range(cfg.leverage, lowest - 1, -1):
        sized = _size_at(rules=rules, price=price, qty_risk=qty_risk, equity=equity, available=available,
                         exposure=exposure, leverage=leverage, cfg=cfg)
        if sized.refusal and sized.binding == "bracket max notional":
            last_liq = sized.refusal
            continue  # above the symbol's top leverage: a lower one may be allowed
        if sized.refusal:
            return plan(ZERO, sized.refusal, leverage=leverage, binding=sized.binding)
        refusal = _refusal_for_filters(rules, sized.quantity, price, sized.binding)
        if refusal:
            return plan(ZERO, refusal, leverage=leverage, binding=sized.binding)
        check = liquidation_check(side=side, quantity=sized.quantity, price=price, stop_dist=dist,
                                  leverage=leverage, brackets=brackets, cfg=cfg, margin_type=margin_type,
                                  cross_wallet=cross_wallet)
        if check.ok or cfg.liq_min_stop_multiple <= 0:
            if leverage != cfg.leverage:
                log.info("%s: leverage lowered from %dx to %dx by the liquidation guard", rules.symbol,
                         cfg.leverage, leverage)
            return plan(sized.quantity, leverage=leverage, binding=sized.binding, lp=check.liquidation_price)
        last_liq = (f"liquidation price {check.liquidation_price:.8g} only {check.distance:.8g} from the entry at "
                    f"{leverage}x; needs {check.required:.8g} ({cfg.liq_min_stop_multiple} x the stop distance)")
    return plan(ZERO, f"liquidation guard: {last_liq}", leverage=lowest, binding="liquidation guard")


# ----------------------------------------------------------------------------------------------- limits
def free_slots(equity: Decimal, open_count: int, cfg: LimitsConfig) -> int:
    """Position slots left: ``min(max_open_positions, floor(equity / equity_per_slot)) − open``."""
    limit = cfg.max_open_positions
    if cfg.equity_per_slot > 0:
        limit = min(limit, int(max(equity, ZERO) // cfg.equity_per_slot))
    return max(limit - open_count, 0)


def correlation(a: Sequence[float], b: Sequence[float], min_points: int = 2) -> float | None:
    """Pearson correlation of the last common ``min(len(a), len(b))`` points; ``None`` if undefined."""
    n = min(len(a), len(b))
    if n < max(min_points, 2):
        return None
    xs, ys = list(a)[-n:], list(b)[-n:]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def correlation_block(symbol: str, side: PositionSide, returns: Mapping[str, Sequence[float]],
                      open_positions: Sequence[OpenPosition], cfg: LimitsConfig) -> str | None:
    """Refuse a position whose recent returns correlate above the threshold with more than
    ``max_correlated`` existing same-side positions."""
    if cfg.correlation_threshold >= 1 or symbol not in returns:
        return None
    correlated: list[str] = []
    for p in open_positions:
        if p.side is not side or p.symbol == symbol or p.symbol not in returns:
            continue
        rho = correlation(returns[symbol], returns[p.symbol], cfg.correlation_min_points)
        if rho is not None and rho > cfg.correlation_threshold:
            correlated.append(f"{p.symbol} {rho:.2f}")
    if len(correlated) > cfg.max_correlated:
        return (f"correlation guard: {side.value} {symbol} correlates above {cfg.correlation_threshold} with "
                f"{len(correlated)} open {side.value} positions ({', '.join(correlated)}); "
                f"at most {cfg.max_correlated}")
    return None


def funding_block(side: PositionSide, funding_rate: Decimal, next_funding_time: datetime, now: datetime,
                  cfg: LimitsConfig) -> str | None:
    """Refuse an entry that would pay more than ``funding_max_pay_rate`` at the next funding time (longs pay
    a positive rate, shorts a negative one), if that time is within ``funding_window``."""
    if cfg.funding_max_pay_rate <= 0 or next_funding_time - now > cfg.funding_window:
        return None
    paid = funding_rate * side.sign
    if paid > cfg.funding_max_pay_rate:
        return (f"funding guard: a {side.value} would pay {paid * HUNDRED:.4f}% at "
                f"{next_funding_time:%H:%M} UTC (limit {cfg.funding_max_pay_rate * HUNDRED:.4f}%)")
    return None


def entry_limits_block(*, symbol: str, side: PositionSide, equity: Decimal, open_positions: Sequence[OpenPosition],
                       cfg: LimitsConfig, now: datetime, returns: Mapping[str, Sequence[float]] | None = None,
                       funding_rate: Decimal | None = None, next_funding_time: datetime | None = None) -> str | None:
    """The first open-position limit that refuses this entry, or ``None``."""
    if any(p.symbol == symbol for p in open_positions):
        return "already in a position"
    if free_slots(equity, len(open_positions), cfg) <= 0:
        per_slot = f", one per {cfg.equity_per_slot} USDT of equity" if cfg.equity_per_slot > 0 else ""
        return f"no free position slot (max {cfg.max_open_positions}{per_slot})"
    if returns is not None and (reason := correlation_block(symbol, side, returns, open_positions, cfg)):
        return reason
    if funding_rate is not None and next_funding_time is not None:
        return funding_block(side, funding_rate, next_funding_time, now, cfg)
    return None


def log_returns(closes: Sequence[float]) -> list[float]:
    """Log returns of a close series (non-positive prices are skipped)."""
    out: list[float] = []
    for prev, cur in itertools.pairwise(closes):
        if prev > 0 and cur > 0:
            out.append(math.log(cur / prev))
    return out
