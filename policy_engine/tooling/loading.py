"""Policies and data for the offline tools, read the way the proxy reads them.

The engine's loader reads `.rego` and `.iam.yaml` files; the tools add the
data: `--data FILE` (a JSON or YAML document merged at the root of `data`),
`--data NAME=FILE` (placed at `data.NAME`), and a `catalog.yaml` found in a
policy directory, loaded as `data.catalog` like the proxy does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from policy_engine.errors import COMPILE_ERROR, Diagnostic, PolicyError
from policy_engine.loader import read_policy_files
from policy_engine.tooling.yaml_tests import YAML_TEST_SUFFIX

__all__ = ["PolicySet", "load_policy_set", "read_document"]

CATALOG_FILE = "catalog.yaml"


class PolicySet(msgspec.Struct, frozen=True, kw_only=True):
    """Policy texts by file name plus the base `data` document."""

    sources: dict[str, str]
    data: dict[str, Any]


def read_document(path: str | Path) -> Any:
    """A JSON or YAML file's content; raises `PolicyError` naming the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PolicyError(
            [
                Diagnostic(
                    code=COMPILE_ERROR,
                    message=f"cannot read `{file}` as JSON or YAML: {exc}",
                    file=str(file),
                    line=1,
                    column=1,
                )
            ]
        ) from None


def load_policy_set(paths: Iterable[str | Path], data_specs: Iterable[str] = ()) -> PolicySet:
    """The policies under `paths` and the data from `data_specs` (`FILE` or `NAME=FILE`)."""
    path_list = [Path(p) for p in paths]
    # YAML test files are named next to policies but are not policies.
    sources = read_policy_files([p for p in path_list if not p.name.endswith(YAML_TEST_SUFFIX)])
    data: dict[str, Any] = {}
    for directory in path_list:
        catalog = directory / CATALOG_FILE
        if directory.is_dir() and catalog.is_file():
            data["catalog"] = read_document(catalog)
    for spec in data_specs:
        name, sep, file = spec.partition("=")
        if sep and name.isidentifier():
            data[name] = read_document(file)
            continue
        document = read_document(spec)
        if not isinstance(document, Mapping):
            raise PolicyError(
                [
                    Diagnostic(
                        code=COMPILE_ERROR,
                        message=f"`{spec}` must hold an object to merge into `data`; "
                        "write `--data NAME=FILE` to place it under a name",
                        file=spec,
                        line=1,
                        column=1,
                    )
                ]
            )
        data.update(document)
    return PolicySet(sources=sources, data=data)
