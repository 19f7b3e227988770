"""PTB glue: turn an update into a ``Call``, run the handler, send its ``Reply``; run confirmed buttons.

Every reply is HTML, split under 4096 characters, and quotes the command it answers (notifications arrive
in the same chat; the quote says which reply belongs to which command). Refusals and usage errors are
escaped plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.actions import ACTIONS
from bot.confirm import Verdict
from bot.context import BotContext
from bot.format import esc, plain, split_message
from bot.reply import Call, Reply, UsageError
from engine.exchange.errors import ExchangeError
from engine.service import CommandRefused

log = logging.getLogger(__name__)

Handler = Callable[[BotContext, Call], Awaitable[Reply]]
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
COMMAND_BUTTON_PREFIX = "k:"
COMMAND_BUTTON_PATTERN = r"^k:[a-z]{2,16}( [A-Za-z0-9]{2,24})?$"
CAPTION_LIMIT = 1024


async def run_command(ctx: BotContext, name: str, handler: Handler, update: Update,
                      context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    age = datetime.now(UTC) - message.date
    if age > ctx.options.stale_after:
        minutes = int(age.total_seconds() // 60)
        await _send(ctx, message, Reply(f"⏳ Ignored /{esc(name)} sent {minutes} min ago while I was offline. "
                                        "Send it again if you still want it."))
        return
    call = Call(user.id, message.chat_id, tuple(context.args or ()))
    reply = await _safely(handler(ctx, call), f"/{name}")
    await _send(ctx, message, reply)


async def _safely(work: Awaitable[Reply], what: str) -> Reply:
    try:
        return await work
    except UsageError as exc:
        return Reply(esc(str(exc)))
    except CommandRefused as exc:
        return Reply(f"⛔ {esc(exc)}")
    except ExchangeError as exc:
        log.warning("%s failed on the exchange: %s", what, exc)
        return Reply(f"⚠️ Exchange error: {esc(exc)}")
    except Exception:
        log.exception("%s failed", what)
        return Reply("⚠️ Internal error; the details are in the log.")


async def _send(ctx: BotContext, message: Message, reply: Reply) -> None:
    if reply.photo is not None:
        fits = len(reply.text) <= CAPTION_LIMIT
        await message.reply_photo(reply.photo, caption=reply.text if fits else None, parse_mode=ParseMode.HTML,
                                  do_quote=True)
        if fits:
            return
    chunks = split_message(reply.text)
    markup = keyboard(reply)
    sent: Message | None = None
    for i, chunk in enumerate(chunks):
        buttons = markup if i == len(chunks) - 1 else None
        try:
            sent = await message.reply_text(chunk, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
                                            reply_markup=buttons, do_quote=True)
        except BadRequest as exc:
            if "entit" not in exc.message.lower() and "parse" not in exc.message.lower():
                raise
            log.error("Telegram rejected the markup of a reply; sending it as plain text")
            sent = await message.reply_text(plain(chunk), reply_markup=buttons, do_quote=True)
    if reply.confirmation and sent is not None:
        await ctx.confirmations.attach(reply.confirmation, sent.message_id)


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    buttons = [InlineKeyboardButton(label, callback_data=data) for label, data in reply.buttons]
    size = reply.per_row or len(buttons)
    return InlineKeyboardMarkup([buttons[i:i + size] for i in range(0, len(buttons), size)])


async def on_command_button(ctx: BotContext, buttons: dict[str, Handler], update: Update,
                            context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button that runs a harmless command again (``k:status`` refresh, ``k:close SYMBOL`` from the /close
    picker) and puts its answer in place of the message that carried the button. A dangerous command only
    asks here, exactly as if it had been typed: its confirmation is bound to this message."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None or query.data is None or query.message is None:
        return
    name, _, arg = query.data.removeprefix(COMMAND_BUTTON_PREFIX).partition(" ")
    handler = buttons.get(name)
    if handler is None:
        await query.answer("Unknown button — nothing done.")
        return
    message = query.message
    reply = await _safely(handler(ctx, Call(user.id, message.chat.id, (arg,) if arg else ())), f"button {name}")
    text = split_message(reply.text)[0]
    try:
        await context.bot.edit_message_text(text, chat_id=message.chat.id, message_id=message.message_id,
                                            parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
                                            reply_markup=keyboard(reply))
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
        await query.answer("Already up to date.")
        return
    if reply.confirmation:
        await ctx.confirmations.attach(reply.confirmation, message.message_id)
    await query.answer()


async def on_button(ctx: BotContext, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, user = update.callback_query, update.effective_user
    if query is None or user is None or query.data is None:
        return
    message = query.message
    resolution = await ctx.confirmations.resolve(
        query.data, user_id=user.id, chat_id=message.chat.id if message else None,
        message_id=message.message_id if message else None)
    verdict, confirmation = resolution.verdict, resolution.confirmation
    if verdict is Verdict.USED or verdict is Verdict.UNKNOWN or verdict is Verdict.NOT_YOURS:
        notice = {Verdict.USED: "Already used — nothing done.", Verdict.UNKNOWN: "Unknown button — nothing done.",
                  Verdict.NOT_YOURS: "This confirmation is not yours — nothing done."}[verdict]
        await query.answer(notice)
        return
    assert confirmation is not None
    if verdict is Verdict.CANCELLED:
        await query.answer("Cancelled")
        outcome = "✖️ Cancelled — nothing done."
    elif verdict is Verdict.EXPIRED:
        await query.answer("Expired — nothing done.")
        outcome = "⌛ Expired — nothing done. Send the command again."
    else:
        await query.answer("Working…")
        action = resolution.action
        assert action is not None
        log.info("user %s confirmed %s %s", user.id, action.name, action.args)
        result = await _safely(_run_action(ctx, action.name, action.args), f"confirmed {action.name}")
        outcome = result.text
        await ctx.confirmations.record_outcome(confirmation.token, outcome)
    chunks = split_message(f"{confirmation.summary}\n\n{outcome}")
    if message is not None:
        await context.bot.edit_message_text(chunks[0], chat_id=message.chat.id, message_id=message.message_id,
                                            parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW)
        for chunk in chunks[1:]:
            await context.bot.send_message(message.chat.id, chunk, parse_mode=ParseMode.HTML,
                                           link_preview_options=NO_PREVIEW)


async def _run_action(ctx: BotContext, name: str, args: dict[str, str]) -> Reply:
    action = ACTIONS.get(name)
    if action is None:
        raise CommandRefused(f"unknown action {name}")
    return Reply(await action(ctx, args))


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or message.text is None:
        return
    if message.text.startswith("/"):
        word = message.text.split()[0][:32]
        await message.reply_text(f"Unknown command {esc(word)}. Send /help for the list.", parse_mode=ParseMode.HTML,
                                 do_quote=True)
    else:
        await message.reply_text("Send /help for the list of commands.", do_quote=True)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    log.error("Telegram handler failed: %s", type(error).__name__, exc_info=error)
