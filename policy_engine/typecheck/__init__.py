"""Static type checking, OPA's `rego_type_error` stage (see `checker.py`)."""

from __future__ import annotations

from policy_engine import ast
from policy_engine.errors import Diagnostic
from policy_engine.index import RuleIndex
from policy_engine.typecheck.checker import TypeChecker
from policy_engine.typecheck.schema import InputSchema, parse_input_schema
from policy_engine.typecheck.types import ANY, Type

__all__ = ["InputSchema", "check_types", "parse_input_schema"]


def check_types(
    modules: list[ast.Module],
    index: RuleIndex,
    input_type: Type = ANY,
    input_source: str | None = None,
) -> list[Diagnostic]:
    """Every `rego_type_error` in the policy; `input_type` comes from an input schema."""
    del modules  # the index holds every rule with its module
    return TypeChecker(index, input_type, input_source).check_all()
