"""Instructions per policy decision, counted by valgrind's callgrind (not a test).

Wall-clock medians on the shared VM swing with the host's speed mode and the other
sessions' load (docs/benchmarks.md); instruction counts do not. Each case runs in its own
child under `valgrind --tool=callgrind --toggle-collect=_operator_call`: the child loads
the policy, prepares `data.gateway.decision`, warms up (50 rounds), then runs 200
decisions of one input inside `operator.call`, so only that loop is counted. The report
is the loop's instructions divided by 200 (the loop's own overhead, ~30 instructions a
turn, included).

Cases: the four paths of `bench/engine_bench.py`'s gateway-shaped policy and the shipped
policy (`policies/` loaded as `policy-engine bench` loads it, with `catalog.yaml` as
`data.catalog`) on the allowed chat request of docs/benchmarks.md, as that JSON file
(`shipped-chat`) and as the proxy passes it (`shipped-proxy`: `engine_input` of the
`InputDocument`, every field present, arrays as tuples), and the same for a key with
every control (`shipped-controls`); and the proxy's building of the
engine input from the chat document (`input_value`, the JSON round trip; `engine_input`)
and from the every-control one (`engine_input-controls`), counted per call like a
decision; and the gateway's whole step from a key record (as the key cache serves it) to
the engine's input, for a plain key (`document`) and one with every control
(`document-controls`).

Run: `.venv/bin/python bench/decision_instructions.py [CASE ...]` (about a minute a case).
"""

from __future__ import annotations

import argparse
import operator
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402 - needs the path above when run as a script

WARMUP = 50
DECISIONS = 200

CHAT_INPUT: dict[str, Any] = {
    "request": {
        "operation": "chat.completions",
        "token_present": True,
        "model": "mock-model",
        "body_error": None,
        "max_tokens": 4096,
        "stream": False,
        "time": "2026-11-27T10:00:00Z",
        "client_ip": "127.0.0.1",
    },
    "key": {
        "id": "k1",
        "status": "active",
        "usage": "250.50",
        "usage_limit": "1000.00",
        "project_id": "p1",
        "iam_rules": [],
    },
    "project": {
        "id": "p1",
        "status": "active",
        "mode": "api-keys",
        "provider_keys": ["openai"],
        "iam_rules": [],
    },
    "organization": {"id": "o1", "credits": "10.00"},
    "gateway": {"credentialed_providers": ["mock", "openai"]},
}


def bench_case(index: int) -> Callable[[], tuple[Callable[[Any], Any], Any]]:
    def load() -> tuple[Callable[[Any], Any], Any]:
        from bench.engine_bench import INPUTS, POLICY
        from policy_engine import Engine

        engine = Engine.from_sources({"gateway.rego": POLICY})
        return engine.prepare("data.gateway.decision"), INPUTS[index]

    return load


def shipped_case() -> tuple[Callable[[Any], Any], Any]:
    from policy_engine import Engine
    from policy_engine.tooling.loading import load_policy_set

    policies = load_policy_set([ROOT / "policies"])
    engine = Engine.from_sources(policies.sources, policies.data)
    return engine.prepare("data.gateway.decision"), CHAT_INPUT


def proxy_document() -> Any:
    import msgspec

    from proxy.documents import InputDocument

    return msgspec.convert(CHAT_INPUT, InputDocument)


def shipped_proxy_case() -> tuple[Callable[[Any], Any], Any]:
    """The shipped decision on the input the proxy passes (every field, arrays as tuples)."""
    from proxy.documents import engine_input

    decide, _ = shipped_case()
    return decide, engine_input(proxy_document())


def controls_document() -> Any:
    """The document of a key with every control (as `bench.controls_compare`'s): a usage
    limit, an expiry, a day budget (stored and its window), rpm, tpm and max-parallel, as
    the proxy builds it for a request's first decision (the store has not counted the
    windows yet, the token bound is not known)."""
    import msgspec

    from proxy.documents import InputDocument

    limits = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000, "max_parallel": 100_000}
    key = {
        **CHAT_INPUT["key"],
        "usage_limit": "1000000000.00",
        "expires_at": "2200-01-01T00:00:00Z",
        "rate_limits": limits,
        "period_budget": {
            "amount": "1000000000.00",
            "period": "day",
            "usage": "250.50",
            "window_start": "2026-11-27T00:00:00Z",
            "resets_at": "2026-11-28T00:00:00Z",
        },
        "stored_budget": {"amount": "1000000000.00", "period": "day"},
    }
    return msgspec.convert({**CHAT_INPUT, "key": key}, InputDocument)


