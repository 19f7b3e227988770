"""The real entry point: ``app.run.run_bot`` starts the Telegram bot through ``bot.app.start_bot`` on the same
loop as the engine (fake Binance and fake Bot API on 127.0.0.1), answers a command, and stops cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.run import EXIT_OK, run_bot
from tests.fakes.binance_server import FakeBinanceFutures
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.test_bot_harness import OPERATOR, STRANGER, wait_for
from tests.trading_fixtures import make_settings


async def test_run_bot_starts_the_bot_answers_and_says_goodbye(tmp_path: Path):
    async with FakeBinanceFutures() as binance, FakeTelegram() as telegram:
        settings = make_settings(
            db_path=tmp_path / "vigil.sqlite3", binance_base_url=binance.base_url, telegram_bot_token=TOKEN,
            telegram_allowed_user_ids=[OPERATOR], telegram_api_base_url=f"http://127.0.0.1:{telegram.port}",
            scan_interval_seconds=3600, monitor_interval_seconds=3600)
        telegram.opened_chats.add(OPERATOR)  # the operator started the bot before
        stop = asyncio.Event()
        run = asyncio.create_task(run_bot(settings, stop_event=stop))
        try:
            await wait_for(lambda: any("Vigil started" in t for t in telegram.texts(OPERATOR)), timeout=20)
            telegram.push_text(STRANGER, "/status")
            asked = telegram.push_text(OPERATOR, "/status")
            await wait_for(lambda: any(c.quoted == asked for c in telegram.sent("sendMessage", OPERATOR)))
            reply = next(c for c in telegram.sent("sendMessage", OPERATOR) if c.quoted == asked)
            assert "PAPER" in reply.text and "running" in reply.text
            assert telegram.sent(chat_id=STRANGER) == []
        finally:
            stop.set()
            assert await asyncio.wait_for(run, timeout=20) == EXIT_OK
        assert any("shutting down" in t for t in telegram.texts(OPERATOR))
        assert TOKEN not in "".join(telegram.texts())
