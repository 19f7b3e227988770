"""The panel's reasoning: /why SYMBOL and /model."""

from __future__ import annotations

from bot import vote_views
from bot.context import BotContext
from bot.reply import Call, Reply, UsageError, no_more_args


async def why(ctx: BotContext, call: Call) -> Reply:
    usage = "Usage: /why SYMBOL — e.g. /why BTCUSDT"
    no_more_args(call.args, 1, usage)
    if not call.args:
        raise UsageError(usage)
    return Reply(vote_views.why(await ctx.service.why(call.args[0])))


async def model(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /model")
    return Reply(vote_views.model(await ctx.service.model()))
