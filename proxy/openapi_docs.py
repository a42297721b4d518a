"""OpenAPI descriptions of the gateway's routes.

The `/v1` handlers read the raw body themselves (authentication must answer before
any body validation, contract §3), so Litestar cannot infer their request schema;
these operation classes state the request body and every response the gateway can
send, and give errors the gateway's own shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

__all__ = [
    "ERROR_SCHEMA",
    "admin_operation",
    "api_operation",
    "chat_request_schema",
    "completion_request_schema",
    "count_tokens_request_schema",
    "embedding_request_schema",
    "messages_request_schema",
    "responses_request_schema",
]

_STRING = Schema(type=OpenAPIType.STRING)
_INTEGER = Schema(type=OpenAPIType.INTEGER)
_BOOLEAN = Schema(type=OpenAPIType.BOOLEAN)
_OBJECT = Schema(type=OpenAPIType.OBJECT)

DOCUMENTED_ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error", "status", "message"],
    properties={"error": _BOOLEAN, "status": _INTEGER, "message": _STRING},
)
OPENAI_ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type"],
            properties={"message": _STRING, "type": _STRING},
        )
    },
)
ERROR_SCHEMA = Schema(one_of=[DOCUMENTED_ERROR_SCHEMA, OPENAI_ERROR_SCHEMA])
# The Messages API's errors are always in Anthropic's envelope (proxy/errors.py).
ANTHROPIC_ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "error"],
    properties={
        "type": _STRING,
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["type", "message"],
            properties={"type": _STRING, "message": _STRING},
        ),
    },
)

_ERROR_STATUSES = {
    "400": "Bad request: the body is not usable, or the model cannot be served",
    "401": "No, unknown, disabled or exhausted API key",
    "402": "The organization has insufficient credits",
    "403": "An IAM rule denies the request",
    "404": "Not found",
    "405": "Method not allowed",
    "410": "The key's project is archived",
    "413": "The request body is over the configured limit",
    "429": "Usage could not be reserved; retry",
    "500": "The gateway failed (the log says why)",
    "502": "The provider could not be reached",
    "504": "The provider did not answer in time",
}


def _json(schema: Schema) -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=schema)}


def _error_responses(
    statuses: dict[str, str], schema: Schema = ERROR_SCHEMA
) -> dict[str, OpenAPIResponse | object]:
    return {
        code: OpenAPIResponse(description=text, content=_json(schema))
        for code, text in statuses.items()
    }


def _body_schema(
    required: list[str], extra: dict[str, Schema | Reference], example: dict[str, Any]
) -> Schema:
    properties: dict[str, Schema | Reference] = {
        "model": _STRING,
        "stream": _BOOLEAN,
        "max_tokens": _INTEGER,
        "stream_options": Schema(type=OpenAPIType.OBJECT, properties={"include_usage": _BOOLEAN}),
        **extra,
    }
    return Schema(
        type=OpenAPIType.OBJECT, required=required, properties=properties, examples=[example]
    )


def chat_request_schema() -> Schema:
    message = Schema(
        type=OpenAPIType.OBJECT,
        required=["role", "content"],
        properties={"role": _STRING, "content": _STRING},
    )
    messages = Schema(type=OpenAPIType.ARRAY, items=message)
    example = {"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}
    return _body_schema(["model", "messages"], {"messages": messages}, example)


def completion_request_schema() -> Schema:
    example = {"model": "mock-model", "prompt": "Say hello"}
    return _body_schema(["model", "prompt"], {"prompt": _STRING}, example)


def embedding_request_schema() -> Schema:
    example = {"model": "mock-model", "input": "hello"}
    return _body_schema(["model", "input"], {"input": _STRING}, example)


def responses_request_schema() -> Schema:
    example = {"model": "mock-model", "input": "Hello!", "max_output_tokens": 256}
    properties: dict[str, Schema | Reference] = {
        "model": _STRING,
        "input": Schema(one_of=[_STRING, Schema(type=OpenAPIType.ARRAY, items=_OBJECT)]),
        "instructions": _STRING,
        "max_output_tokens": _INTEGER,
        "stream": _BOOLEAN,
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["model", "input"],
        properties=properties,
        examples=[example],
    )


def messages_request_schema() -> Schema:
    message = Schema(
        type=OpenAPIType.OBJECT,
        required=["role", "content"],
        properties={"role": _STRING, "content": _STRING},
    )
    example = {
        "model": "mock-model",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello!"}],
    }
    properties: dict[str, Schema | Reference] = {
        "model": _STRING,
        "messages": Schema(type=OpenAPIType.ARRAY, items=message),
        "max_tokens": _INTEGER,
        "system": _STRING,
        "stream": _BOOLEAN,
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["model", "messages", "max_tokens"],
        properties=properties,
        examples=[example],
    )


def count_tokens_request_schema() -> Schema:
    example = {"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}
    message = Schema(
        type=OpenAPIType.OBJECT,
        required=["role", "content"],
        properties={"role": _STRING, "content": _STRING},
    )
    properties: dict[str, Schema | Reference] = {
        "model": _STRING,
        "messages": Schema(type=OpenAPIType.ARRAY, items=message),
        "system": _STRING,
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["model", "messages"],
        properties=properties,
        examples=[example],
    )


def api_operation(
    request_schema: Schema | None, streams: bool = False, anthropic_errors: bool = False
) -> type[Operation]:
    """An Operation class for a `/v1` route: its body schema and all its responses
    (errors in Anthropic's envelope for the Messages API)."""
    ok: dict[str, OpenAPIMediaType] = _json(_OBJECT)
    if streams:
        ok["text/event-stream"] = OpenAPIMediaType(schema=_STRING)

    @dataclass
    class ApiOperation(Operation):
        def __post_init__(self) -> None:
            if request_schema is not None:
                self.request_body = RequestBody(content=_json(request_schema), required=True)
            error_schema = ANTHROPIC_ERROR_SCHEMA if anthropic_errors else ERROR_SCHEMA
            responses = _error_responses(_ERROR_STATUSES, error_schema)
            responses["200"] = OpenAPIResponse(description="The provider's answer", content=ok)
            # An upstream error status is passed through with the provider's own body.
            responses["default"] = OpenAPIResponse(
                description="An upstream provider's error, passed through",
                content=_json(_OBJECT),
            )
            self.responses = responses  # type: ignore[assignment]

    return ApiOperation


def admin_operation() -> type[Operation]:
    """An Operation class for `/admin` routes: Litestar's success schema, gateway errors."""

    @dataclass
    class AdminOperation(Operation):
        def __post_init__(self) -> None:
            responses = dict(self.responses or {})
            for code in list(responses):
                if code.startswith(("4", "5")):
                    del responses[code]
            errors = {
                "400": "The request is not valid (the message names the field)",
                "401": "Missing or wrong admin token",
                "404": "No such organization, project, key or rule",
                "405": "Method not allowed",
                "409": "It already exists",
                "500": "The gateway failed (the log says why)",
            }
            responses.update(_error_responses(errors))  # type: ignore[arg-type]
            self.responses = responses

    return AdminOperation
