"""Commands about the bot itself: /start /version /health /logs."""

from __future__ import annotations

import asyncio
import platform
from datetime import UTC, datetime

import telegram

from bot.context import BotContext
from bot.format import ago, esc, when
from bot.logtail import recent_problems
from bot.reply import Call, Reply, int_arg, no_more_args
from bot.summary import greeting
from bot.version import vigil_version

MAX_LOG_RECORDS = 50
LOG_ICON = {"WARNING": "⚠️", "ERROR": "❌", "CRITICAL": "🆘"}


async def start(ctx: BotContext, call: Call) -> Reply:
    # /start may carry a deep-link payload (t.me/bot?start=x): accepted and ignored
    queued = await ctx.notifier.queue.pending_count(call.chat_id)
    return Reply(await greeting(ctx.service, queued=queued))


async def version(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /version")
    now = datetime.now(UTC)
    return Reply("\n".join([
        f"<b>Vigil {esc(vigil_version())}</b>",
        f"Python {esc(platform.python_version())} · python-telegram-bot {esc(telegram.__version__)}",
        f"Up {esc(ago(ctx.started_at, now).removesuffix(' ago'))} (since {when(ctx.started_at)})",
    ]))


async def health(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /health")
    report = await ctx.service.health()
    now = report.now
    lines = ["<b>Health</b>"]
    for job in report.jobs:
        icon = "✅" if job.healthy else "⚠️"
        verdict = "" if job.healthy else " — LATE" if job.last is not None else " — never ran yet"
        lines.append(f"{icon} {esc(job.name)}: last {ago(job.last, now)} (every {job.interval_seconds} s){verdict}")
    lines.append(f"Next scan {ago(report.next_scan, now)}")
    pending = await ctx.notifier.queue.pending_count()
    waiting = len(ctx.notifier.waiting_chats)
    lines.append(f"Notifications queued: {pending}" + (f" ({waiting} chat(s) not opened yet: send /start there)"
                                                       if waiting else ""))
    return Reply("\n".join(lines))


async def logs(ctx: BotContext, call: Call) -> Reply:
    usage = f"Usage: /logs [n] — n is a whole number from 1 to {MAX_LOG_RECORDS} (default 10)"
    no_more_args(call.args, 1, usage)
    count = int_arg(call.args, 0, default=10, low=1, high=MAX_LOG_RECORDS, usage=usage)
    path = ctx.options.log_file
    if path is None:
        return Reply("No log file is configured: logs go to the console only.")
    try:
        records = await asyncio.to_thread(recent_problems, path, count)
    except FileNotFoundError:
        return Reply(f"No log file yet at {esc(path)}.")
    except OSError as exc:
        return Reply(f"⚠️ Cannot read the log file {esc(path)}: {esc(exc.strerror or exc)}")
    if not records:
        return Reply(f"🟢 No warnings or errors in the recent log ({esc(path.name)}).")
    lines = [f"<b>Last {len(records)} warning(s) and error(s)</b> · {esc(path.name)}"]
    lines += [f"{LOG_ICON[r.level]} {esc(ctx.service.redact(r.text))}" for r in records]
    return Reply("\n".join(lines))
