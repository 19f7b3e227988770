"""``python main.py retrain`` on the bundled sample: it promotes a candidate over a worse model in use (the replaced
pair kept as .previous, the new one loadable by the bot) and keeps a better model in use untouched."""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import main
from app.ml_panel import ml_voter_from_settings
from settings import Settings
from strategies.ml_voter import feature_names
from strategies.model_store import meta_path, read_meta
from strategies.model_swap import previous_path, staged_path
from tests.fakes.binance_server import FakeBinanceFutures
from tests.helpers_market import SAMPLE_DIR
from tests.retrain_fixtures import CFG, constant_model, save_pair

pytestmark = pytest.mark.slow  # retrains of a few seconds each


def retrain(tmp_path: Path, model: Path, *extra: str) -> int:
    return main.main(["--env-file", str(tmp_path / "absent.env"), "retrain", "--model", str(model),
                      "--data-dir", str(SAMPLE_DIR), "--symbols", "BTCUSDT,ETHUSDT", "--end", "2025-05-01",
                      "--train-days", "45", "--holdout-days", "20", "--stride", "12", *extra])


def in_use(tmp_path: Path, p_win: float) -> Path:
    """A model in use that always says ``p_win`` (trained, as its metadata says, up to 2025-02-01)."""
    return save_pair(tmp_path / "models" / "vigil-ml.joblib", constant_model(p_win), feature_names(CFG.timeframes),
                     train_end="2025-02-01T00:00:00Z", created="in use")


def test_a_better_candidate_is_promoted_and_the_old_model_kept_for_rollback(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    model = in_use(tmp_path, 0.95)   # says "take-profit first" 95 % of the time: a poor Brier score
    assert retrain(tmp_path, model) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("retrain: promoted: candidate Brier")
    meta = read_meta(model)
    assert meta.created_at != "in use" and meta.train_end < "2025-04-09"
    decision = meta.metrics["retrain"]
    assert decision["promote"] and decision["candidate"]["brier"] < decision["current"]["brier"]
    assert decision["window_start_ms"] > 0 and set(meta.metrics["out_of_sample"]) == {"long", "short"}
    assert read_meta(previous_path(model)).created_at == "in use"
    assert not staged_path(model).exists() and not meta_path(staged_path(model)).exists()
    assert ml_voter_from_settings(Settings(_env_file=None, ml_model_path=model)) is not None
    assert retrain(tmp_path, model, "--rollback") == 0
    assert read_meta(model).created_at == "in use"


def test_a_worse_candidate_is_not_promoted_and_the_model_in_use_is_untouched(tmp_path: Path) -> None:
    model = in_use(tmp_path, 0.25)   # the base rate: on this sample the candidate's Brier is not lower
    before = (model.read_bytes(), meta_path(model).read_bytes())
    assert retrain(tmp_path, model) == 3
    assert (model.read_bytes(), meta_path(model).read_bytes()) == before
    assert not previous_path(model).exists() and not staged_path(model).exists()


def test_missing_data_is_a_clear_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = in_use(tmp_path, 0.25)
    code = main.main(["--env-file", str(tmp_path / "absent.env"), "retrain", "--model", str(model),
                      "--data-dir", str(tmp_path), "--symbols", "BTCUSDT"])
    assert code == 2 and "python main.py download" in capsys.readouterr().out


async def test_refresh_fetches_the_window_first_then_retrains(tmp_path: Path) -> None:
    """A separate process against the fake Binance (which serves the bundled sample): an empty data folder is
    filled with the window, then the candidate is judged as usual."""
    model = in_use(tmp_path, 0.95)
    data = tmp_path / "market"
    async with FakeBinanceFutures(start=datetime(2025, 5, 1, 0, 0, 30, tzinfo=UTC)) as fake:
        env = {**os.environ, "BINANCE_BASE_URL": fake.base_url}
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(main.__file__)), "--env-file", str(tmp_path / "absent.env"), "retrain",
            "--refresh", "--model", str(model), "--data-dir", str(data), "--symbols", "BTCUSDT,ETHUSDT",
            "--end", "2025-05-01", "--train-days", "45", "--holdout-days", "20", "--stride", "12",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), 240)
    assert child.returncode == 0, (out + err).decode()[-2000:]
    with gzip.open(data / "BTCUSDT-5m.csv.gz", "rt") as fh:
        rows = fh.read().splitlines()
    assert len(rows) - 1 >= 45 * 288 and rows[-1].startswith(str(int(datetime(2025, 4, 30, 23, 55,
                                                                               tzinfo=UTC).timestamp() * 1000)))
    assert read_meta(previous_path(model)).created_at == "in use"
