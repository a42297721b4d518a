"""Write the JSON Schemas in schemas/ from the msgspec types they describe.

    .venv/bin/python scripts/generate_schemas.py          # rewrite schemas/*.json
    .venv/bin/python scripts/generate_schemas.py --check  # exit 1 if any is stale

The types are the single source of truth: proxy.documents (input, decision,
catalog), policy_engine.yaml_policy (IAM policy files) and proxy.config (the
gateway's configuration). tests/policy/test_schemas.py fails when a checked-in
schema differs from what this script would write.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import policy_engine.yaml_policy  # noqa: E402
import proxy.config  # noqa: E402
import proxy.documents  # noqa: E402
from policy_engine.yaml_policy import PolicyFile  # noqa: E402
from proxy.config import GatewayConfig  # noqa: E402
from proxy.documents import CatalogDocument, Decision, InputDocument  # noqa: E402

# Where the Structs named in the schemas' $defs live.
MODULES = (proxy.documents, policy_engine.yaml_policy, proxy.config)

SCHEMA_DIR = REPO / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# file name -> (type, title)
SCHEMAS: dict[str, tuple[Any, str]] = {
    "input.schema.json": (InputDocument, "The policy input document the proxy builds"),
    "decision.schema.json": (Decision, "The decision data.gateway.decision evaluates to"),
    "policy.schema.json": (PolicyFile, "A YAML IAM policy file (*.iam.yaml)"),
    "catalog.schema.json": (CatalogDocument, "The model catalog (policies/catalog.yaml)"),
    "config.schema.json": (GatewayConfig, "The gateway's configuration file"),
}


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string right under a field) of a class, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(inspect.cleandoc(doc.value.value).split())
    return docs


def describe_fields(schema: dict[str, Any]) -> None:
    """Copy each Struct field's docstring into its property's `description` (editor hovers)."""
    for name, definition in schema.get("$defs", {}).items():
        cls = next((getattr(m, name) for m in MODULES if hasattr(m, name)), None)
        if cls is None:
            continue
        for field, doc in field_docs(cls).items():
            prop = definition.get("properties", {}).get(field)
            if prop is not None:
                # A type's own description (e.g. money's) follows the field's.
                own = prop.get("description")
                prop["description"] = doc if own is None else f"{doc} {own}"


def build(type_: Any, title: str, file_name: str) -> dict[str, Any]:
    """The schema document for one type, with the draft, an id and a title."""
    body = msgspec.json.schema(type_)
    describe_fields(body)
    return {
        "$schema": DRAFT,
        "$id": f"https://llm-gateway.invalid/schemas/{file_name}",
        "title": title,
        **body,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """file name -> the exact text this script writes."""
    return {name: render(build(t, title, name)) for name, (t, title) in SCHEMAS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale schemas")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for name, text in expected_files().items():
        path = SCHEMA_DIR / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            SCHEMA_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        for name in stale:
            print(f"schemas/{name}: stale; run `python scripts/generate_schemas.py`")
        return 1
    for name in stale:
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
