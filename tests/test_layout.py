"""The import rules of DESIGN.md, pinned on the real import graph (every ``import`` statement, lazy ones included).

- ``core/`` imports nothing of ours;
- ``engine/``, ``strategies/`` and ``storage/`` never import ``bot/`` or ``app/`` (the composition root);
- the decision core (``engine/policy/``, ``engine/exchange/fills.py``) is pure: no asyncio, no storage, no network.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core", "engine", "strategies", "storage", "bot", "app", "settings", "main"}
IO_MODULES = {"asyncio", "aiosqlite", "aiohttp", "httpx", "binance", "telegram", "sqlite3", "socket", "storage",
              "requests", "urllib"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def package_files(*packages: str) -> list[Path]:
    files: list[Path] = []
    for package in packages:
        target = ROOT / package
        files.extend([target] if target.suffix == ".py" else sorted(target.rglob("*.py")))
    return [f for f in files if f.exists()]


def violations(files: list[Path], forbidden: set[str]) -> list[str]:
    found = []
    for path in files:
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in forbidden or module in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_core_imports_nothing_of_ours() -> None:
    assert package_files("core"), "core/ is missing"
    assert violations(package_files("core"), OURS) == []


@pytest.mark.parametrize("package", ["engine", "strategies", "storage"])
def test_lower_layers_never_import_the_bot_or_the_composition_root(package: str) -> None:
    assert violations(package_files(package), {"bot", "app", "main"}) == []


def test_decision_core_is_pure() -> None:
    files = package_files("engine/policy", "engine/exchange/fills.py")
    assert any(f.parent.name == "policy" for f in files)
    assert violations(files, IO_MODULES | {"bot", "app", "main", "settings"}) == []
    assert not [f for f in files if "async def" in f.read_text()], "the decision core has no coroutines"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself sees plain, dotted, lazy and from-imports."""
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\ndef f() -> None:\n    from bot.app import start_bot\n")
    assert imported_modules(bad) == {"asyncio", "bot.app"}
