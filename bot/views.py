"""Command replies as HTML: what the operator reads on a phone. Pure functions of the façade's values."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from bot.format import ago, duration, esc, money, pct, price, qty, table, when
from engine.exchange.types import Balance
from engine.policy.risk import EntryPlan
from engine.results import Period, PeriodResult, TradeStats
from engine.service import BreakerView, PerformanceReport, PositionView, StatusReport
from storage.records import TradeRecord

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
STATE_ICON = {"running": "▶️", "paused": "⏸", "stopped": "⏹"}


def mode_badge(mode: str) -> str:
    return "🧪 PAPER" if mode == "paper" else "💰 LIVE"


def status(report: StatusReport, now: datetime, tripped: Sequence[str] = ()) -> str:
    icon = STATE_ICON.get(report.state, "🛑")
    state = esc(report.state) + (f" — {esc(report.halt_reason)}" if report.halt_reason else "")
    upnl = sum((p.unrealized_pnl for p in report.positions), Decimal(0))
    lines = [f"<b>Vigil</b> · {mode_badge(report.mode)} · {icon} {state}"]
    if tripped:
        lines.append(f"🚨 Breakers tripped: {esc(', '.join(tripped))} — no new entries (/breakers)")
    else:
        lines.append("Breakers: none tripped")
    if report.exchange_error:
        lines.append(f"⚠️ exchange unreachable: {esc(report.exchange_error)}")
    else:
        lines.append(f"Equity <b>{money(report.equity, signed=False)}</b>")
        lines.append(f"Wallet {money(report.wallet, signed=False)} · free {money(report.available, signed=False)}")
    lines.append(f"Today realised {money(report.today_realized)}")
    if report.positions:
        lines.append(f"Open positions {len(report.positions)} · uPnL {money(upnl)}")
        lines.append(table([[p.symbol, p.side, f"{p.leverage}x", _signed(p.unrealized_pnl)]
                            for p in report.positions], "lllr"))
    else:
        lines.append("No open positions")
    last_scan = datetime.fromisoformat(report.last_scan) if report.last_scan else None
    lines.append(f"Last scan {ago(last_scan, now)} · next {ago(report.next_scan, now)}")
    monitor = datetime.fromisoformat(report.last_monitor) if report.last_monitor else None
    lines.append(f"Last monitor tick {ago(monitor, now)}")
    return "\n".join(lines)


def positions(items: Sequence[PositionView], mode: str, now: datetime) -> str:
    if not items:
        return f"No open positions ({mode_badge(mode)})."
    blocks = [f"<b>Open positions</b> · {mode_badge(mode)}"]
    for p in items:
        notional = p.quantity * p.entry_price
        change = p.unrealized_pnl / notional * 100 if notional else Decimal(0)
        blocks.append("\n".join([
            f"<b>{esc(p.symbol)}</b> {esc(p.side)} {p.leverage}x · #{p.trade_id}",
            f"Size {qty(p.quantity)} @ {price(p.entry_price)} → mark {price(p.mark_price)}",
            f"uPnL {money(p.unrealized_pnl)} ({pct(change)})",
            f"SL {price(p.stop_price)} · TP {price(p.take_profit_price)} · Liq {price(p.liquidation_price)}",
            f"Opened {when(p.opened_at)} ({ago(p.opened_at, now)})",
        ]))
    return "\n\n".join(blocks)


def balance(value: Balance, mode: str) -> str:
    return "\n".join([
        f"<b>Balance</b> · {mode_badge(mode)}",
        f"Wallet {money(value.wallet_balance, signed=False)}",
        f"Unrealised {money(value.unrealized_pnl)}",
        f"Equity <b>{money(value.equity, signed=False)}</b>",
        f"Available {money(value.available_balance, signed=False)}",
    ])


def pnl(trades: Sequence[TradeRecord], days: int, mode: str) -> str:
    head = f"<b>Realised P&amp;L, last {days} day{'s' if days != 1 else ''}</b> · {mode_badge(mode)}"
    if not trades:
        return f"{head}\nNo closed trades in that period."
    per_day: dict[str, list[TradeRecord]] = defaultdict(list)
    for t in trades:
        per_day[f"{t.closed_at:%Y-%m-%d}" if t.closed_at else "?"].append(t)
    rows = [["day", "n", "net USDT"]]
    rows += [[day, str(len(ts)), _signed(sum((t.net_pnl for t in ts), Decimal(0)))]
             for day, ts in sorted(per_day.items(), reverse=True)]
    total = sum((t.net_pnl for t in trades), Decimal(0))
    fees = sum((t.fees for t in trades), Decimal(0))
    funding = sum((t.funding for t in trades), Decimal(0))
    return "\n".join([head, table(rows, "lrr"),
                      f"Total <b>{money(total)}</b> over {len(trades)} trade{'s' if len(trades) != 1 else ''}",
                      f"Fees {money(-fees)} · funding {money(funding)}"])


PERIOD_TITLE = {Period.DAY: "Daily", Period.WEEK: "Weekly", Period.MONTH: "Monthly"}


def period_results(rows: Sequence[PeriodResult], period: Period, mode: str) -> str:
    head = f"<b>{PERIOD_TITLE[period]} realised P&amp;L</b> · {mode_badge(mode)}"
    label = {Period.DAY: "day", Period.WEEK: "week of", Period.MONTH: "month"}[period]
    table_rows = [[label, "n", "win%", "net USDT"]]
    for r in rows:
        start = f"{r.start:%Y-%m}" if period is Period.MONTH else f"{r.start:%Y-%m-%d}"
        rate = f"{r.wins / r.trades * 100:.0f}" if r.trades else "—"
        table_rows.append([start, str(r.trades), rate, _signed(r.net_pnl)])
    total = sum((r.net_pnl for r in rows), Decimal(0))
    count = sum(r.trades for r in rows)
    return "\n".join([head, table(table_rows, "lrrr"),
                      f"Total <b>{money(total)}</b> over {count} trade{'s' if count != 1 else ''} "
                      "(net of fees and funding)"])


def stats(report: TradeStats, mode: str) -> str:
    if not report.trades:
        return f"No closed trades yet ({mode_badge(mode)})."
    reasons = [["exit reason", "n", "win%", "net"]]
    reasons += [[g.name[:16], str(g.trades), f"{g.win_rate * 100:.0f}", _signed(g.net_pnl)] for g in report.reasons]
    sides = [["side", "n", "win%", "net"]]
    sides += [[g.name, str(g.trades), f"{g.win_rate * 100:.0f}", _signed(g.net_pnl)] for g in report.sides]
    plural = "s" if report.trades != 1 else ""
    lines = [f"<b>Trade statistics</b> · {mode_badge(mode)} · {report.trades} closed trade{plural}",
             table(reasons, "lrrr"), table(sides, "lrrr")]
    d = report.durations
    if d is not None:
        lines.append(f"Duration: average {duration(d.average)}, median {duration(d.median)}, "
                     f"shortest {duration(d.shortest)}, longest {duration(d.longest)}")
        lines.append(f"Average hold: winners {duration(d.average_win)} · losers {duration(d.average_loss)}")
    return "\n".join(lines)


def trades(items: Sequence[TradeRecord], mode: str) -> str:
    if not items:
        return f"No closed trades yet ({mode_badge(mode)})."
    rows = [["#", "symbol", "side", "net", "exit"]]
    rows += [[str(t.id), t.symbol, t.side[0], _signed(t.net_pnl), (t.exit_reason or "?")[:12]] for t in items]
    total = sum((t.net_pnl for t in items), Decimal(0))
    return "\n".join([f"<b>Last {len(items)} closed trade{'s' if len(items) != 1 else ''}</b> · {mode_badge(mode)}",
                      table(rows, "lllrl"), f"Net of these {money(total)} (after fees and funding)"])


def performance(report: PerformanceReport, mode: str) -> str:
    t = report.total
    if not t.trades:
        return f"No closed trades yet ({mode_badge(mode)})."
    factor = "∞" if t.profit_factor is None else f"{t.profit_factor:.2f}"
    rows = [["symbol", "n", "win%", "net"]]
    rows += [[s.symbol, str(s.trades), f"{s.win_rate * 100:.0f}", _signed(s.net_pnl)] for s in report.by_symbol]
    return "\n".join([
        f"<b>Performance</b> · {mode_badge(mode)} · all closed trades",
        f"Trades {t.trades} · win rate {t.win_rate * 100:.0f} % · net <b>{money(t.net_pnl)}</b>",
        f"Profit factor {factor} · best {money(t.best)} · worst {money(t.worst)}",
        f"Max drawdown {money(report.max_drawdown)} · fees {money(-t.fees)} · funding {money(t.funding)}",
        table(rows, "lrrr"),
    ])


def config(values: dict[str, str], notify_levels: dict[str, str]) -> str:
    rows = [[key, value if value != "" else "—"] for key, value in sorted(values.items())]
    levels = [[f"notify.{cat}", level] for cat, level in sorted(notify_levels.items())]
    return "\n".join(["<b>Configuration</b> (secrets hidden)", table(rows, "ll"),
                      "<b>Notifications</b> (/set notify.CATEGORY on|silent|off)", table(levels, "ll")])


def breakers(items: Sequence[BreakerView]) -> str:
    if not items:
        return "🟢 No circuit breaker has tripped."
    lines = ["<b>Circuit breakers</b>"]
    for b in items:
        if b.tripped:
            since = f" since {when(b.since)}" if b.since else ""
            until = f", until {when(b.until)}" if b.until else ""
            lines.append(f"🔴 <b>{esc(b.name)}</b> TRIPPED{since}{until}: {esc(b.reason)}")
        elif _switched_off(b.threshold):
            lines.append(f"⚪ {esc(b.name)} — off (threshold 0)")
            continue
        else:
            lines.append(f"🟢 {esc(b.name)}")
        if b.threshold or b.reset_rule:
            lines.append(f"    trips at {esc(b.threshold)}; resets {esc(b.reset_rule)}")
    if any(b.tripped for b in items):
        lines.append("Entries are blocked while a breaker is tripped. /breakers reset resets them (asks to confirm).")
    return "\n".join(lines)


def _switched_off(threshold: str) -> bool:
    """A breaker whose threshold (its first number) is 0 is switched off."""
    match = _NUMBER.search(threshold)
    return match is not None and float(match.group()) == 0


def entry_plan(plan: EntryPlan) -> str:
    """An entry plan for the operator to confirm: size, leverage, levels and what is at risk."""
    ref = plan.reference_price
    return "\n".join([
        f"Size {qty(plan.quantity)} (≈ {money(plan.notional, signed=False)}) at {plan.leverage}x · mark {price(ref)}",
        f"SL {price(plan.stop_price)} ({pct(_change(plan.stop_price, ref))}) · "
        f"TP {price(plan.take_profit_price)} ({pct(_change(plan.take_profit_price, ref))})",
        f"Risk {money(plan.risk_amount, signed=False)} · liquidation ≈ {price(plan.liquidation_price or None)}",
    ])


def _change(target: Decimal, ref: Decimal) -> Decimal:
    return (target - ref) / ref * 100 if ref else Decimal(0)


def closed_list(closed: Sequence[TradeRecord]) -> str:
    if not closed:
        return "nothing was open"
    return ", ".join(f"{esc(t.symbol)} {money(t.net_pnl)}" for t in closed)


def _signed(value: Decimal) -> str:
    return f"{value:+,.2f}".replace("-", "−")
