"""The notifier: persistent queue, in-order exactly-once delivery through flood limits, outages and restarts;
trading never waits for Telegram; per-category levels; pacing; daily summary; no token in logs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from telegram.error import BadRequest, Forbidden

from bot.notifier import DeliveryOptions, Notifier, parse_levels
from bot.redact import MASK, TokenRedactor
from bot.summary import next_run, parse_utc_time
from engine.events import Alert, Level, ScanCompleted, StateChanged, StopMoved, TradeOpened
from storage.db import Database
from storage.notifications import NotificationQueue, NotifierSettingsRepository
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.test_bot_harness import (  # noqa: F401
    OPERATOR,
    Cockpit,
    close_cockpit,
    fake,
    open_cockpit,
    wait_for,
    wait_until,
)

LEVELS_ON = parse_levels("")


def note(i: int) -> Alert:
    return Alert(time=datetime(2025, 3, 20, tzinfo=UTC), level=Level.INFO, message=f"note {i}")


def delivered_notes(server: FakeTelegram) -> list[str]:
    return [c.text.split("note ")[1] for c in server.sent("sendMessage", OPERATOR) if "note " in c.text]


async def open_notifying(tmp_path: Path, fake: FakeTelegram, **kw: object) -> Cockpit:  # noqa: F811
    kw.setdefault("notify_levels", dict(LEVELS_ON))
    return await open_cockpit(tmp_path, fake, **kw)


async def test_flood_limit_then_outage_still_delivers_everything_once_in_order(tmp_path: Path,
                                                                              fake: FakeTelegram):  # noqa: F811
    cockpit = await open_notifying(tmp_path, fake)
    bus = cockpit.rig.bus
    try:
        await wait_for(lambda: any("Vigil started" in t for t in fake.texts(OPERATOR)))
        fake.flood(1, retry_after=1)
        for i in range(1, 4):
            await bus.publish(note(i))
        await wait_for(lambda: any(c.method == "sendMessage" and not c.ok for c in fake.calls))

        await fake.go_down("refuse")  # connection refused / dropped
        for i in range(4, 6):
            await bus.publish(note(i))
        await wait_until(lambda: _attempts_at_least(cockpit, 4))  # one 429 and three refused connections
        await fake.go_up()
        await fake.go_down("502")  # a proxy answering Bad Gateway
        await bus.publish(note(6))
        await wait_for(lambda: sum(1 for c in fake.calls if c.method == "sendMessage" and not c.ok) >= 3)
        await fake.go_up()
        for i in range(7, 9):
            await bus.publish(note(i))

        await wait_for(lambda: len(delivered_notes(fake)) >= 8, timeout=10)
        await wait_until(lambda: _no_pending(cockpit))
        assert delivered_notes(fake) == [str(i) for i in range(1, 9)]
    finally:
        await close_cockpit(cockpit)


async def _attempts_at_least(cockpit: Cockpit, count: int) -> bool:
    row = await cockpit.rig.repos.db.fetchone(
        "SELECT MAX(attempts) FROM notification_queue WHERE status = 'PENDING'")
    return row is not None and (row[0] or 0) >= count


async def _no_pending(cockpit: Cockpit) -> bool:
    return await cockpit.bot.queue.pending_count() == 0


async def test_queue_survives_a_restart_while_telegram_is_down(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    await fake.go_down("refuse")
    cockpit = await open_notifying(tmp_path, fake, wait_ready=False)
    try:
        for i in range(1, 4):
            await cockpit.rig.bus.publish(note(i))
        assert not cockpit.bot.ready.is_set()
        await cockpit.bot.stop()  # process stops while Telegram is still down
        await fake.go_up()
        await cockpit.restart_bot()
        await wait_for(lambda: sum("Vigil started" in t for t in fake.texts(OPERATOR)) == 2)
        texts = [t for t in fake.texts(OPERATOR) if "Vigil started" in t or "note " in t]
        assert ["started" if "Vigil started" in t else t.split("note ")[1] for t in texts] == [
            "started", "1", "2", "3", "started"]
        assert "queued while offline came first" in texts[-1]
    finally:
        await close_cockpit(cockpit)


async def test_trading_continues_while_the_bot_api_is_unreachable(tmp_path: Path,
                                                                 fake: FakeTelegram):  # noqa: F811
    await fake.go_down("refuse")
    cockpit = await open_notifying(tmp_path, fake, wait_ready=False)
    rig = cockpit.rig
    try:
        async with asyncio.timeout(20):
            report = await rig.trader.scan()
            await rig.step(5)
            reconcile = await rig.trader.monitor()
        assert report.opened and reconcile is not None
        assert rig.sink.of(TradeOpened) and not cockpit.bot.ready.is_set()
        assert await cockpit.bot.queue.pending_count() >= 2  # startup + trade opened, waiting
        assert [c for c in fake.calls if c.method == "sendMessage"] == []

        await fake.go_up()
        await wait_for(cockpit.bot.ready.is_set, timeout=10)
        await wait_for(lambda: any("Opened" in t for t in fake.texts(OPERATOR)))
    finally:
        await close_cockpit(cockpit)


async def test_levels_on_silent_off_and_critical_alerts_always_arrive(tmp_path: Path,
                                                                      fake: FakeTelegram):  # noqa: F811
    levels = parse_levels("stop_moved=silent,alert=off,scan=off")
    cockpit = await open_notifying(tmp_path, fake, notify_levels=levels)
    bus, now = cockpit.rig.bus, cockpit.service.now()
    try:
        await bus.publish(StopMoved(time=now, trade_id=1, symbol="BTCUSDT", old_stop=Decimal("80000"),
                                    new_stop=Decimal("81000.5"), reason="trailing"))
        await bus.publish(ScanCompleted(time=now, symbols=2, signals=0, opened=0, cpu_ms=1.0))
        await bus.publish(Alert(time=now, level=Level.WARNING, message="quiet warning"))
        await bus.publish(Alert(time=now, level=Level.CRITICAL, message="stop could not be placed <x>"))
        await cockpit.send("/set notify.state off")
        await bus.publish(StateChanged(time=now, state="paused", detail="operator"))
        await cockpit.send("/set notify.state on")
        await bus.publish(StateChanged(time=now, state="resumed"))  # the marker: everything before it is done
        await wait_for(lambda: any("Resumed" in t for t in fake.texts(OPERATOR)))

        sent = [c for c in fake.sent("sendMessage", OPERATOR)]
        moved = next(c for c in sent if "Stop moved" in c.text)
        assert moved.flag("disable_notification") and "81,000.5" in moved.text
        critical = next(c for c in sent if "CRITICAL" in c.text)
        assert not critical.flag("disable_notification") and "&lt;x&gt;" in critical.text
        texts = " ".join(c.text for c in sent)
        assert "quiet warning" not in texts and "Scan:" not in texts and "Paused" not in texts
    finally:
        await close_cockpit(cockpit)


async def test_at_most_one_message_per_interval_per_chat(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    cockpit = await open_notifying(tmp_path, fake, delivery=DeliveryOptions(min_interval=0.2, retry_base=0.05,
                                                                           retry_max=0.2))
    try:
        for i in range(1, 5):
            await cockpit.rig.bus.publish(note(i))
        await wait_for(lambda: len(delivered_notes(fake)) == 4)
        times = [c.time for c in fake.sent("sendMessage", OPERATOR) if "note " in c.text]
        assert all(b - a >= 0.19 for a, b in itertools.pairwise(times))
    finally:
        await close_cockpit(cockpit)


async def test_daily_summary_is_sent(tmp_path: Path, fake: FakeTelegram):  # noqa: F811
    cockpit = await open_notifying(tmp_path, fake)
    try:
        await cockpit.rig.trader.scan()
        await cockpit.bot.send_daily_summary()
        await wait_for(lambda: any("Daily summary" in t for t in fake.texts(OPERATOR)))
        summary = next(t for t in fake.texts(OPERATOR) if "Daily summary" in t)
        assert "Equity" in summary and "BTCUSDT" in summary and "Last 24 h" in summary
    finally:
        await close_cockpit(cockpit)


async def test_a_rejected_token_leaves_trading_alone_and_never_logs_the_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    async with FakeTelegram(token="42:another-token-entirely") as other:
        cockpit = await open_notifying(tmp_path, other, wait_ready=False)
        try:
            await wait_for(lambda: cockpit.bot.token_rejected)
            assert (await cockpit.rig.trader.scan()).opened
            assert await cockpit.bot.queue.pending_count() >= 2
        finally:
            await close_cockpit(cockpit)
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


# ------------------------------------------------------------------------------ units over the seam
@pytest.fixture
async def db(tmp_path: Path):
    database = await Database(tmp_path / "n.sqlite3").open()
    yield database
    await database.close()


async def test_rejected_markup_is_resent_as_plain_text_and_a_blocked_chat_does_not_block_others(db: Database):
    sent: list[tuple[int, str, bool]] = []

    async def send(chat_id: int, text: str, silent: bool, html: bool) -> None:
        if chat_id == 7:
            raise Forbidden("Forbidden: bot was blocked by the user")
        if html and "<b>" in text:
            raise BadRequest("Can't parse entities: unsupported start tag")
        sent.append((chat_id, text, html))

    queue = NotificationQueue(db)
    notifier = Notifier(queue, NotifierSettingsRepository(db), [7, 8], lambda: datetime.now(UTC),
                        DeliveryOptions(min_interval=0.0, retry_base=0.01, retry_max=0.05))
    await notifier.enqueue("alert", "<b>bold</b> &amp; more")
    await notifier.enqueue("alert", "plain next")
    notifier.start(send)
    try:
        async with asyncio.timeout(5):
            await notifier.wait_idle()
    finally:
        await notifier.stop()
    assert sent == [(8, "bold & more", False), (8, "plain next", True)]
    failed = await db.fetchall("SELECT chat_id FROM notification_queue WHERE status='FAILED'")
    assert [r[0] for r in failed] == [7, 7]


async def test_long_notifications_are_split_under_the_limit(db: Database):
    notifier = Notifier(NotificationQueue(db), NotifierSettingsRepository(db), [8], lambda: datetime.now(UTC))
    await notifier.enqueue("other", "\n".join(f"line {i} " + "x" * 80 for i in range(200)))
    rows = await db.fetchall("SELECT text FROM notification_queue ORDER BY id")
    assert len(rows) >= 4 and all(len(r[0]) <= 4096 for r in rows)
    assert "\n".join(r[0] for r in rows).count("line ") == 200


async def test_levels_set_at_runtime_are_stored(db: Database):
    repo = NotifierSettingsRepository(db)
    first = Notifier(NotificationQueue(db), repo, [8], lambda: datetime.now(UTC))
    await first.set_level("trade_opened", "silent")
    with pytest.raises(ValueError):
        await first.set_level("trade_opened", "loud")
    second = Notifier(NotificationQueue(db), repo, [8], lambda: datetime.now(UTC))
    await second.load_levels()
    assert second.levels["trade_opened"] == "silent" and second.levels["scan"] == "off"


def test_level_spec_and_summary_time_parsing():
    assert parse_levels("Trade_Opened=OFF, scan=on")["trade_opened"] == "off"
    for bad in ("nope=on", "scan=loud", "scan"):
        with pytest.raises(ValueError):
            parse_levels(bad)
    assert parse_utc_time("07:30") == time(7, 30) and parse_utc_time("off") is None and parse_utc_time("") is None
    for bad in ("24:00", "7", "07:60", "noon"):
        with pytest.raises(ValueError):
            parse_utc_time(bad)
    now = datetime(2025, 3, 20, 8, 0, tzinfo=UTC)
    assert next_run(now, time(7, 30)) == datetime(2025, 3, 21, 7, 30, tzinfo=UTC)
    assert next_run(now, time(8, 0)) == now
    assert next_run(now, time(23, 59)) - now == timedelta(hours=15, minutes=59)


def test_redactor_scrubs_the_token_from_messages_args_and_tracebacks():
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    try:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "url %s", (f"/bot{TOKEN}/x",),
                                                   None)
        assert TOKEN not in record.getMessage() and MASK in record.getMessage()
        try:
            raise RuntimeError(f"The token `{TOKEN}` was rejected")
        except RuntimeError as exc:
            with_exc = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                                         (type(exc), exc, exc.__traceback__))
        assert TOKEN not in logging.Formatter().format(with_exc)
    finally:
        redactor.uninstall()
