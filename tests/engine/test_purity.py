"""policy_engine stays pure: no proxy, web, HTTP or database imports anywhere in
it, and in the engine core file I/O only in the loader (policy files) and the
parser (its own grammar, via lark). The command-line layers (`cli.py`,
`__main__.py`, `tooling/`) read the files their users name and are not core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "policy_engine"
FORBIDDEN_IMPORTS = {
    "proxy", "litestar", "httpx", "aiohttp", "psycopg", "redis", "sqlite3", "requests",
    "socket", "urllib", "http", "subprocess",
}  # fmt: skip
# Calls that touch files; each allowed only where listed.
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob",
            "rglob", "is_dir", "is_file", "exists", "unlink", "mkdir"}  # fmt: skip
ALLOWED_IO = {
    ("loader.py", "read_policy_files"),  # the engine's one loader function
    ("parser.py", "lark_parser"),  # the package's own grammar file (lark reads it, caches tables)
    ("parse_fast.py", "_tables"),  # the package's own parse tables (`parse_tables.json`)
    ("parse_tables.py", "main"),  # the build step that writes them
}
MODULES = sorted(PACKAGE.rglob("*.py"))
COMMAND_LINE = {"cli.py", "__main__.py"}
CORE = [
    p
    for p in MODULES
    if "tooling" not in p.relative_to(PACKAGE).parts and p.name not in COMMAND_LINE
]


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _io_calls(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(enclosing function, called name, line) for every file-touching call."""
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            if isinstance(child, ast.Call):
                func = child.func
                name = (
                    func.id
                    if isinstance(func, ast.Name)
                    else func.attr
                    if isinstance(func, ast.Attribute)
                    else ""
                )
                if name in IO_CALLS:
                    found.append((function, name, child.lineno))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def test_modules_found() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_forbidden_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not _imports(tree) & FORBIDDEN_IMPORTS


@pytest.mark.parametrize("path", CORE, ids=[str(p.relative_to(PACKAGE)) for p in CORE])
def test_file_io_only_in_the_loader(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function, name, line in _io_calls(tree):
        assert (path.name, function) in ALLOWED_IO, f"{path.name}:{line}: `{name}` in `{function}`"


def test_the_scan_sees_the_loader() -> None:
    loader = ast.parse((PACKAGE / "loader.py").read_text(encoding="utf-8"))
    assert ("read_policy_files", "read_text") in {(f, n) for f, n, _ in _io_calls(loader)}
