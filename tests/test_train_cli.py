"""``python main.py train`` on the bundled real data: walk-forward figures printed, a model file with metadata
saved and loadable; bad input is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from main import main
from strategies.model_store import load_model
from tests.helpers_market import SAMPLE_DIR


def test_bad_input_is_one_line(tmp_path: Path, capsys):
    assert main(["train", "--data-dir", str(SAMPLE_DIR), "--start", "2025-01-10", "--end", "2025-01-05"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["train", "--data-dir", str(SAMPLE_DIR), "--symbols", "NOPEUSDT", "--start", "2025-01-01",
                 "--end", "2025-02-01"]) == 2
    assert "NOPEUSDT" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(SAMPLE_DIR), "--symbols", "BTCUSDT", "--start", "2025-01-01",
                 "--end", "2025-02-01", "--train-days", "60", "--test-days", "30"]) == 2
    assert "too short" in capsys.readouterr().err


@pytest.mark.slow
def test_train_evaluates_walk_forward_and_saves_a_loadable_model(tmp_path: Path, capsys):
    out = tmp_path / "models" / "m.joblib"
    report = tmp_path / "eval.json"
    code = main(["train", "--data-dir", str(SAMPLE_DIR), "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-01-01",
                 "--end", "2025-03-01", "--train-days", "21", "--test-days", "14", "--stride", "6",
                 "--horizon-hours", "12", "--out", str(out), "--json", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "out of sample, all folds" in printed and "Brier" in printed
    evaluation = json.loads(report.read_text())
    assert len(evaluation["folds"]) >= 2 and evaluation["overall"]["long"]["predictions"] > 0
    meta = json.loads(out.with_suffix(".json").read_text())
    model = load_model(out, meta["features"])
    assert model.meta.symbols == ["BTCUSDT", "ETHUSDT"] and model.meta.label["horizon"] == 144
    assert model.meta.metrics["out_of_sample"]["short"]["predictions"] > 0
    assert model.meta.train_end.startswith("2025-02")
