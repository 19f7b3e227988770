"""THE command table. It registers the handlers, builds /help and the Telegram command menu
(``set_my_commands``), so the three can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from telegram import BotCommand
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import cmd_control, cmd_info, cmd_view, cmd_votes
from bot.auth import AUTH_GROUP, AuthGate
from bot.confirm import CALLBACK_PATTERN
from bot.context import BotContext
from bot.dispatch import COMMAND_BUTTON_PATTERN, Handler, on_button, on_command_button, on_error, on_other, run_command
from bot.format import esc
from bot.reply import Call, Reply, no_more_args


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: str
    description: str
    handler: Handler


async def help_command(ctx: BotContext, call: Call) -> Reply:
    no_more_args(call.args, 0, "Usage: /help")
    return Reply(help_text())


COMMANDS: tuple[Command, ...] = (
    Command("start", "", "greeting, state and where to begin", cmd_info.start),
    Command("status", "", "mode, state, equity, P&L today, positions, scans", cmd_view.status),
    Command("positions", "", "open positions with SL, TP and liquidation", cmd_view.positions),
    Command("balance", "", "wallet, equity and available margin", cmd_view.balance),
    Command("pnl", "[days]", "realised P&L per day (default 7 days)", cmd_view.pnl),
    Command("trades", "[n]", "last closed trades (default 10)", cmd_view.trades),
    Command("daily", "[n]", "realised P&L per day, last n days (default 7)", cmd_view.daily),
    Command("weekly", "[n]", "realised P&L per week, last n weeks (default 8)", cmd_view.weekly),
    Command("monthly", "[n]", "realised P&L per month, last n months (default 6)", cmd_view.monthly),
    Command("performance", "", "win rate, profit factor, results per symbol", cmd_view.performance),
    Command("stats", "", "exit reasons, sides and trade durations", cmd_view.stats),
    Command("pause", "", "stop opening positions; open ones stay managed", cmd_control.pause),
    Command("resume", "", "trade again after pause, stop or kill", cmd_control.resume),
    Command("stop", "", "stop the trader; exchange stops stay in place", cmd_control.stop),
    Command("close", "[SYMBOL|all]", "close at market (asks to confirm); bare /close lists buttons",
            cmd_control.close),
    Command("long", "SYMBOL", "open a long by hand, sized by the risk rules (asks to confirm)", cmd_control.long),
    Command("short", "SYMBOL", "open a short by hand, sized by the risk rules (asks to confirm)", cmd_control.short),
    Command("kill", "", "close everything, cancel orders, halt (asks to confirm)", cmd_control.kill),
    Command("paper", "[on|off]", "show or switch paper/live (live asks to confirm)", cmd_control.paper),
    Command("breakers", "[reset]", "circuit breakers; reset asks to confirm", cmd_control.breakers),
    Command("config", "", "settings (secrets hidden) and notification levels", cmd_view.config),
    Command("set", "KEY VALUE", "change a risk setting or a notification level", cmd_control.set_value),
    Command("scan", "", "run a market scan now", cmd_control.scan),
    Command("why", "SYMBOL", "the last votes and reasons on a symbol, and why it traded or not", cmd_votes.why),
    Command("model", "", "the ML model, its out-of-sample and live hit rate, learned voter weights",
            cmd_votes.model),
    Command("blacklist", "[add|remove SYMBOL]", "symbols never traded", cmd_control.blacklist),
    Command("chart", "[days]", "equity and drawdown chart (default 7 days)", cmd_view.chart),
    Command("logs", "[n]", "recent warnings and errors from the log (default 10)", cmd_info.logs),
    Command("version", "", "version and uptime", cmd_info.version),
    Command("health", "", "last scan and monitor runs, notification queue", cmd_info.health),
    Command("help", "", "this list", help_command),
)


# commands a button may run again (k:NAME [ARG]): only ones that read, or that merely ask for a confirmation
BUTTON_COMMANDS: dict[str, Handler] = {"status": cmd_view.status, "close": cmd_control.close}


def help_text() -> str:
    lines = ["<b>Vigil commands</b>"]
    for c in COMMANDS:
        usage = f"/{c.name}" + (f" {c.args}" if c.args else "")
        lines.append(f"{esc(usage)} — {esc(c.description)}")
    lines.append("Dangerous commands show Confirm / Cancel buttons, valid for 60 s.")
    return "\n".join(lines)


def menu() -> list[BotCommand]:
    return [BotCommand(c.name, (f"{c.args} — " if c.args else "") + c.description) for c in COMMANDS]


def register(app: Application, ctx: BotContext, gate: AuthGate) -> None:
    """Auth gate first (group -1), then one handler per table row, buttons, and a fallback."""
    app.add_handler(gate.handler(), group=AUTH_GROUP)
    for command in COMMANDS:
        callback = partial(run_command, ctx, command.name, command.handler)
        app.add_handler(CommandHandler(command.name, callback, filters=filters.UpdateType.MESSAGE))
    app.add_handler(CallbackQueryHandler(partial(on_button, ctx), pattern=CALLBACK_PATTERN))
    app.add_handler(CallbackQueryHandler(partial(on_command_button, ctx, BUTTON_COMMANDS),
                                         pattern=COMMAND_BUTTON_PATTERN))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, on_other))
    app.add_error_handler(on_error)
