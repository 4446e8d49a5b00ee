"""DESIGN.md's one-way import order, checked over every module of the package (function-level
imports included: a lazy import is still a dependency).

    core  <-  ir  <-  features  <-  costmodel  <-  tuner  <-  planner  <-  frontends
              profiling and datasets beside, on core and ir only

A package may import itself and what sits below it; ``bench/`` and ``tests/`` may import anything.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: package -> the tilewise packages it may import (besides itself)
ALLOWED = {
    "core": set(),
    "ir": {"core"},
    "profiling": {"core", "ir"},
    "datasets": {"core", "ir"},
    "features": {"core", "ir"},
    "costmodel": {"core", "ir", "features", "datasets"},
    "tuner": {"core", "ir", "features", "costmodel", "profiling", "datasets"},
    "planner": {"core", "ir", "features", "costmodel", "profiling", "datasets", "tuner"},
    "frontends": {"core", "ir", "features", "costmodel", "profiling", "datasets", "tuner", "planner"},
}
TOP_LEVEL_OK = {"tilewise"}           # ``from tilewise import __version__``


def _modules():
    for package in ALLOWED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for f in files:
                if f.endswith(".py"):
                    yield package, os.path.relpath(os.path.join(folder, f), ROOT)


def _imported(path: str) -> list[tuple[int, str]]:
    tree = ast.parse(open(os.path.join(ROOT, path)).read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; import tilewise.<package> absolutely")
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return [(line, m) for line, m in out if m == "tilewise" or m.startswith("tilewise.")]


def test_every_package_is_listed():
    packages = {d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}
    assert packages - {"tests", "bench"} == set(ALLOWED)
    top_modules = [f for f in os.listdir(ROOT) if f.endswith(".py") and f != "__init__.py"]
    assert top_modules == [], f"modules outside the stage packages: {top_modules}"


@pytest.mark.parametrize("package,path", sorted(_modules()))
def test_imports_point_down(package, path):
    bad = []
    for line, module in _imported(path):
        if module in TOP_LEVEL_OK:
            continue
        target = module.split(".")[1]
        if target != package and target not in ALLOWED[package]:
            bad.append(f"{path}:{line} imports {module} ({package} may import {sorted(ALLOWED[package]) or 'nothing'})")
    assert not bad, "\n".join(bad)


def test_core_is_free_of_torch_and_mlir():
    for package, path in _modules():
        if package != "core":
            continue
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
                [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        heavy = [m for m in names if m.split(".")[0] in ("torch", "torch_mlir", "numpy", "triton")]
        assert not heavy, f"{path} imports {heavy}"


def test_every_subpackage_is_installed():
    """pyproject lists its packages one by one: a new subpackage left out is missing from a wheel."""
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    listed = set(text.split("packages = [", 1)[1].split("]", 1)[0].replace('"', "").replace(",", " ").split())
    found = {"tilewise"}
    for package in ALLOWED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            if "__init__.py" in files:
                found.add("tilewise." + os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert found == listed, f"unlisted: {sorted(found - listed)}, listed but absent: {sorted(listed - found)}"
