"""What the built-in `mock` provider refuses, answered as OpenAI's API answers it.

The mock stands in for a real provider in the quickstart and in tests, so a request
that a real provider would refuse must be refused here too (else a client works
against the mock and breaks against the real thing): an unknown model is a 404
`model_not_found`, a chat model asked for embeddings (or the reverse) is a 400, and
a malformed parameter is a 400 `invalid_request_error` naming it in `param`, with
OpenAI's wording.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.documents import Operation

__all__ = ["MOCK_CHAT_MODELS", "MOCK_EMBEDDING_MODELS", "MockRejection", "validate"]

MOCK_CHAT_MODELS = frozenset({"mock-model", "mock-model-mini"})
MOCK_EMBEDDING_MODELS = frozenset({"mock-embedding"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_N = 128
_encoder = msgspec.json.Encoder()


class MockRejection(msgspec.Struct, frozen=True, kw_only=True):
    """An error answer: its status and OpenAI's `error` object."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }
        return _encoder.encode({"error": error})


def validate(operation: Operation, payload: dict[str, Any]) -> MockRejection | None:
    """None when a real provider would accept `payload`, else its refusal."""
    model = payload.get("model")
    problem = _model_problem(operation, model)
    if problem is not None:
        return problem
    for check in (_n_problem, _max_tokens_problem, _range_problems):
        problem = check(payload)
        if problem is not None:
            return problem
    if operation == "chat.completions":
        return _messages_problem(payload.get("messages"))
    if operation == "completions":
        return _non_empty("prompt", payload.get("prompt"))
    return _non_empty("input", payload.get("input"))


def _model_problem(operation: Operation, model: Any) -> MockRejection | None:
    if model not in MOCK_CHAT_MODELS | MOCK_EMBEDDING_MODELS:
        return MockRejection(
            status=404,
            message=f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    if operation == "embeddings" and model not in MOCK_EMBEDDING_MODELS:
        return MockRejection(
            status=400,
            message=f"The model `{model}` does not support embeddings; use mock-embedding.",
            param="model",
        )
    if operation != "embeddings" and model in MOCK_EMBEDDING_MODELS:
        return MockRejection(
            status=404,
            message="This is not a chat model and thus not supported in this endpoint.",
            param="model",
            code="model_not_found",
        )
    return None


def _integer(name: str, value: Any, low: int, high: int | None) -> MockRejection | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return _invalid(name, f"expected an integer, but got {_kind(value)} instead.", "type")
    if value < low:
        return _invalid(
            name,
            f"integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            "integer_below_min_value",
        )
    if high is not None and value > high:
        return _invalid(
            name,
            f"integer above maximum value. Expected a value <= {high}, but got {value} instead.",
            "integer_above_max_value",
        )
    return None


def _n_problem(payload: dict[str, Any]) -> MockRejection | None:
    return _integer("n", payload.get("n"), 1, _MAX_N)


def _max_tokens_problem(payload: dict[str, Any]) -> MockRejection | None:
    for name in ("max_tokens", "max_completion_tokens"):
        problem = _integer(name, payload.get(name), 1, None)
        if problem is not None:
            return problem
    return None


def _range_problems(payload: dict[str, Any]) -> MockRejection | None:
    for name, high in (("temperature", 2), ("top_p", 1)):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _invalid(name, f"expected a number, but got {_kind(value)} instead.", "type")
        if not 0 <= value <= high:
            return _invalid(
                name,
                f"number out of range. Expected a value between 0 and {high}, "
                f"but got {value} instead.",
                "decimal_out_of_range",
            )
    return None


def _messages_problem(messages: Any) -> MockRejection | None:
    if not isinstance(messages, list):
        return _invalid(
            "messages", f"expected an array, but got {_kind(messages)} instead.", "type"
        )
    if not messages:
        return _invalid(
            "messages",
            "empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "empty_array",
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            return _invalid(where, f"expected an object, but got {_kind(message)} instead.", "type")
        role = message.get("role")
        if role not in _ROLES:
            roles = ", ".join(f"'{name}'" for name in sorted(_ROLES))
            return _invalid(
                f"{where}.role",
                f"must be one of {roles}, but got {role!r} instead.",
                "invalid_value",
            )
        if "content" not in message and not message.get("tool_calls"):
            return MockRejection(
                status=400,
                message=f"Missing required parameter: '{where}.content'.",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
    return None


def _non_empty(name: str, value: Any) -> MockRejection | None:
    if value == "" or value == []:
        return _invalid(name, "empty input. Expected a non-empty string or array.", "empty_array")
    return None


def _invalid(param: str, detail: str, code: str) -> MockRejection:
    return MockRejection(status=400, message=f"Invalid '{param}': {detail}", param=param, code=code)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)
