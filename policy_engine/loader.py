"""The engine's only file I/O: reading policy files named by the caller.

Directories are read non-recursively: `*.rego` files and `*.iam.yaml` files,
in name order. Everything else in the package is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from policy_engine.errors import COMPILE_ERROR, Diagnostic, PolicyError

__all__ = ["POLICY_SUFFIXES", "read_policy_files"]

POLICY_SUFFIXES = (".rego", ".iam.yaml")


def read_policy_files(paths: Iterable[str | Path]) -> dict[str, str]:
    """`{file name: text}` for every policy file named or found directly in a directory."""
    sources: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.name.endswith(POLICY_SUFFIXES)
            )
        elif path.is_file():
            files = [path]
        else:
            problems.append(
                Diagnostic(
                    code=COMPILE_ERROR,
                    message=f"no policy file or directory at `{path}`",
                    file=str(path),
                    line=0,
                    column=0,
                )
            )
            continue
        for file in files:
            try:
                sources[str(file)] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(
                    Diagnostic(
                        code=COMPILE_ERROR,
                        message=f"cannot read `{file}`: {exc}",
                        file=str(file),
                        line=0,
                        column=0,
                    )
                )
    if problems:
        raise PolicyError(problems)
    return sources
