"""Every actors module imports on its own (no cycles) and only from the allowed packages."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "actors").glob("*.py") if p.stem != "__init__")
ALLOWED_TOP = {"actors", "msgpack", "msgspec", "timing_wheel", "__future__"} | set(sys.stdlib_module_names)


@pytest.mark.parametrize("module", MODULES)
def test_imports_are_one_way(module: str) -> None:
    tree = ast.parse((ROOT / "actors" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] in ALLOWED_TOP, f"actors.{module} imports {name}"
        for banned in ("asyncio", "logging", "time"):
            assert banned not in [n.split(".")[0] for n in names], f"actors.{module} imports {banned}"


def test_each_module_imports_alone() -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for module in MODULES:
        subprocess.run([sys.executable, "-c", code, f"actors.{module}"], cwd=ROOT, check=True)


def test_public_surface() -> None:
    import actors

    for name in actors.__all__:
        assert hasattr(actors, name), name
