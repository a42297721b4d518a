"""Issue 12 point 3: no input breaks the gateway. Any bytes give a usable body or the
documented 400 (never an exception, never 5xx), and credentials are checked before the
body is parsed, so a caller without a key always gets the documented 401."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_deployment import Deployment, deployed
from proxy_helpers import MSG_INVALID, MSG_NO_KEY, auth, documented, make_tenant
from shipped_policy import ShippedPolicies

from proxy.documents import Operation
from proxy.json_shape import nesting_problem
from proxy.request_body import MAX_EMBEDDING_INPUTS, parse_body

OPERATIONS: list[Operation] = [
    "chat.completions",
    "completions",
    "embeddings",
    "responses",
    "messages",
]
BOMB = b"[" * 100_000 + b"]" * 100_000
BAD_UTF8 = b'{"model": "gpt-4", "messages": [{"role": "user", "content": "\xff\xfe"}]}'


# -- the parser -------------------------------------------------------------------------


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=20,
    )


def _bodies() -> st.SearchStrategy[bytes]:
    """Raw bytes, JSON of any shape, request-like objects with fields of any type, and
    those cut short, nested deep or with a byte that is not UTF-8."""
    fields = st.sampled_from(
        ["model", "messages", "prompt", "input", "stream", "stream_options", "max_tokens", "n"]
    )
    requests = st.dictionaries(fields, _json_values()).map(lambda d: json.dumps(d).encode())
    shaped = st.one_of(st.binary(max_size=64), _json_values().map(lambda v: json.dumps(v).encode()))
    deep = st.integers(0, 300).map(lambda n: b'{"model": "m", "input": ' + b"[" * n + b"]" * n)
    base = st.one_of(shaped, requests, deep)
    return st.one_of(
        base,
        st.tuples(base, st.integers(0, 64)).map(lambda t: t[0][: t[1]]),
        st.tuples(base, st.binary(min_size=1, max_size=2)).map(lambda t: t[0] + t[1]),
    )


@settings(max_examples=400, deadline=None)
@given(operation=st.sampled_from(OPERATIONS), body=_bodies())
def test_any_bytes_parse_or_name_the_problem(operation: Operation, body: bytes) -> None:
    parsed = parse_body(operation, body)
    if parsed.error is None:
        assert isinstance(parsed.payload, dict)
        assert isinstance(parsed.model, str)
    else:
        assert parsed.error.startswith("Invalid request body")


def test_nesting_is_measured_outside_strings_only() -> None:
    assert nesting_problem(b'{"a": "' + b"[" * 500 + b'"}', 64) is None
    assert nesting_problem(b'{"a": "\\"' + b"[" * 500 + b'"}', 64) is None
    assert nesting_problem(b"[" * 65, 64) == (
        "Invalid request body: nested deeper than 64 levels (at byte 64); flatten the structure"
    )
    assert nesting_problem(b"[" * 64 + b"]" * 64 + b"[[]]" * 100, 64) is None


def test_streamed_embeddings_and_too_many_inputs_are_refused() -> None:
    streamed = parse_body("embeddings", b'{"model": "e", "input": "x", "stream": true}')
    assert streamed.error is not None and "field `stream`" in streamed.error
    many = json.dumps({"model": "e", "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}).encode()
    error = parse_body("embeddings", many).error
    assert error is not None and f"at most {MAX_EMBEDDING_INPUTS} inputs" in error


# -- through the real server -----------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    """The shared deployment's body limit (64 KiB) would answer the bomb with 413."""
    with deployed(
        tmp_path_factory.mktemp("bad-input"),
        compile_policy=shipped_policies.loader,
        max_body_bytes=1024 * 1024,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> httpx.Client:
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        yield http  # type: ignore[misc]


@pytest.mark.parametrize("body", [BOMB, BAD_UTF8, b"\x00" * 1000], ids=["bomb", "utf8", "nul"])
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer llmgtwy_not-a-key"}], ids=["none", "unknown"]
)
def test_no_valid_key_is_401_whatever_the_body(
    client: httpx.Client, body: bytes, headers: dict[str, str]
) -> None:
    response = client.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == documented(401, MSG_NO_KEY if not headers else MSG_INVALID)


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/v1/chat/completions", BOMB, "nested deeper than 64 levels"),
        ("/v1/chat/completions", BAD_UTF8, "not valid UTF-8 (byte 0xff at offset 61)"),
        ("/v1/chat/completions", b'{"model": "gpt-4", "messages": [0]}', "field `messages[0]`"),
        ("/v1/completions", b'{"model": "gpt-4", "prompt": {"a": 1}}', "field `prompt`"),
        (
            "/v1/chat/completions",
            b'{"model": "gpt-4", "messages": [' + b"1," * 200_000 + b"1]}",
            "field `messages[0]`",
        ),
        (
            "/v1/embeddings",
            b'{"model": "text-embedding-3-small", "input": "x", "stream": true}',
            "embeddings cannot be streamed",
        ),
    ],
    ids=["bomb", "utf8", "type", "prompt-type", "huge-array", "streamed-embeddings"],
)
def test_bad_bodies_are_the_documented_400_and_cost_nothing(
    deployment: Deployment, client: httpx.Client, path: str, body: bytes, problem: str
) -> None:
    tenant = make_tenant(deployment.admin)
    response = client.post(path, content=body, headers=auth(tenant.token, "bearer"))
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] is True and answer["status"] == 400
    assert answer["message"].startswith("Invalid request body") and problem in answer["message"]
    assert deployment.admin(deployment.admin.store.get_key(tenant.key.id)).usage == 0
    assert "Traceback" not in "\n".join(deployment.logs.lines)
