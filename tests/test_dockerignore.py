""".dockerignore: what the image's build context keeps out (virtual environments, caches, secrets, local data, tests)
and keeps in (the application, its requirements, the bundled demo data). The file is parsed and matched the way
Docker does it (moby/patternmatcher: cleaned patterns, `*` `?` `**`, a pattern also matches a file's parent
directories, the last matching line wins and `!` re-includes), so no Docker daemon is needed."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ESCAPED = set(".+()|{}$^")


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _compile(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's translation of one cleaned pattern into an anchored regular expression."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*" and i < len(pattern) and pattern[i] == "*":
            i += 1
            if i < len(pattern) and pattern[i] == "/":
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
        elif ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i < len(pattern):
            out += re.escape(pattern[i])
            i += 1
        elif ch in ESCAPED:
            out += "\\" + ch
        else:
            out += ch
    return re.compile(out + "$")


def parse_dockerignore(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(line, exclusion, _compile(line)))
    return patterns


def ignored(patterns: list[Pattern], path: str) -> bool:
    """Docker's MatchesOrParentMatches: True if `path` (relative, with /) stays out of the build context."""
    parent = posixpath.dirname(path)
    parents = parent.split("/") if parent else []
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = pattern.matches(path) or any(pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            matched = not pattern.exclusion
    return matched


@pytest.fixture(scope="module")
def patterns() -> list[Pattern]:
    return parse_dockerignore((ROOT / ".dockerignore").read_text())


def repo_files() -> list[str]:
    """Every file in the working tree, as Docker would walk the context (git's internals excluded)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d != ".git" and not d.startswith(".venv")]
        rel = Path(folder).relative_to(ROOT)
        found += [(rel / name).as_posix() for name in files if (rel / name).as_posix() != ".git"]
    return found


def test_the_matcher_follows_dockers_rules():
    rules = parse_dockerignore("# comment\n\n/data/*\n!data/sample\n**/__pycache__\n*.log\nsrc/**/x?.py\n")
    assert ignored(rules, "data/vigil.sqlite3")
    assert ignored(rules, "data/binance-futures/BTCUSDT/5m.csv")  # a parent directory matches
    assert not ignored(rules, "data/sample/BTCUSDT-5m.csv.gz")  # re-included by the later `!`
    assert ignored(rules, "__pycache__/a.pyc") and ignored(rules, "bot/sub/__pycache__/a.pyc")
    assert ignored(rules, "run.log") and not ignored(rules, "logs/run.log")  # `*` does not cross `/`
    assert ignored(rules, "src/x1.py") and ignored(rules, "src/a/b/x2.py") and not ignored(rules, "src/x10.py")


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv-ci/lib/python3.11/site-packages/x.py", ".git", ".git/HEAD", ".gitignore",
    "bot/__pycache__/app.cpython-311.pyc", "engine/exchange/__pycache__/x.pyc", "engine/stray.pyc",
    ".env", ".env.live", ".pytest_cache/v/cache", ".ruff_cache/x", ".hypothesis/examples/x",
    "data/vigil.sqlite3", "data/vigil.sqlite3-wal", "data/vigil.sqlite3.lock", "data/runtime/state.json",
    "data/binance-futures/BTCUSDT/5m-2024-01.csv.gz", "data/models/voter.joblib", "data/logs/vigil.log",
    "data/backups/vigil-2025-06-01.sqlite3", "vigil.sqlite3", "logs/vigil.log", "backups/x.sqlite3", "models/m.bin",
    "tests/test_cli.py", "tests/fakes/binance_server.py", "bench/scan.py", ".ci/run", "docs/x.md",
    "requirements-dev.txt", "Dockerfile", "docker-compose.yml", ".dockerignore",
])
def test_kept_out_of_the_image(patterns, path):
    assert ignored(patterns, path), f"{path} would be sent to the Docker build and copied into the image"


@pytest.mark.parametrize("path", [
    "main.py", "settings.py", "requirements.txt", "pyproject.toml", ".env.example", "README.md",
    "docker/strip-site-packages.sh", "docker/precompile.py", "data/sample/BTCUSDT-5m.csv.gz",
    "data/sample/exchange_info.json",
])
def test_kept_in_the_image(patterns, path):
    assert not ignored(patterns, path), f"{path} is needed in the image but .dockerignore keeps it out"


def test_every_application_file_and_the_demo_data_reach_the_image(patterns):
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert {"bot", "engine", "storage", "strategies"} <= packages
    needed = [f for f in repo_files() if f.split("/")[0] in packages and f.endswith(".py")]
    needed += [f for f in repo_files() if f.startswith("data/sample/")]
    assert len(needed) > 50
    assert [f for f in needed if ignored(patterns, f)] == []


def test_nothing_from_the_working_tree_leaks_in(patterns):
    kept = [f for f in repo_files() if not ignored(patterns, f)]
    leaks = [f for f in kept if f.startswith(("tests/", "bench/", ".git")) or "__pycache__" in f
             or f.endswith((".pyc", ".sqlite3")) or posixpath.basename(f) == ".env"]
    assert leaks == []
