"""Imports are one-way, as DESIGN.md draws them, and every module imports on its own."""
from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("timing_wheel", "actors", "channels", "engine", "bench")
#: package -> packages of ours it may import
ALLOWED = {
    "timing_wheel": set(),
    "actors": {"timing_wheel"},
    "channels": set(),
    "engine": set(PACKAGES),  # DESIGN.md: engine may import everything (the CLI runs bench/)
    "bench": set(PACKAGES),
}


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            out.append((name, path))
    return out


@pytest.mark.parametrize("name,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_are_one_way(name: str, path: pathlib.Path) -> None:
    package = name.split(".")[0]
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    ours = (imported & set(PACKAGES)) - {package}
    assert ours <= ALLOWED[package], f"{name} imports {sorted(ours - ALLOWED[package])}"


def test_every_package_imports_alone() -> None:
    """A fresh interpreter per package catches import cycles (aiohttp's test_circular_imports)."""
    for package in PACKAGES:
        proc = subprocess.run([sys.executable, "-c", f"import {package}"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    importlib.import_module("engine.cli")
