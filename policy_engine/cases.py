"""Runs one YAML-style test case (OPA's conformance format) against the engine.

Pure: the caller reads the files. A case has `modules`, `query`, optional
`data` / `input` / `input_term`, and expects `want_result` (a list of binding
maps), `want_error_code` (+ `want_error` substring) or `want_errors`
(`[{code, line, col}]` load-time diagnostics). Results are compared as OPA's
runner does: sets become arrays (sorted when `sort_bindings`), non-string
object keys become their JSON text, numbers compare by exact value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from policy_engine.engine import Engine, EngineConfig
from policy_engine.errors import EvalError, PolicyError
from policy_engine.values import sort_key, to_json_text

__all__ = ["case_failure", "plain"]


def plain(value: Any, sort_arrays: bool = False) -> Any:
    """A JSON-like comparable form: Decimal numbers, lists, string keys."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return number.normalize() if number else Decimal(0)
    if isinstance(value, frozenset | set | list | tuple):
        items = [plain(v) for v in value]
        if sort_arrays or isinstance(value, frozenset | set):
            items.sort(key=_plain_sort_key)
        return items
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else to_json_text(k): plain(v) for k, v in value.items()}
    return value


def _plain_sort_key(value: Any) -> Any:
    return sort_key(value)


def _input(case: Mapping[str, Any]) -> Any:
    if "input_term" in case:
        rows = Engine.from_sources({}).query(f"input_term = {case['input_term']}")
        return rows[0]["input_term"] if rows else None
    return case.get("input")


def _load(case: Mapping[str, Any]) -> Engine:
    # OPA's runner names the modules test-0.rego, test-1.rego, ...: its error texts say so.
    sources = {f"test-{i}.rego": text for i, text in enumerate(case.get("modules") or [])}
    return Engine.from_sources(sources, data=case.get("data") or {}, config=EngineConfig())


def case_failure(case: Mapping[str, Any]) -> str | None:
    """None when the case passes, else a sentence saying what differed."""
    try:
        engine = _load(case)
        rows = engine.query(
            case["query"], input=_input(case), strict=bool(case.get("strict_error"))
        )
    except PolicyError as exc:
        return _expected_error(case, exc.code, str(exc), exc)
    except EvalError as exc:
        message = exc.message
        if exc.span is not None:  # OPA's eval errors read `test-0.rego:4: <code>: <message>`
            message = f"{exc.span.file}:{exc.span.line}: {exc.code}: {message}"
        return _expected_error(case, exc.code, message, None)
    if "want_errors" in case or "want_error_code" in case:
        return f"expected an error, got result {rows!r}"
    if "want_result" not in case:
        return None
    sort_arrays = bool(case.get("sort_bindings"))
    got = [{k: plain(v, sort_arrays) for k, v in row.items()} for row in rows]
    want = [{k: plain(v, sort_arrays) for k, v in row.items()} for row in case["want_result"] or []]
    if _canonical(got) != _canonical(want):
        return f"want {want!r}, got {got!r}"
    return None


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


def _expected_error(
    case: Mapping[str, Any], code: str, message: str, exc: PolicyError | None
) -> str | None:
    if "want_errors" in case and exc is not None:
        want = sorted((e["code"], e["line"], e["col"]) for e in case["want_errors"])
        got = sorted((d.code, d.line, d.column) for d in exc.diagnostics)
        return None if want == got else f"want errors {want}, got {got}: {message}"
    if "want_error_code" not in case:
        # OPA's runner: `want_error` alone matches against "<code>: <message>".
        if "want_error" in case and case["want_error"] in f"{code}: {message}":
            return None
        return f"unexpected error {code}: {message}"
    if code != case["want_error_code"]:
        return f"want error {case['want_error_code']}, got {code}: {message}"
    if "want_error" in case and case["want_error"] not in message:
        return f"want error message containing {case['want_error']!r}, got {message!r}"
    return None
