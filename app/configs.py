"""Typed engine configurations built from ``Settings`` (one place that maps operator keys to the engine)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from engine.policy.adaptive import AdaptiveConfig
from engine.policy.exits import ExitConfig, LadderStep, TrailMethod
from engine.policy.risk import LimitsConfig, RiskConfig
from engine.trading.breakers import BreakerConfig
from settings import Settings, parse_ladder
from strategies.labels import BarrierParams

HUNDRED = Decimal(100)


def risk_config(s: Settings) -> RiskConfig:
    return RiskConfig(
        risk_per_trade_pct=s.risk_per_trade_pct, leverage=s.leverage,
        max_position_notional_pct=s.max_position_notional_pct, stop_atr_mult=s.stop_atr_mult,
        take_profit_atr_mult=s.take_profit_atr_mult, min_stop_pct=s.min_stop_pct, max_stop_pct=s.max_stop_pct,
        min_reward_risk=s.min_reward_risk, taker_fee=s.paper_taker_fee,
        max_position_notional_usdt=s.max_position_notional_usdt, max_total_exposure_pct=s.max_total_exposure_pct,
        vol_scale_threshold=s.vol_scale_threshold, vol_min_scale=s.vol_min_scale, kelly_enabled=s.kelly_enabled,
        kelly_fraction=s.kelly_fraction, kelly_min_trades=s.kelly_min_trades, kelly_max_risk_pct=s.kelly_max_risk_pct,
        liq_min_stop_multiple=s.liq_min_stop_multiple, min_leverage=min(s.min_leverage, s.leverage))


def limits_config(s: Settings) -> LimitsConfig:
    return LimitsConfig(
        max_open_positions=s.max_open_positions, equity_per_slot=s.equity_per_slot_usdt,
        correlation_threshold=s.correlation_threshold, max_correlated=s.max_correlated_positions,
        funding_max_pay_rate=s.funding_max_pay_pct / HUNDRED,
        funding_window=timedelta(minutes=s.funding_window_minutes))


def adaptive_config(s: Settings) -> AdaptiveConfig:
    return AdaptiveConfig(enabled=s.adaptive_enabled, min_samples=s.adaptive_min_samples,
                          min_reward_risk=s.min_reward_risk)


def _hours(value: float) -> timedelta | None:
    return timedelta(hours=value) if value > 0 else None


def exit_config(s: Settings) -> ExitConfig:
    return ExitConfig(
        trail_enabled=s.trail_enabled, trail_activation_r=s.trail_activation_r,
        trail_method=TrailMethod(s.trail_method), trail_lock_share=s.trail_lock_share,
        trail_atr_mult=s.trail_atr_mult, min_stop_step_pct=s.min_stop_step_pct,
        ladder=tuple(LadderStep(r, f) for r, f in parse_ladder(s.partial_ladder)),
        breakeven_after_first=s.breakeven_after_first, time_stop=_hours(s.time_stop_hours),
        stale_after=_hours(s.stale_after_hours), signal_exit_score=s.signal_exit_score)


def breaker_config(s: Settings) -> BreakerConfig:
    return BreakerConfig(
        daily_loss_pct=s.daily_loss_limit_pct, max_drawdown_pct=s.max_drawdown_pct,
        drawdown_close_all=s.drawdown_close_all, max_consecutive_losses=s.max_consecutive_losses,
        consecutive_losses_pause=timedelta(hours=s.consecutive_losses_pause_hours),
        volatility_ratio=s.volatility_breaker_ratio, api_errors_max=s.api_errors_max,
        api_errors_window=timedelta(minutes=s.api_errors_window_minutes),
        symbol_cooldown=timedelta(minutes=s.symbol_cooldown_minutes), symbol_daily_loss_pct=s.symbol_daily_loss_pct)


def barrier_params(s: Settings, horizon_hours: float) -> BarrierParams:
    """Vigil's own stop and take-profit rule as triple barriers (the ML labels and the vote outcomes); the horizon
    in 5m candles."""
    cost = float((s.paper_taker_fee * 100 + s.paper_slippage_pct) * 2)
    return BarrierParams(horizon=max(1, round(horizon_hours * 12)), stop_mult=float(s.stop_atr_mult),
                         tp_mult=float(s.take_profit_atr_mult), min_stop_pct=float(s.min_stop_pct),
                         max_stop_pct=float(s.max_stop_pct), min_reward_risk=float(s.min_reward_risk),
                         cost_pct=cost)
