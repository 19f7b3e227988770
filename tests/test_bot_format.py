"""HTML formatting: escaping, numbers with units and signs, splitting under 4096 characters."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from bot.commands import COMMANDS, help_text, menu
from bot.format import MAX_MESSAGE, esc, money, pct, plain, price, qty, split_message, table
from bot.notices import category, render
from engine.events import Alert, Level, StateChanged, TradeClosed, TradeOpened

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


def balanced(chunk: str) -> bool:
    """Every tag opened in the chunk is closed in it, in order."""
    stack: list[str] = []
    for closing, name in re.findall(r"<(/?)(\w+)[^>]*>", chunk):
        if closing:
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack


def test_numbers_carry_units_and_signs():
    assert money(Decimal("12.346")) == "+12.35 USDT" and money(Decimal("-1234.5")) == "−1,234.50 USDT"
    assert money(Decimal("5"), signed=False) == "5.00 USDT"
    assert pct(Decimal("-1.234")) == "−1.23 %" and pct(2) == "+2.00 %"
    assert price(Decimal("84000.10")) == "84,000.1" and price(None) == "—"
    assert qty(Decimal("0.0100")) == "0.01" and qty(Decimal("3.000")) == "3"


def test_everything_from_outside_is_escaped():
    assert esc("<b>&") == "&lt;b&gt;&amp;"
    assert table([["a<b", "1"]]) == "<pre>a&lt;b 1</pre>"
    text = render(Alert(time=NOW, level=Level.WARNING, message="order <x> & co"))
    assert "&lt;x&gt; &amp; co" in text and balanced(text)
    closed = render(TradeClosed(time=NOW, trade_id=3, mode="paper", symbol="BTC<USDT", side="LONG",
                                quantity=Decimal("0.01"), entry_price=Decimal(100), exit_price=Decimal(90),
                                reason="stop_loss", realized_pnl=Decimal(-1), fees=Decimal("0.1"),
                                funding=Decimal("0.01")))
    assert "BTC&lt;USDT" in closed and "Net <b>−1.09 USDT</b>" in closed and balanced(closed)


def test_trade_opened_shows_what_the_operator_needs():
    text = render(TradeOpened(time=NOW, trade_id=7, mode="paper", symbol="ETHUSDT", side="SHORT",
                              quantity=Decimal("0.5"), entry_price=Decimal("2000"), stop_price=Decimal("2050"),
                              take_profit_price=Decimal("1900"), leverage=3, liquidation_price=Decimal("2600"),
                              fee=Decimal("0.5"), score=0.8, votes=("trend:SHORT:0.80",)))
    for part in ("ETHUSDT", "SHORT 3x", "SL 2,050 (+2.50 %)", "TP 1,900 (−5.00 %)", "Liquidation 2,600",
                 "trend:SHORT:0.80", "1,000.00 USDT"):
        assert part in text


def test_categories():
    assert category(StateChanged(time=NOW, state="started")) is None
    assert category(StateChanged(time=NOW, state="paused")) == "state"


def test_split_keeps_chunks_under_the_limit_and_pre_blocks_whole():
    rows = [[f"SYM{i}USDT", "LONG", f"{i:+.2f}"] for i in range(600)]
    text = "<b>Header</b>\n" + table(rows) + "\nTotal <b>1</b>"
    chunks = split_message(text)
    assert len(chunks) > 1 and all(len(c) <= MAX_MESSAGE for c in chunks)
    assert all(balanced(c) for c in chunks)
    assert "\n".join(plain(c) for c in chunks).count("USDT") == 600


def test_split_cuts_an_overlong_line_outside_entities():
    text = ("x" * 4090) + "&amp;" + ("y" * 5000)
    chunks = split_message(text)
    assert all(len(c) <= MAX_MESSAGE for c in chunks)
    assert "".join(chunks) == text and "&amp;" in "".join(chunks)
    assert not any(c.endswith("&am") or c.startswith("p;") for c in chunks)
    assert split_message("short") == ["short"]


def test_help_and_menu_list_the_same_commands():
    names = [c.command for c in menu()]
    assert all(f"/{n}" in help_text() for n in names) and len(names) == len(set(names)) == len(COMMANDS) <= 100
    assert all(1 <= len(c.description) <= 256 for c in menu())


def test_breakers_view_marks_tripped_ok_and_switched_off():
    from bot.views import breakers
    from engine.service import BreakerView

    text = breakers([
        BreakerView("daily_loss", True, "equity −3.2 % <today>", NOW, NOW, "3% of the day's start", "at UTC midnight"),
        BreakerView("drawdown", False, "", None, None, "15% below peak equity", "by the operator only"),
        BreakerView("volatility", False, "", None, None, "BTC ATR >= 0.0x its norm", "after 1:00:00"),
    ])
    assert "🔴 <b>daily_loss</b> TRIPPED since 2025-03-20 12:00 UTC" in text and "&lt;today&gt;" in text
    assert "🟢 drawdown" in text and "15% below peak equity" in text
    assert "⚪ volatility — off" in text and "/breakers reset" in text
    assert breakers([]) == "🟢 No circuit breaker has tripped."
