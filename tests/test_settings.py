"""Settings validation: one clear line per bad key, never a traceback, secrets never echoed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from settings import SettingsError, load_settings

ALL_KEYS = [
    "TRADING_MODE", "BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_ENV", "BINANCE_BASE_URL", "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_ALLOWED_USER_IDS", "TELEGRAM_API_BASE_URL", "DB_PATH", "DATA_DIR", "SCAN_INTERVAL_SECONDS",
    "MONITOR_INTERVAL_SECONDS", "PAPER_START_BALANCE", "UNIVERSE_SIZE", "SYMBOLS", "LEVERAGE", "MARGIN_TYPE",
    "RISK_PER_TRADE_PCT", "MAX_OPEN_POSITIONS", "LOG_LEVEL",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    from settings import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def lines_for(monkeypatch, **env: str) -> list[str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    return info.value.lines


def test_defaults_are_paper_and_safe():
    s = load_settings(None)
    assert s.trading_mode == "paper"
    assert s.scan_interval_seconds == 300
    assert s.monitor_interval_seconds == 60
    assert s.paper_start_balance == Decimal("1000")
    assert s.timeframes == ["5m", "15m", "1h", "4h"]


def test_live_without_keys_is_one_clear_line(monkeypatch):
    assert lines_for(monkeypatch, TRADING_MODE="live") == [
        "TRADING_MODE: live trading needs BINANCE_API_KEY and BINANCE_API_SECRET"]


def test_each_bad_key_gets_its_own_line(monkeypatch):
    lines = lines_for(monkeypatch, RISK_PER_TRADE_PCT="-1", SYMBOLS="btc-usd,ETHUSDT", LEVERAGE="abc",
                      TIMEFRAMES="5m,7m")
    keys = sorted(line.split(":", 1)[0] for line in lines)
    assert keys == ["LEVERAGE", "RISK_PER_TRADE_PCT", "SYMBOLS", "TIMEFRAMES"]
    symbols_line = next(line for line in lines if line.startswith("SYMBOLS"))
    assert "BTC-USD" in symbols_line


def test_secrets_never_appear_in_messages_or_redacted_view(monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", "very-secret-key")
    monkeypatch.setenv("BINANCE_API_SECRET", "very-secret-secret")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:secret-token")
    monkeypatch.setenv("LEVERAGE", "0")
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    text = str(info.value)
    assert "secret" not in text and "LEVERAGE" in text
    monkeypatch.setenv("LEVERAGE", "3")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "42")
    s = load_settings(None)
    shown = " ".join(s.redacted().values()) + repr(s)
    assert "very-secret" not in shown and "secret-token" not in shown


def test_lists_parse_from_commas(monkeypatch):
    monkeypatch.setenv("SYMBOLS", "btcusdt, ethusdt")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "1, 2,3")
    s = load_settings(None)
    assert s.symbols == ["BTCUSDT", "ETHUSDT"]
    assert s.telegram_allowed_user_ids == [1, 2, 3]


def test_bad_user_ids_and_urls(monkeypatch):
    lines = lines_for(monkeypatch, TELEGRAM_ALLOWED_USER_IDS="alice", BINANCE_BASE_URL="ftp://x")
    assert any(line.startswith("TELEGRAM_ALLOWED_USER_IDS:") for line in lines)
    assert any(line.startswith("BINANCE_BASE_URL:") for line in lines)


def test_token_without_allowed_users_is_refused(monkeypatch):
    assert lines_for(monkeypatch, TELEGRAM_BOT_TOKEN="1:abc") == [
        "TELEGRAM_ALLOWED_USER_IDS: set at least one user id when TELEGRAM_BOT_TOKEN is set"]


def test_env_file_is_read(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("LEVERAGE=5\nMARGIN_TYPE=crossed\n")
    s = load_settings(env)
    assert s.leverage == 5 and s.margin_type == "CROSSED"


def test_env_example_documents_every_key():
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    from settings import Settings

    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert missing == []
    assert set(ALL_KEYS) <= documented
