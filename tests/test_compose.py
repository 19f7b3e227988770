"""docker-compose.yml and the Dockerfile agree on how the bot runs: the settings come from .env, the database
lives in the volume whatever .env says, the health check runs a command main.py has, Docker restarts the bot,
and the logs rotate. Parsed from the files, no Docker needed (bench/image_size.sh builds and runs the image)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from main import _parser

ROOT = Path(__file__).parent.parent



@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]["vigil"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def mounts(service: dict[str, Any]) -> list[PurePosixPath]:
    return [PurePosixPath(volume.split(":")[1]) for volume in service["volumes"]]


def test_settings_come_from_env_file_and_state_stays_in_the_volume(service):
    assert service["env_file"] == ".env"
    # .env.example's relative DB_PATH would point into /app, which the bot's user cannot write
    for key in ("DB_PATH", "DATA_DIR"):
        path = PurePosixPath(service["environment"][key])
        assert any(path == m or m in path.parents for m in mounts(service)), f"{key}={path} is outside the volume"


def test_docker_restarts_the_bot_and_rotates_its_logs(service):
    assert service["restart"] in {"unless-stopped", "always"}
    assert service["logging"]["driver"] == "json-file"
    assert service["logging"]["options"]["max-size"] and int(service["logging"]["options"]["max-file"]) >= 2


def test_the_health_check_is_main_health_in_compose_and_image(service):
    healthcheck = dict(runtime_stage())["HEALTHCHECK"]
    image_test = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert service["healthcheck"]["test"] == ["CMD", *image_test] == ["CMD", "python", "main.py", "health"]
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    assert "health" in commands


def test_the_image_runs_as_a_user_with_its_state_in_the_data_volume():
    stage = runtime_stage()
    users = [value for name, value in stage if name == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert json.loads(dict(stage)["VOLUME"]) == ["/data"]
    env = " ".join(value for name, value in stage if name == "ENV")
    assert "DB_PATH=/data/" in env and "DATA_DIR=/data" in env
    assert json.loads(dict(stage)["CMD"])[:2] == ["python", "main.py"]


def test_the_build_compiles_every_application_module_and_no_test():
    spec = importlib.util.spec_from_file_location("precompile", ROOT / "docker" / "precompile.py")
    precompile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(precompile)
    modules = set(precompile.application_modules(ROOT))
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
               for p in ROOT.glob("*/**/*.py")
               if p.parts[len(ROOT.parts)] not in {"tests", "bench", "docker"}
               and not p.parts[len(ROOT.parts)].startswith(".")}   # .venv, .venv-ci: not the application
    assert {"main", "settings"} <= modules
    assert on_disk <= modules
    assert not any(m.startswith(("tests", "bench")) for m in modules)
