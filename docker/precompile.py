"""Build step of the runtime image: import every application module once, so that Python writes the byte-code of
the application and of every library it imports at module level (into __pycache__ beside the sources). The venv
itself ships without byte-code; this keeps only the part the bot loads at start (a fraction of the libraries'
total), and a module that fails to import fails the build instead of the first start. matplotlib's chart path is
imported too (the first /chart should not compile it); other lazy imports compile in memory on first use."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

SKIP = {"tests", "bench", "docker"}
LAZY = ("matplotlib.figure", "matplotlib.backends.backend_agg")


def application_modules(root: Path) -> list[str]:
    names = [path.stem for path in root.glob("*.py")]
    for init in sorted(root.glob("*/__init__.py")):
        package = init.parent.name
        if package not in SKIP:
            names.append(package)
            names += [m.name for m in pkgutil.walk_packages([str(init.parent)], prefix=f"{package}.")]
    return names


def main() -> int:
    root = Path.cwd()
    sys.path.insert(0, str(root))
    modules = [*application_modules(root), *LAZY]
    for name in modules:
        importlib.import_module(name)
    print(f"precompile: imported {len(modules)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
