"""The actions a Confirm button runs: each takes the stored arguments and returns the HTML result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot import views
from bot.context import BotContext
from bot.format import esc, price, qty

ActionFn = Callable[[BotContext, dict[str, str]], Awaitable[str]]


async def close(ctx: BotContext, args: dict[str, str]) -> str:
    symbol = args["symbol"]
    closed = await ctx.service.close(symbol)
    what = "all positions" if symbol == "all" else esc(symbol)
    return f"✅ Closed {what}: {views.closed_list(closed)}"


async def kill(ctx: BotContext, args: dict[str, str]) -> str:
    closed = await ctx.service.kill()
    return (f"☠️ <b>Kill-switch done</b>. Closed: {views.closed_list(closed)}. Every order cancelled. "
            "Trading is halted until /resume.")


async def mode(ctx: BotContext, args: dict[str, str]) -> str:
    change = await ctx.service.set_mode("live" if args["mode"] == "live" else "paper")
    return f"Mode switched from {esc(change.old)} to {views.mode_badge(change.new)}."


async def breakers_reset(ctx: BotContext, args: dict[str, str]) -> str:
    names = await ctx.service.reset_breakers()
    return f"🔁 Reset: {esc(', '.join(names))}." if names else "No breaker was tripped; nothing to reset."


async def set_value(ctx: BotContext, args: dict[str, str]) -> str:
    change = await ctx.service.set_setting(args["key"], args["value"])
    return f"✅ {esc(change.key)}: {esc(change.old)} → <b>{esc(change.new)}</b> (applies to new entries)"


async def open_position(ctx: BotContext, args: dict[str, str]) -> str:
    trade = await ctx.service.open_position(args["symbol"], args["side"])
    return (f"✅ Opened #{trade.id} <b>{esc(trade.side)} {esc(trade.symbol)}</b> {qty(trade.quantity)} @ "
            f"{price(trade.entry_price)} · SL {price(trade.stop_price)} · TP {price(trade.take_profit_price)}")


ACTIONS: dict[str, ActionFn] = {
    "open": open_position,
    "close": close,
    "kill": kill,
    "mode": mode,
    "breakers_reset": breakers_reset,
    "set": set_value,
}
