"""Input schemas (issue 18 point 3): `input.…` references checked against a JSON Schema.

`policy-engine check --schema schemas/input.schema.json` and `Engine(input_schema=…)`
type `input` as `opa check --schema` does: a misspelt path or a value of the wrong
type is a `rego_type_error` at its location, naming the path and the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_engine import Engine, PolicyError
from policy_engine.cli import main
from policy_engine.errors import COMPILE_ERROR, TYPE_ERROR
from policy_engine.typecheck import parse_input_schema
from policy_engine.typecheck.schema import schema_type
from policy_engine.typecheck.types import ANY, NULL, NUMBER, STRING, Arr, Obj, Union

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "input.schema.json"
GATEWAY = (REPO / "policies" / "gateway.rego").read_text(encoding="utf-8")
SHIPPED = parse_input_schema(SCHEMA_FILE.read_text(encoding="utf-8"), "schemas/input.schema.json")


def schema_error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"p.rego": "package p\n\n" + text + "\n"}, input_schema=SHIPPED)
    return caught.value


def test_the_shipped_policies_pass_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "--schema", str(SCHEMA_FILE), str(REPO / "policies")])
    assert status == 0, capsys.readouterr().err


def test_a_misspelt_input_path_in_a_copy_of_the_gateway_policy_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "input.request.model" in GATEWAY
    broken = GATEWAY.replace("input.request.model", "input.reqest.model", 1)
    (tmp_path / "gateway.rego").write_text(broken, encoding="utf-8")
    line = broken[: broken.index("input.reqest")].count("\n") + 1
    status = main(["check", "--schema", str(SCHEMA_FILE), str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    first = err.splitlines()[0]
    assert f"gateway.rego:{line}:" in first
    assert "rego_type_error: undefined ref: input.reqest" in first
    assert "did you mean `request`?" in first
    assert str(SCHEMA_FILE) in first
    # Without the schema, input is `any` and the same file loads (as in OPA).
    assert main(["check", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r if { input.key.usage = 1 }", "match error"),
        ("r if { input.key.usage == 1 }", "match error"),  # OPA checks a == b as a = b
        ("r := input.key.usage + 1", "+: invalid argument(s)"),
        ("r if { input.request.max_tokens.x }", "undefined ref: input.request.max_tokens.x"),
        ("r if { input.key.iam_rules[0].valus }", "did you mean `values`?"),
        ('r if { input.request["modle"] }', "did you mean `model`?"),
    ],
)
def test_wrong_types_and_names_under_input_are_type_errors(text: str, message: str) -> None:
    error = schema_error(text)
    assert error.code == TYPE_ERROR
    assert message in error.diagnostics[0].message
    assert error.diagnostics[0].line == 3


@pytest.mark.parametrize(
    "text",
    [
        "r if { input.key.usage < 1 }",  # < and != take any types, as in OPA
        "r := input.key.usage == 1",  # and so does == inside a value
        'r if { some rule in input.key.iam_rules; rule.type == "deny_models" }',
        "r := count(input.gateway.credentialed_providers)",
        "r if { input.request.model == null }",
        'r if { input.x with input as {"x": 1} }',  # with replaces input: not checked
    ],
)
def test_well_typed_input_references_load(text: str) -> None:
    Engine.from_sources({"p.rego": "package p\n\n" + text + "\n"}, input_schema=SHIPPED)


def test_schema_types_follow_opa() -> None:
    closed = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert schema_type(closed) == Obj((("a", STRING),), None, None)
    opened = {**closed, "additionalProperties": True}
    assert schema_type(opened) == Obj((("a", STRING),), ANY, ANY)
    assert schema_type({"type": "object"}) == Obj((), ANY, ANY)
    assert schema_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == Union((NUMBER, NULL))
    assert schema_type({"enum": ["a", "b"]}) == STRING
    assert schema_type({"type": "array", "items": {"type": "number"}}) == Arr((), NUMBER)
    referenced = {"$defs": {"A": {"type": "string"}}, "$ref": "#/$defs/A"}
    assert schema_type(referenced) == STRING
    assert schema_type({"$ref": "https://example.invalid/remote.json"}) == ANY


def test_a_schema_that_is_not_json_is_reported_with_its_name() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_input_schema("{not json", "broken.json")
    diagnostic = caught.value.diagnostics[0]
    assert (diagnostic.code, diagnostic.file) == (COMPILE_ERROR, "broken.json")


def test_the_schema_file_is_read_not_a_copy() -> None:
    # The check follows schemas/input.schema.json as other changes extend it.
    document = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    fields = set(document["$defs"]["RequestDocument"]["properties"])
    request = SHIPPED.type
    assert isinstance(request, Obj)
    request_type = request.prop("request")
    assert isinstance(request_type, Obj)
    assert {name for name, _ in request_type.props} == fields
