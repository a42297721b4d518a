"""docs/builtins.md is what the registry generates, and it covers every built-in."""

from __future__ import annotations

from pathlib import Path

from policy_engine.builtins import BUILTINS
from policy_engine.tooling.builtins_doc import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "builtins.md"


def test_the_committed_reference_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/builtins.md is stale: run "
        "`python -m policy_engine.tooling.builtins_doc > docs/builtins.md`"
    )


def test_every_builtin_has_a_section_with_a_defined_example() -> None:
    text = render()
    for name in BUILTINS:
        assert f"### `{name}`" in text
    assert "→ `undefined`" not in text
