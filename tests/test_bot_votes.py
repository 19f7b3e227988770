"""/why, /model and the trade-opened notification's votes through the real PTB Application against the fake Bot API,
over a real trader on real data with the vote book attached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.runtime import build_vote_log
from core.enums import VoterKind
from engine.trading.vote_log import VoteLog
from storage.votes import VoteRow
from strategies.model_store import MODEL_FILE, ModelMeta, save_model
from tests.fakes.telegram_server import FakeTelegram
from tests.test_bot_harness import ALL_OFF, OPERATOR, Cockpit, close_cockpit, fake, open_cockpit, wait_for  # noqa: F401


@pytest.fixture
async def cockpit(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Cockpit]:  # noqa: F811
    c = await open_cockpit(tmp_path, fake, notify_levels={**ALL_OFF, "trade_opened": "on"},
                           rig_kwargs={"data_dir": tmp_path / "data"})
    rig = c.rig
    rig.trader.vote_log = build_vote_log(rig.settings, rig.repos, rig.trader.market, rig.clock)
    yield c
    await close_cockpit(c)


async def test_trade_opened_notification_lists_the_votes_and_reasons(cockpit: Cockpit):
    report = await cockpit.rig.trader.scan()
    (trade_id,) = report.opened
    await wait_for(lambda: any(f"#{trade_id}" in t and "Opened" in t for t in cockpit.fake.texts(OPERATOR)))
    text = next(t for t in cockpit.fake.texts(OPERATOR) if f"#{trade_id}" in t and "Opened" in t)
    assert "Consensus 1.00 · votes:" in text and "• fixed LONG 1.00 — test" in text
    assert "/why BTCUSDT" in text


async def test_why_answers_from_the_last_scan_then_from_the_table(cockpit: Cockpit):
    rig = cockpit.rig
    (trade_id,) = (await rig.trader.scan()).opened
    (btc,) = await cockpit.send("/why btcusdt")
    assert "<b>BTCUSDT</b> · last scan" in btc.text and "Consensus <b>LONG</b> score 1.00 (threshold 0.50)" in btc.text
    assert f"opened trade #{trade_id}" in btc.text and "▲ <b>fixed</b> LONG 1.00 — test" in btc.text
    assert btc.params["parse_mode"] == "HTML"
    (eth,) = await cockpit.send("/why ETHUSDT")
    assert "Consensus <b>FLAT</b>" in eth.text and "every voter is FLAT" in eth.text
    assert "· <b>fixed</b> FLAT" in eth.text

    # a restart forgets the last scan: the table answers, with the outcome once resolved
    rig.trader.vote_log = VoteLog(rig.repos.votes, rig.trader.market, rig.clock, rig.trader.vote_log.config)
    (stored,) = await cockpit.send("/why BTCUSDT")
    assert "· stored" in stored.text and f"opened trade #{trade_id}" in stored.text and "→" not in stored.text
    (entry,) = await rig.repos.votes.pending()
    await rig.repos.votes.resolve(entry, "tp", 1.4, rig.clock.now())
    (resolved,) = await cockpit.send("/why BTCUSDT")
    assert "→ ✅ take-profit" in resolved.text
    (never,) = await cockpit.send("/why ETHUSDT")
    assert "no votes on ETHUSDT" in never.text and "/scan" in never.text


async def test_why_refuses_unknown_symbols_and_bad_arguments(cockpit: Cockpit):
    await cockpit.rig.trader.scan()
    (unknown,) = await cockpit.send("/why NOPEUSDT")
    assert "NOPEUSDT is not a USDⓈ-M perpetual" in unknown.text
    (bad,) = await cockpit.send("/why BTC-USDT")
    assert "is not a symbol" in bad.text
    (bare,) = await cockpit.send("/why")
    assert "Usage: /why SYMBOL" in bare.text
    (two,) = await cockpit.send("/why BTCUSDT ETHUSDT")
    assert "Usage: /why SYMBOL" in two.text


async def test_model_without_a_model_then_with_one_and_live_votes(cockpit: Cockpit):
    (none,) = await cockpit.send("/model")
    assert "no model: the ML voter abstains" in none.text and "Live: no resolved ML vote yet" in none.text
    assert "Panel: fixed" in none.text and "not applied (LEARNED_WEIGHTS=false)" in none.text
    assert "No resolved votes yet" in none.text

    rig = cockpit.rig
    meta = ModelMeta(kind="ensemble-v1", features=["5m_ret_1", "1h_adx"], label={"horizon": 288},
                     symbols=["BTCUSDT", "ETHUSDT"], train_start="2024-01-01T00:00:00Z",
                     train_end="2024-06-30T23:55:00Z", created_at="2024-07-01T00:00:00Z",
                     metrics={"threshold": 0.55, "out_of_sample": {
                         "long": {"hit_rate": 0.6, "acted": 300, "brier": 0.2301, "brier_base": 0.2400},
                         "short": {"hit_rate": 0.5, "acted": 100, "brier": 0.2402, "brier_base": 0.2450}}})
    save_model(rig.settings.models_dir / MODEL_FILE, {"long": None, "short": None}, meta)
    now = rig.clock.now()
    # the ML voter's votes are told by their kind, not their name: "mlp" is a rule voter whose name starts with ml
    kinds = {"ml": VoterKind.ML, "fixed": VoterKind.RULE, "mlp": VoterKind.RULE}
    rows = [VoteRow(now - timedelta(hours=30, minutes=5 * i), "BTCUSDT", i, voter, 1, 0.7, "", 1, 0.7, "ranging",
                    100.0, 1.0, "", voter_kind=kind) for i in range(4) for voter, kind in kinds.items()]
    await rig.repos.votes.record(rows)
    for n, entry in enumerate(await rig.repos.votes.pending()):
        await rig.repos.votes.resolve(entry, "tp" if n % 2 else "sl", 1.4 if n % 2 else -1.1, now)
    (model,) = await cockpit.send("/model")
    text = model.text
    assert "vigil-ml.joblib · ensemble-v1 · 2 features" in text and "Trained 2024-01-01 → 2024-06-30" in text
    assert "OOS long: hit 0.60 on 300 acted" in text and "Brier 0.2301 (base 0.2400)" in text
    assert "Live hit rate 0.50 over the last 4 resolved ML votes (window 200) · out of sample 0.57" in text
    assert "⚠️" not in text
    assert "fixed" in text and "range" in text and "1.00" in text   # below min_votes: the prior weight
