"""Body parsing: problems become `body_error`, never an exception."""

from __future__ import annotations

import pytest

from proxy.request_body import parse_body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Invalid request body: not valid JSON (Input data was truncated)"),
        (b"[1]", "Invalid request body: expected a JSON object"),
        (b"{}", "Invalid request body: object missing required field `model`"),
        (
            b'{"model": 1, "messages": []}',
            "Invalid request body: field `model`: expected `str`, got `int`",
        ),
        (
            b'{"model": "m", "messages": [], "stream": "yes"}',
            "Invalid request body: field `stream`: expected `bool | null`, got `str`",
        ),
        (
            b'{"model": "m", "messages": [1]}',
            "Invalid request body: field `messages[0]`: expected `object`, got `int`",
        ),
    ],
)
def test_chat_body_errors_name_the_problem(body: bytes, message: str) -> None:
    assert parse_body("chat.completions", body).error == message


def test_good_chat_body() -> None:
    parsed = parse_body(
        "chat.completions",
        b'{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "stream": true,'
        b' "max_completion_tokens": 9, "temperature": 0.5}',
    )
    assert parsed.error is None
    assert parsed.model == "gpt-4"
    assert parsed.stream is True
    assert parsed.include_usage is False
    assert parsed.max_tokens == 9
    assert parsed.payload is not None and parsed.payload["temperature"] == 0.5


def test_model_kept_even_when_another_field_is_wrong() -> None:
    parsed = parse_body("embeddings", b'{"model": "e", "input": 5}')
    assert parsed.model == "e"
    assert parsed.error is not None and "`input`" in parsed.error
