"""Commands that change something: /pause /resume /stop /scan /close /kill /paper /breakers /set /long /short
/blacklist.

Dangerous ones (close, kill, going live, breaker reset, risky settings) only ask here; the change runs in
``bot.actions`` after the same user presses Confirm.
"""

from __future__ import annotations

import re

from bot import views
from bot.confirm import Action
from bot.context import BotContext
from bot.format import esc, when
from bot.notices import CATEGORIES, LEVELS
from bot.reply import Call, Reply, UsageError, no_more_args
from engine.service import SETTABLE, CommandRefused

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}USDT$")
CLOSE_USAGE = "Usage: /close (pick with buttons), /close SYMBOL or /close all — e.g. /close BTCUSDT"
SET_USAGE = ("Usage: /set KEY VALUE — e.g. /set RISK_PER_TRADE_PCT 0.5\nKeys: "
             + ", ".join(s.key for s in SETTABLE) + ", notify.CATEGORY (on|silent|off)")


async def pause(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /pause")
    halts = await ctx.service.pause()
    return Reply(f"⏸ Paused: no new entries; open positions are still managed. State: {esc(halts.label)}. "
                 "/resume to trade again.")


async def resume(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /resume")
    await ctx.service.resume()
    return Reply("▶️ Resumed: scanning and opening positions again.")


async def stop(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /stop")
    await ctx.service.stop()
    return Reply("⏹ Stopped: no entries and no monitor actions. Exchange-side stops stay in place. "
                 "/resume restarts.")


async def scan(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /scan")
    await ctx.service.scan_now()
    last = await ctx.service.last_scan()
    if not last:
        return Reply("🔎 Scan ran but left no report; see the logs.")
    if last.get("halted"):
        return Reply(f"🔎 Scan at {when(last.get('time'))}: no entries — {esc(last['halted'])}.")
    return Reply(f"🔎 Scan at {when(last.get('time'))}: {last.get('symbols', 0)} symbols, "
                 f"{last.get('signals', 0)} signals, {last.get('opened', 0)} opened.")


async def close(ctx: BotContext, call: Call) -> Reply:
    if len(call.args) > 1:
        raise UsageError(CLOSE_USAGE)
    open_symbols = await ctx.service.open_symbols()
    if not call.args:
        return _close_picker(open_symbols)
    target = call.args[0].upper()
    shown = ", ".join(open_symbols) or "none"
    if target == "ALL":
        if not open_symbols:
            return Reply("No open positions to close.")
        action, question = Action("close", {"symbol": "all"}), (
            f"⚠️ Close <b>all {len(open_symbols)}</b> position(s) at market ({esc(shown)})?")
    else:
        if not SYMBOL_RE.match(target) or target not in open_symbols:
            raise UsageError(f"No open position on {target[:24]}. Open positions: {shown}.\n{CLOSE_USAGE}")
        action, question = Action("close", {"symbol": target}), f"⚠️ Close <b>{esc(target)}</b> at market?"
    return await ctx.confirmations.ask(user_id=call.user_id, chat_id=call.chat_id, action=action,
                                       question=question)


def _close_picker(open_symbols: list[str]) -> Reply:
    """Bare /close: one button per position (and one for all); a press asks to confirm, like /close SYMBOL."""
    if not open_symbols:
        return Reply("No open positions to close.")
    buttons = tuple((f"Close {s}", f"k:close {s}") for s in open_symbols)
    if len(open_symbols) > 1:
        buttons += ((f"Close all {len(open_symbols)}", "k:close all"),)
    return Reply("Which position should be closed at market? (You will be asked to confirm.)", buttons=buttons,
                 per_row=1)


async def kill(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /kill")
    count = len(await ctx.service.open_symbols())
    question = (f"☠️ <b>Kill-switch</b>: close all {count} position(s) at market, cancel every order and halt "
                "trading until /resume?")
    return await ctx.confirmations.ask(user_id=call.user_id, chat_id=call.chat_id, action=Action("kill", {}),
                                       question=question)


async def paper(ctx: BotContext, call: Call) -> Reply:
    usage = "Usage: /paper (show the mode), /paper on (paper trading) or /paper off (live trading)"
    no_more_args(call.args, 1, usage)
    mode = ctx.service.mode
    if not call.args:
        other = "/paper off switches to live" if mode == "paper" else "/paper on switches to paper"
        return Reply(f"Mode: {views.mode_badge(mode)}. {other}.")
    choice = call.args[0].lower()
    if choice not in ("on", "off"):
        raise UsageError(usage)
    target = "paper" if choice == "on" else "live"
    if target == mode:
        return Reply(f"Already in {views.mode_badge(mode)} mode.")
    await ctx.service.check_mode_switch(target)
    if target == "paper":
        change = await ctx.service.set_mode("paper")
        return Reply(f"🧪 Switched from {esc(change.old)} to <b>paper</b> trading.")
    return await ctx.confirmations.ask(
        user_id=call.user_id, chat_id=call.chat_id, action=Action("mode", {"mode": "live"}),
        question="💰 Switch to <b>LIVE</b> trading? New positions will use <b>real money</b> on Binance.")


async def breakers(ctx: BotContext, call: Call) -> Reply:
    usage = "Usage: /breakers (show) or /breakers reset"
    no_more_args(call.args, 1, usage)
    if call.args:
        if call.args[0].lower() != "reset":
            raise UsageError(usage)
        return await ctx.confirmations.ask(
            user_id=call.user_id, chat_id=call.chat_id, action=Action("breakers_reset", {}),
            question="🔁 Reset every tripped circuit breaker and allow entries again?")
    return Reply(views.breakers(await ctx.service.breakers()))


async def set_value(ctx: BotContext, call: Call) -> Reply:
    if len(call.args) != 2:
        raise UsageError(SET_USAGE)
    key, value = call.args
    if key.lower().startswith("notify."):
        return await _set_notify(ctx, key.lower().removeprefix("notify."), value.lower())
    try:
        change = await ctx.service.preview_setting(key, value)
    except CommandRefused as exc:
        raise UsageError(f"⛔ {exc}\n{SET_USAGE}") from None
    if change.risky:
        return await ctx.confirmations.ask(
            user_id=call.user_id, chat_id=call.chat_id, action=Action("set", {"key": change.key, "value": value}),
            question=f"⚠️ Raise <b>{esc(change.key)}</b> from {esc(change.old)} to <b>{esc(change.new)}</b>? "
                     "That is above the usual safe range.")
    change = await ctx.service.set_setting(key, value)
    return Reply(f"✅ {esc(change.key)}: {esc(change.old)} → <b>{esc(change.new)}</b> (applies to "
                 f"{esc(change.applies)}; kept across restarts)")


async def _set_notify(ctx: BotContext, name: str, level: str) -> Reply:
    if name not in CATEGORIES or level not in LEVELS:
        raise UsageError(f"Usage: /set notify.CATEGORY on|silent|off — categories: {', '.join(CATEGORIES)}")
    await ctx.notifier.set_level(name, level)
    return Reply(f"✅ Notifications for {esc(name)}: <b>{esc(level)}</b>")


ENTRY_USAGE = "Usage: /{side} SYMBOL — e.g. /{side} BTCUSDT (opens at market after you confirm)"
BLACKLIST_USAGE = "Usage: /blacklist (show), /blacklist add SYMBOL or /blacklist remove SYMBOL"


def _symbol_arg(args: tuple[str, ...], usage: str) -> str:
    if len(args) != 1 or not SYMBOL_RE.match(symbol := args[0].upper()):
        raise UsageError(usage)
    return symbol


async def long(ctx: BotContext, call: Call) -> Reply:
    return await _entry(ctx, call, "LONG")


async def short(ctx: BotContext, call: Call) -> Reply:
    return await _entry(ctx, call, "SHORT")


async def _entry(ctx: BotContext, call: Call, side: str) -> Reply:
    """Plan the entry now (refusals come back at once), then ask; the Confirm plans it again and opens."""
    symbol = _symbol_arg(call.args, ENTRY_USAGE.format(side=side.lower()))
    plan = await ctx.service.preview_entry(symbol, side)
    question = "\n".join([
        f"{'🟢' if side == 'LONG' else '🔴'} Open <b>{esc(side)} {esc(symbol)}</b> at market "
        f"({views.mode_badge(ctx.service.mode)})?",
        views.entry_plan(plan),
        "<i>Sized and protected like a scan entry, sized again at the price of the moment you confirm.</i>",
    ])
    return await ctx.confirmations.ask(user_id=call.user_id, chat_id=call.chat_id,
                                       action=Action("open", {"symbol": symbol, "side": side}), question=question)


async def blacklist(ctx: BotContext, call: Call) -> Reply:
    if not call.args:
        listed = await ctx.service.blacklist()
        if not listed:
            return Reply("No symbol is blacklisted. /blacklist add SYMBOL keeps the bot away from one.")
        return Reply(f"🚫 Never traded: <b>{esc(', '.join(listed))}</b>\n/blacklist remove SYMBOL trades one again.")
    if len(call.args) != 2 or call.args[0].lower() not in ("add", "remove"):
        raise UsageError(BLACKLIST_USAGE)
    symbol = _symbol_arg(call.args[1:], BLACKLIST_USAGE)
    if call.args[0].lower() == "add":
        listed = await ctx.service.blacklist_add(symbol)
        held = " Its open position stays managed; /close it to get out." if symbol in await ctx.service.open_symbols() \
            else ""
        return Reply(f"🚫 {esc(symbol)} will not be traded (blacklist: {esc(', '.join(listed))}).{held}")
    listed = await ctx.service.blacklist_remove(symbol)
    return Reply(f"✅ {esc(symbol)} may be traded again (blacklist: {esc(', '.join(listed)) or 'empty'}).")
