"""Everything `policy_engine` and `proxy` import at run time is installed by `pip install -e .`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_top_level_names(package: Path) -> set[str]:
    names: set[str] = set()
    for file in package.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _with_requirements(specs: list[str]) -> set[str]:
    """The declared distributions and what they require (with the extras asked for)."""
    seen: set[str] = set()
    todo = list(specs)
    while todo:
        spec = todo.pop()
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", spec)
        assert match is not None, spec
        name, extras = _normalise(match.group(1)), set((match.group(2) or "").split(","))
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        for need in needs:
            marker = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", need)
            if marker is None or marker.group(1) in extras:
                todo.append(need.split(";")[0])
    return seen


def test_every_runtime_import_is_a_declared_dependency() -> None:
    # `policy-engine prop` once failed with ModuleNotFoundError: hypothesis was a dev extra.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _with_requirements(list(project["dependencies"]))
    distributions = packages_distributions()
    optional = {"regorus", "cel_expr_python", "cel"}  # bench extras, imported only if present
    missing = []
    for package in ("policy_engine", "proxy"):
        for name in sorted(_imported_top_level_names(REPO / package)):
            if name in sys.stdlib_module_names or name in {"policy_engine", "proxy"}:
                continue
            if name in optional:
                continue
            dists = {_normalise(d) for d in distributions.get(name, [name])}
            if not dists & declared:
                missing.append(f"{package} imports {name} ({', '.join(sorted(dists))})")
    assert not missing, "not in [project.dependencies]: " + "; ".join(missing)


# Declared dependencies that runtime code names rather than imports, and where.
_LOADED_BY_NAME = {
    "uvloop": ("proxy/server.py", '"uvloop"'),  # uvicorn's `loop="uvloop"`
    "httptools": ("proxy/connection_deadlines.py", "httptools_impl"),  # uvicorn's protocol
    "tzdata": ("policy_engine/builtins/time.py", "ZoneInfo("),  # zoneinfo's fallback database
}


def test_every_declared_dependency_is_used_at_run_time() -> None:
    # httpx was declared for years while only the tests imported it (issue 16).
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    modules_of: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(_normalise(dist), set()).add(module)
    imported = _imported_top_level_names(REPO / "policy_engine")
    imported |= _imported_top_level_names(REPO / "proxy")
    unused = []
    for spec in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)", spec)
        assert match is not None, spec
        name = _normalise(match.group(1))
        if name in _LOADED_BY_NAME:
            file, needle = _LOADED_BY_NAME[name]
            assert needle in (REPO / file).read_text(encoding="utf-8"), f"{name}: {file}"
            continue
        if not modules_of.get(name, {name}) & imported:
            unused.append(name)
    assert not unused, f"declared in [project.dependencies] but never imported: {unused}"
