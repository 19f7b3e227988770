"""The daily summary and the startup message (texts built from the façade)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from decimal import Decimal

from bot.format import esc, money, pct, when
from bot.views import mode_badge
from engine.service import EngineService, StatusReport


def parse_utc_time(value: str) -> time | None:
    """``"HH:MM"`` (UTC) → time; empty/"off" → ``None`` (no daily summary). Raises ``ValueError`` otherwise."""
    value = value.strip().lower()
    if value in ("", "off", "none"):
        return None
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
    if match is None:
        raise ValueError(f"NOTIFY_DAILY_SUMMARY_UTC: expected HH:MM in UTC (e.g. 00:00) or off, got {value!r}")
    return time(int(match[1]), int(match[2]))


def next_run(now: datetime, at: time) -> datetime:
    """The first moment ≥ now at ``at`` UTC."""
    candidate = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return candidate if candidate >= now else candidate + timedelta(days=1)


async def daily_summary(service: EngineService) -> str:
    now = service.now()
    status = await service.status()
    trades = await service.realized_since(1)
    net = sum((t.net_pnl for t in trades), Decimal(0))
    wins = sum(1 for t in trades if t.net_pnl > 0)
    lines = [f"📊 <b>Daily summary</b> · {mode_badge(status.mode)} · {when(now)}",
             f"State {esc(status.state)}" + (f" — {esc(status.halt_reason)}" if status.halt_reason else "")]
    if status.exchange_error:
        lines.append(f"⚠️ exchange unreachable: {esc(status.exchange_error)}")
    else:
        series = await service.equity_series(1)
        change = ""
        if series and series[0].equity:
            start = series[0].equity
            change = f" ({money(status.equity - start)}, {pct((status.equity - start) / start * 100)} in 24 h)"
        lines.append(f"Equity <b>{money(status.equity, signed=False)}</b>{change}")
    lines.append(f"Last 24 h: {len(trades)} closed trade{'s' if len(trades) != 1 else ''}, {wins} won, "
                 f"net <b>{money(net)}</b>")
    if status.positions:
        upnl = sum((p.unrealized_pnl for p in status.positions), Decimal(0))
        symbols = ", ".join(esc(p.symbol) for p in status.positions)
        lines.append(f"Open: {symbols} · uPnL {money(upnl)}")
    else:
        lines.append("No open positions")
    return "\n".join(lines)


def _state_lines(title: str, status: StatusReport) -> list[str]:
    lines = [f"{title} · {mode_badge(status.mode)} · {esc(status.state)}"
             + (f" — {esc(status.halt_reason)}" if status.halt_reason else "")]
    if status.exchange_error:
        lines.append(f"⚠️ exchange unreachable: {esc(status.exchange_error)}")
    else:
        lines.append(f"Equity {money(status.equity, signed=False)} · {len(status.positions)} open position"
                     f"{'s' if len(status.positions) != 1 else ''}")
    lines.append(f"Next scan {when(status.next_scan)}")
    return lines


async def startup_message(service: EngineService, *, pending: int) -> str:
    lines = _state_lines("🚀 <b>Vigil started</b>", await service.status())
    if pending:
        lines.append(f"({pending} notification{'s' if pending != 1 else ''} queued while offline came first.)")
    lines.append("Send /help for the commands.")
    return "\n".join(lines)


async def greeting(service: EngineService, *, queued: int) -> str:
    """The answer to /start: who is talking, the state, and where to begin."""
    status = await service.status()
    lines = _state_lines("👋 <b>Hello, this is Vigil</b>", status)
    if status.mode == "paper":
        lines.append("Paper mode: simulated orders on real prices, no money at risk.")
    else:
        lines.append("💰 Live mode: orders use real money on Binance.")
    if status.state != "running":
        lines.append("Entries are halted; /resume trades again.")
    lines += [
        "",
        "<b>Where to begin</b>",
        "• /status — the state at a glance, with a refresh button",
        "• /positions, /pnl, /daily, /trades — what is open and what was made",
        "• /pause stops new entries; /kill closes everything and halts (asks first)",
        "• /paper off switches to live trading, once you trust it",
        "• /help — every command",
        "",
        "Trades, stops, breakers and alerts are reported in this chat.",
    ]
    if queued:
        lines.append("Notifications that waited for this chat to open follow now.")
    return "\n".join(lines)
