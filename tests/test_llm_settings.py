"""LLM settings: providers are validated with one clear line, keys come from the named variable (environment or
.env), and no provider means a panel without LLMs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.llm import build_llm, key_lookup
from core.clock import ManualClock
from settings import Settings, SettingsError, load_settings
from storage.db import Database


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)


def test_a_bad_provider_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("LLM_PROVIDERS", "deepseek|api.deepseek.com|deepseek-chat|DEEPSEEK_API_KEY")
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith("LLM_PROVIDERS:")
    assert "http" in info.value.lines[0]


def test_a_key_pasted_where_its_variable_belongs_is_refused_without_echoing_it(monkeypatch):
    monkeypatch.setenv("LLM_PROVIDERS", "deepseek|https://api.deepseek.com/v1|deepseek-chat|sk-abcdef123456")
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    assert info.value.lines[0].startswith("LLM_PROVIDERS:")


async def test_providers_take_their_keys_from_dotenv(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("LLM_PROVIDERS=deepseek|https://api.deepseek.com/v1|deepseek-chat|DEEPSEEK_API_KEY|0.27|1.10,"
                   "local|http://127.0.0.1:8080/v1|qwen|\nDEEPSEEK_API_KEY=sk-from-dotenv\n")
    settings = load_settings(env)
    db = await Database(tmp_path / "v.sqlite3").open()
    try:
        llm = build_llm(settings, db, ManualClock(datetime(2025, 1, 1, tzinfo=UTC)), key_lookup(env))
        assert [v.name for v in llm.panel.voters] == ["llm:deepseek", "llm:local"]
        assert [v.provider.api_key for v in llm.panel.voters] == ["sk-from-dotenv", None]
        await llm.close()
        none = build_llm(load_settings(None), db, ManualClock(datetime(2025, 1, 1, tzinfo=UTC)))
        assert not none.panel and none.http is None
    finally:
        await db.close()


def test_a_key_variable_named_by_llm_providers_is_not_an_unknown_key(tmp_path: Path):
    from settings import unknown_keys

    env = tmp_path / ".env"
    env.write_text("LLM_PROVIDERS=deepseek|https://api.deepseek.com/v1|deepseek-chat|DEEPSEEK_API_KEY\n"
                   "DEEPSEEK_API_KEY=sk-x\nLEVERGE=20\n")
    assert [u.key for u in unknown_keys(env, {})] == ["LEVERGE"]


async def test_provider_keys_come_from_the_env_file_given_on_the_command_line(tmp_path: Path):
    env = tmp_path / "vigil.env"
    env.write_text("LLM_PROVIDERS=deepseek|https://api.deepseek.com/v1|deepseek-chat|DEEPSEEK_API_KEY\n"
                   "DEEPSEEK_API_KEY=sk-from-custom-env-file\n")
    settings = load_settings(env)
    assert settings.env_file == env
    db = await Database(tmp_path / "v.sqlite3").open()
    try:
        llm = build_llm(settings, db, ManualClock(datetime(2025, 1, 1, tzinfo=UTC)))
        assert [v.provider.api_key for v in llm.panel.voters] == ["sk-from-custom-env-file"]
        await llm.close()
    finally:
        await db.close()


def test_provider_keys_are_handed_to_the_log_filter(tmp_path: Path):
    from app.llm import provider_keys

    env = tmp_path / ".env"
    env.write_text("LLM_PROVIDERS=a|https://a.example/v1|m|A_KEY,b|http://127.0.0.1:8080/v1|m|\nA_KEY=sk-secret-a\n")
    assert provider_keys(load_settings(env)) == ("sk-secret-a",)
