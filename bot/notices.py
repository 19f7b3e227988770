"""Engine events as Telegram notifications: which category each belongs to, and its HTML text."""

from __future__ import annotations

from decimal import Decimal

from bot.format import duration, esc, money, pct, price, qty
from engine.console import describe
from engine.events import (
    Alert,
    BreakerReset,
    BreakerTripped,
    Event,
    Level,
    PartialExit,
    ScanCompleted,
    StateChanged,
    StopMoved,
    TradeClosed,
    TradeOpened,
)
from engine.trading.trader import MANUAL_VOTE
from storage.records import TradeRecord

CATEGORIES: tuple[str, ...] = ("trade_opened", "trade_closed", "stop_moved", "partial_exit", "breaker", "state",
                               "alert", "scan", "daily_summary", "other")
LEVELS: tuple[str, ...] = ("on", "silent", "off")
VOTE_CHARS = 100  # a vote and its reason in the trade-opened notification
DEFAULT_LEVELS: dict[str, str] = {**{c: "on" for c in CATEGORIES}, "stop_moved": "silent", "scan": "off"}


def category(event: Event) -> str | None:
    """The notification category, or ``None`` for events that never become a message."""
    match event:
        case TradeOpened():
            return "trade_opened"
        case TradeClosed():
            return "trade_closed"
        case StopMoved():
            return "stop_moved"
        case PartialExit():
            return "partial_exit"
        case BreakerTripped() | BreakerReset():
            return "breaker"
        case StateChanged():
            return None if event.state == "started" else "state"  # the bot sends its own startup message
        case Alert():
            return "alert"
        case ScanCompleted():
            return "scan"
    return "other"


def always_loud(event: Event) -> bool:
    """Critical alerts need the operator: they ignore ``silent``/``off``."""
    return isinstance(event, Alert) and event.level is Level.CRITICAL


def render(event: Event, trade: TradeRecord | None = None) -> str:
    """The message for ``event``; a closed trade's record (when known) adds its duration and leverage."""
    match event:
        case TradeOpened():
            return _opened(event)
        case TradeClosed():
            return _closed(event, trade)
        case StopMoved():
            return (f"🛡 <b>Stop moved</b> #{event.trade_id} {esc(event.symbol)}: {price(event.old_stop)} → "
                    f"<b>{price(event.new_stop)}</b> ({esc(event.reason)})")
        case PartialExit():
            return (f"✂️ <b>Partial exit</b> #{event.trade_id} {esc(event.symbol)}: {qty(event.quantity)} @ "
                    f"{price(event.price)}, P&amp;L {money(event.realized_pnl)} ({esc(event.reason)})")
        case BreakerTripped():
            return f"🚨 <b>Breaker tripped</b>: {esc(event.breaker)} — {esc(event.reason)}\nNew entries are blocked."
        case BreakerReset():
            return f"✅ <b>Breaker reset</b>: {esc(event.breaker)} — {esc(event.reason)}"
        case StateChanged():
            detail = f" — {esc(event.detail)}" if event.detail else ""
            return f"ℹ️ <b>{esc(event.state.capitalize())}</b>{detail}"
        case Alert():
            icon = {Level.INFO: "ℹ️", Level.WARNING: "⚠️", Level.CRITICAL: "🆘"}[event.level]
            return f"{icon} <b>{esc(event.level.value)}</b>: {esc(event.message)}"
        case ScanCompleted():
            extra = f" ({esc(event.skipped_reason)})" if event.skipped_reason else ""
            return f"🔎 Scan: {event.symbols} symbols, {event.signals} signals, {event.opened} opened{extra}"
    return esc(describe(event))


def _opened(e: TradeOpened) -> str:
    notional = e.quantity * e.entry_price
    stop_pct = _distance(e.stop_price, e.entry_price)
    tp_pct = _distance(e.take_profit_price, e.entry_price)
    if MANUAL_VOTE in e.votes:
        origin = ["Opened by hand (/long, /short)"]
    else:
        origin = [f"Consensus {e.score:.2f} · votes:", *(f"• {esc(_short(v))}" for v in e.votes)] if e.votes \
            else [f"Consensus {e.score:.2f}"]
    return "\n".join([
        f"🟢 <b>Opened</b> #{e.trade_id} <b>{esc(e.symbol)}</b> {esc(e.side)} {e.leverage}x · {esc(e.mode)}",
        f"Size {qty(e.quantity)} (≈ {money(notional, signed=False)}) @ {price(e.entry_price)}",
        f"SL {price(e.stop_price)} ({pct(stop_pct)}) · TP {price(e.take_profit_price)} ({pct(tp_pct)})",
        f"Liquidation {price(e.liquidation_price)} · fee {money(-e.fee)}",
        *origin,
        f"/why {esc(e.symbol)} for the full reasons" if e.votes and MANUAL_VOTE not in e.votes else "",
    ]).rstrip()


def _short(vote: str, limit: int = VOTE_CHARS) -> str:
    """One vote (``voter SIDE 0.80 — reason``) cut to fit a phone line or two."""
    return vote if len(vote) <= limit else vote[:limit - 1] + "…"


def _closed(e: TradeClosed, trade: TradeRecord | None) -> str:
    icon = "✅" if e.net_pnl > 0 else "🔴"
    notional = e.quantity * e.entry_price
    returns = [f"{pct(e.net_pnl / notional * 100)} of the position"] if notional else []
    if trade is not None and trade.leverage > 0 and notional:
        returns.append(f"{pct(e.net_pnl / (notional / trade.leverage) * 100)} on margin at {trade.leverage}x")
    held = e.time - trade.opened_at if trade is not None and trade.opened_at is not None else None
    return "\n".join([
        f"{icon} <b>Closed</b> #{e.trade_id} <b>{esc(e.symbol)}</b> {esc(e.side)} · {esc(e.reason)} · {esc(e.mode)}",
        f"{qty(e.quantity)} @ {price(e.entry_price)} → {price(e.exit_price)}"
        + (f" · held {duration(held)}" if held is not None else ""),
        f"P&amp;L {money(e.realized_pnl)} · fees {money(-e.fees)} · funding {money(e.funding)}",
        f"Net <b>{money(e.net_pnl)}</b>" + (f" ({', '.join(returns)})" if returns else ""),
    ])


def _distance(target: Decimal, entry: Decimal) -> Decimal:
    return (target - entry) / entry * 100 if entry else Decimal(0)
