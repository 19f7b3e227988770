"""Read-only commands: /status /positions /balance /pnl /trades /performance /config /chart."""

from __future__ import annotations

import asyncio

from bot import views
from bot.charts import max_drawdown_pct
from bot.context import BotContext
from bot.format import money, pct
from bot.reply import Call, Reply, int_arg, no_more_args
from engine.results import Period

MAX_DAYS = 365
MAX_TRADES = 50


async def status(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /status")
    tripped = [b.name for b in await ctx.service.breakers() if b.tripped]
    return Reply(views.status(await ctx.service.status(), ctx.service.now(), tripped),
                 buttons=(("🔄 Refresh", "k:status"),))


async def positions(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /positions")
    return Reply(views.positions(await ctx.service.positions(), ctx.service.mode, ctx.service.now()))


async def balance(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /balance")
    return Reply(views.balance(await ctx.service.balance(), ctx.service.mode))


async def pnl(ctx: BotContext, call: Call) -> Reply:
    usage = f"Usage: /pnl [days] — days is a whole number from 1 to {MAX_DAYS} (default 7)"
    no_more_args(call.args, 1, usage)
    days = int_arg(call.args, 0, default=7, low=1, high=MAX_DAYS, usage=usage)
    return Reply(views.pnl(await ctx.service.realized_since(days), days, ctx.service.mode))


async def trades(ctx: BotContext, call: Call) -> Reply:
    usage = f"Usage: /trades [n] — n is a whole number from 1 to {MAX_TRADES} (default 10)"
    no_more_args(call.args, 1, usage)
    count = int_arg(call.args, 0, default=10, low=1, high=MAX_TRADES, usage=usage)
    return Reply(views.trades(await ctx.service.trades(count), ctx.service.mode))


async def performance(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /performance")
    return Reply(views.performance(await ctx.service.performance(), ctx.service.mode))


async def config(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /config")
    return Reply(views.config(ctx.service.config(), ctx.notifier.levels))


async def chart(ctx: BotContext, call: Call) -> Reply:
    usage = f"Usage: /chart [days] — days is a whole number from 1 to {MAX_DAYS} (default 7)"
    no_more_args(call.args, 1, usage)
    days = int_arg(call.args, 0, default=7, low=1, high=MAX_DAYS, usage=usage)
    points = await ctx.service.equity_series(days)
    if len(points) < 2:
        return Reply(f"Not enough equity snapshots in the last {days} day{'s' if days != 1 else ''} for a chart "
                     "yet (one is taken every few minutes while the bot runs).")
    mode = ctx.service.mode
    # CPU-bound (1–3 s on a small VPS): a worker thread, so the loop keeps trading and answering meanwhile
    png = await asyncio.to_thread(ctx.render_chart, points, f"Vigil equity ({mode}), last {days} d")
    first, last = points[0].equity, points[-1].equity
    caption = (f"Equity {money(last, signed=False)} ({money(last - first)} over {days} d), "
               f"max drawdown {pct(max_drawdown_pct(points))} · {views.mode_badge(mode)}")
    return Reply(caption, photo=png)


PERIOD_DEFAULTS = {Period.DAY: (7, 90), Period.WEEK: (8, 52), Period.MONTH: (6, 24)}


async def _period(ctx: BotContext, call: Call, period: Period, name: str) -> Reply:
    default, high = PERIOD_DEFAULTS[period]
    usage = f"Usage: /{name} [n] — n is a whole number from 1 to {high} (default {default})"
    no_more_args(call.args, 1, usage)
    count = int_arg(call.args, 0, default=default, low=1, high=high, usage=usage)
    rows = await ctx.service.results_by_period(period, count)
    return Reply(views.period_results(rows, period, ctx.service.mode))


async def daily(ctx: BotContext, call: Call) -> Reply:
    return await _period(ctx, call, Period.DAY, "daily")


async def weekly(ctx: BotContext, call: Call) -> Reply:
    return await _period(ctx, call, Period.WEEK, "weekly")


async def monthly(ctx: BotContext, call: Call) -> Reply:
    return await _period(ctx, call, Period.MONTH, "monthly")


async def stats(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /stats")
    return Reply(views.stats(await ctx.service.trade_stats(), ctx.service.mode))
