"""Results and self-reports: /daily /weekly /monthly /stats (by hand and through the bot), the closed-trade
message's % return and duration, /version, /health and /logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.notifier import parse_levels
from engine.results import Period, results_by_period, trade_stats
from storage.records import TradeRecord, TradeStatus
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.test_bot_commands import trade_a_little
from tests.test_bot_harness import OPERATOR, Cockpit, close_cockpit, fake, open_cockpit, wait_for  # noqa: F401


def closed(i: int, opened: datetime, held: timedelta, net: str, *, side: str = "LONG",
           reason: str = "take_profit") -> TradeRecord:
    return TradeRecord(
        id=i, mode="paper", symbol="BTCUSDT", side=side, status=TradeStatus.CLOSED, quantity=Decimal(0),
        initial_quantity=Decimal(1), entry_price=Decimal(100), stop_price=Decimal(90), initial_stop_price=Decimal(90),
        take_profit_price=None, leverage=3, liquidation_price=None, score=None, votes=(), opened_at=opened,
        closed_at=opened + held, exit_price=Decimal(100), exit_reason=reason, realized_pnl=Decimal(net),
        fees=Decimal(0), funding=Decimal(0), created_at=opened)


NOW = datetime(2025, 3, 3, 10, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)


def test_results_per_day_week_and_month_by_hand():
    trades = [closed(1, datetime(2025, 3, 3, 1, tzinfo=UTC), HOUR, "10"),      # today (Monday)
              closed(2, datetime(2025, 3, 2, 22, tzinfo=UTC), HOUR * 3, "-4"),  # opened Sunday, closed Monday
              closed(3, datetime(2025, 3, 1, 12, tzinfo=UTC), HOUR, "5"),       # Saturday: last week, this month
              closed(4, datetime(2025, 1, 31, 12, tzinfo=UTC), HOUR, "7")]      # January
    days = results_by_period(trades, NOW, Period.DAY, 3)
    assert [(r.start, r.trades, r.net_pnl) for r in days] == [
        (date(2025, 3, 3), 2, Decimal(6)), (date(2025, 3, 2), 0, Decimal(0)), (date(2025, 3, 1), 1, Decimal(5))]
    weeks = results_by_period(trades, NOW, Period.WEEK, 2)
    assert [(r.start, r.trades, r.wins, r.net_pnl) for r in weeks] == [
        (date(2025, 3, 3), 2, 1, Decimal(6)), (date(2025, 2, 24), 1, 1, Decimal(5))]
    months = results_by_period(trades, NOW, Period.MONTH, 3)
    assert [(r.start, r.net_pnl) for r in months] == [
        (date(2025, 3, 1), Decimal(11)), (date(2025, 2, 1), Decimal(0)), (date(2025, 1, 1), Decimal(7))]
    assert [r.start for r in results_by_period([], datetime(2025, 3, 31, tzinfo=UTC), Period.MONTH, 2)] == [
        date(2025, 3, 1), date(2025, 2, 1)]


def test_stats_by_exit_reason_side_and_duration_by_hand():
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    report = trade_stats([closed(1, t0, HOUR, "10"), closed(2, t0, HOUR * 3, "-4", reason="stop_loss"),
                          closed(3, t0, HOUR * 2, "-1", side="SHORT", reason="stop_loss"),
                          closed(4, t0, HOUR * 6, "8", side="SHORT", reason="time_stop")])
    assert [(g.name, g.trades, g.wins, g.net_pnl) for g in report.reasons] == [
        ("stop_loss", 2, 0, Decimal(-5)), ("take_profit", 1, 1, Decimal(10)), ("time_stop", 1, 1, Decimal(8))]
    assert [(g.name, g.trades, g.win_rate, g.net_pnl) for g in report.sides] == [
        ("LONG", 2, 0.5, Decimal(6)), ("SHORT", 2, 0.5, Decimal(7))]
    d = report.durations
    assert d is not None
    assert (d.average, d.median, d.shortest, d.longest) == (HOUR * 3, HOUR * 2.5, HOUR, HOUR * 6)
    assert (d.average_win, d.average_loss) == (HOUR * 3.5, HOUR * 2.5)
    assert trade_stats([]).durations is None


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake, notify_levels=parse_levels(""), log_file=tmp_path / "logs" / "vigil.log")
    await trade_a_little(c)
    yield c
    await close_cockpit(c)


async def test_period_and_stats_commands(cockpit: Cockpit):
    (daily,) = await cockpit.send("/daily")
    assert "Daily realised P&amp;L" in daily.text and "2025-03-20" in daily.text and "2025-03-14" in daily.text
    assert "over 1 trade" in daily.text
    (weekly,) = await cockpit.send("/weekly 2")
    assert "week of" in weekly.text and "2025-03-17" in weekly.text and "2025-03-10" in weekly.text
    (monthly,) = await cockpit.send("/monthly")
    assert "2025-03" in monthly.text and "2024-10" in monthly.text
    (stats,) = await cockpit.send("/stats")
    assert "manual_close" in stats.text and "LONG" in stats.text and "Duration: average 60 min" in stats.text
    for bad in ("/daily 0", "/weekly x", "/monthly 99", "/stats all"):
        (reply,) = await cockpit.send(bad)
        assert "Usage" in reply.text, bad


async def test_closed_trade_message_shows_return_and_duration(cockpit: Cockpit):
    await wait_for(lambda: any("Closed" in t and "ETHUSDT" in t for t in cockpit.fake.texts(OPERATOR)))
    text = next(t for t in cockpit.fake.texts(OPERATOR) if "Closed" in t and "ETHUSDT" in t)
    (trade,) = await cockpit.service.trades(1)
    notional = trade.initial_quantity * trade.entry_price
    on_position = f"{trade.net_pnl / notional * 100:+.2f}".replace("-", "−")
    on_margin = f"{trade.net_pnl / notional * 3 * 100:+.2f}".replace("-", "−")
    assert "held 60 min" in text
    assert f"{on_position} % of the position" in text and f"{on_margin} % on margin at 3x" in text


async def test_version_and_health(cockpit: Cockpit):
    (version,) = await cockpit.send("/version")
    assert "Vigil 0.1.0" in version.text and "Up " in version.text and "python-telegram-bot" in version.text
    await cockpit.rig.trader.scan()
    (health,) = await cockpit.send("/health")
    assert "✅ scan" in health.text and "✅ monitor" in health.text and "Notifications queued" in health.text
    cockpit.rig.clock.advance(timedelta(minutes=5))  # past two monitor intervals and a minute; the scan is not late
    (late,) = await cockpit.send("/health")
    assert "⚠️ monitor" in late.text and "LATE" in late.text and "✅ scan" in late.text


async def test_logs_shows_recent_warnings_and_errors_with_secrets_masked(cockpit: Cockpit, tmp_path: Path):
    (missing,) = await cockpit.send("/logs")
    assert "No log file yet" in missing.text
    path = tmp_path / "logs" / "vigil.log"
    path.parent.mkdir()
    path.write_text("\n".join([
        "2025-03-20 00:00:01,000Z INFO engine.trading.trader: scan done",
        "2025-03-20 00:00:02,000Z WARNING engine.market: ETHUSDT klines late <5m>",
        "2025-03-20 00:00:03,000Z ERROR bot.app: Telegram failed with " + TOKEN,
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "telegram.error.NetworkError: boom",
        "2025-03-20 00:00:04,000Z INFO engine.trading.trader: monitor done",
        "2025-03-20 00:00:05,000Z CRITICAL engine.trading.order_desk: stop could not be placed",
    ]) + "\n")
    (reply,) = await cockpit.send("/logs")
    assert "Last 3 warning(s)" in reply.text and "klines late &lt;5m&gt;" in reply.text
    assert "NetworkError: boom" in reply.text and "stop could not be placed" in reply.text
    assert "scan done" not in reply.text and "monitor done" not in reply.text
    assert TOKEN not in reply.text and TOKEN.split(":")[1] not in reply.text and "[REDACTED]" in reply.text
    (last,) = await cockpit.send("/logs 1")
    assert "stop could not be placed" in last.text and "klines" not in last.text
    (bad,) = await cockpit.send("/logs 0")
    assert "Usage" in bad.text