def shipped_controls_case() -> tuple[Callable[[Any], Any], Any]:
    """The shipped decision for `controls_document()`."""
    from proxy.documents import engine_input

    decide, _ = shipped_case()
    return decide, engine_input(controls_document())


def input_case(
    name: str, document: Callable[[], Any] = proxy_document
) -> Callable[[], tuple[Callable[[Any], Any], Any]]:
    """Building the engine's input from the proxy's document (no decision)."""

    def load() -> tuple[Callable[[Any], Any], Any]:
        import proxy.documents

        build: Callable[[Any], Any] = getattr(proxy.documents, name)
        return build, document()

    return load


def key_context(controls: bool) -> Any:
    """A key record as the store reads it: a plain key, or one with every control (as
    `controls_document()`'s)."""
    from decimal import Decimal

    import msgspec

    from proxy.budgets import Budget
    from proxy.store.base import ApiKey, KeyContext, Organization, Project, RateLimits

    key = ApiKey(
        id="k1",
        token_hash="h",
        display="llmgtwy_abcd…wxyz",
        project_id="p1",
        status="active",
        usage_limit=None,
        usage=Decimal("250.50"),
        description="",
        created_at="2026-11-27T10:00:00Z",
    )
    if controls:
        key = msgspec.structs.replace(
            key,
            usage_limit=Decimal("1000000000.00"),
            expires_at="2200-01-01T00:00:00Z",
            budget=Budget(amount=Decimal("1000000000.00"), period="day"),
            rate_limits=RateLimits(rpm=1_000_000_000, tpm=1_000_000_000_000, max_parallel=100_000),
        )
    return KeyContext(
        key=key,
        reserved=Decimal(0),
        rules=(),
        project=Project(id="p1", organization_id="o1", mode="api-keys"),
        organization=Organization(id="o1", credits=Decimal("10.00")),
        credits_reserved=Decimal(0),
    )


def document_case(controls: bool) -> Callable[[], tuple[Callable[[Any], Any], Any]]:
    """The gateway's step from the request and the key's record (as the key cache serves
    it) to the engine's input, for a request's first decision: `engine_document`, or in
    a tree before it `engine_input(build_input(...))`."""

    def load() -> tuple[Callable[[Any], Any], Any]:
        from decimal import Decimal

        import msgspec

        from proxy import input_document
        from proxy.documents import PeriodBudgetDocument, RequestDocument, engine_input

        context = key_context(controls)
        gateway = input_document.gateway_info(())
        window = (
            PeriodBudgetDocument(
                amount=Decimal("1000000000.00"),
                period="day",
                usage=Decimal("250.50"),
                window_start="2026-11-27T00:00:00Z",
                resets_at="2026-11-28T00:00:00Z",
            )
            if controls
            else None
        )
        request = msgspec.convert(CHAT_INPUT["request"], RequestDocument)
        if hasattr(input_document, "engine_document"):
            context = input_document.with_input_parts(context)
            value = msgspec.to_builtins(gateway)

            def build(request: Any) -> Any:
                return input_document.engine_document(request, context, value, window)

            return build, request

        def build_before(request: Any) -> Any:
            document = input_document.build_input(
                request, context, gateway, None, None, None, window
            )
            return engine_input(document)

        return build_before, request

    return load


CASES: dict[str, Callable[[], tuple[Callable[[Any], Any], Any]]] = {
    "allowed": bench_case(0),  # gpt-4o-mini, matched by the 3rd glob
    "unknown-model": bench_case(2),
    "over-limit": bench_case(4),
    "inactive": bench_case(3),
    "shipped-chat": shipped_case,
    "shipped-proxy": shipped_proxy_case,
    "shipped-controls": shipped_controls_case,
    "input_value": input_case("input_value"),  # the JSON round trip
    "engine_input": input_case("engine_input"),
    # The same for the key with every control: the difference is what its controls cost.
    "engine_input-controls": input_case("engine_input", controls_document),
    # From the key's record to the engine's input, as the gateway does per request.
    "document": document_case(controls=False),
    "document-controls": document_case(controls=True),
}


def child(case: str) -> None:
    decide, document = CASES[case]()
    for _ in range(WARMUP):
        decide(document)
    expected = decide(document)

    def loop() -> None:
        for _ in range(DECISIONS):
            decide(document)

    operator.call(loop)
    print(expected)


def count(case: str) -> int:
    """The counted loop's instructions (callgrind's total with collection toggled)."""
    return operator_call_instructions([__file__, "--child", case], {"PYTHONHASHSEED": "0"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", nargs="*", help=f"some of {', '.join(CASES)} (default all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    for case in args.cases or list(CASES):
        total = count(case)
        print(f"{case:16} {total / DECISIONS:12,.0f} instructions per decision", flush=True)


if __name__ == "__main__":
    main()
