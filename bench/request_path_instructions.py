"""Instructions of three steps every plain request takes, counted by callgrind (not a
test; issue 15's c=1 CPU).

    .venv/bin/python -m bench.request_path_instructions [--root TREE]

Each case runs in its own child under `valgrind --tool=callgrind
--toggle-collect=_operator_call`: 200 turns warm up, then 2,000 turns run inside
`operator.call`; the report is the counted instructions over 2,000, less its bare case.

- `answer`: reading the usage of the mock's whole chat answer (`gateway._whole_answer`
  and `whole_usage`; in a tree from before them, `gateway._json_object` and
  `whole_usage` of the decoded dict);
- `closing`: a request's task (in the request's own `CancelScope`) awaiting closing
  steps that never suspend, shielded as `Gateway._whole` shields them (`shielded`; in
  an older tree a nested `CancelScope(shield=True)`), less the same task awaiting them
  unshielded;
- `admission`: `Admission.reserve` and `Admission.settle` through a store that answers
  at once, less the same store calls made directly.

`--root` imports `proxy` from another tree (a before/after comparison in one run).
Needs valgrind.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is importable from the tree
    sys.path.append(str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402

TURNS = 2000
WARMUP = 200
_TEXT = " ".join(f"tok{index}" for index in range(16))
# The instant mock's answer to the benchmark's chat request (bench.mock_upstream).
ANSWER = msgspec.json.encode(
    {
        "id": "mock-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mock-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 6, "completion_tokens": 16, "total_tokens": 22},
    }
)


def _answer_turns() -> Any:
    from proxy import gateway
    from proxy.api_families import whole_usage

    if hasattr(gateway, "_whole_answer"):
        read = gateway._whole_answer

        def turns(count: int) -> None:
            for _ in range(count):
                answer = read(ANSWER)
                assert answer is not None
                whole_usage("chat.completions", answer.usage)

        return turns
    decode = gateway._json_object  # type: ignore[attr-defined]

    def old_turns(count: int) -> None:
        for _ in range(count):
            whole_usage("chat.completions", decode(ANSWER))

    return old_turns


def _closing_turns(shield: bool) -> Any:
    from proxy import cancel_scopes

    scope = cancel_scopes.CancelScope
    shielded = getattr(cancel_scopes, "shielded", None)

    async def closing() -> None:
        return None

    async def request() -> None:
        with scope():
            if not shield:
                await closing()
            elif shielded is not None:
                await shielded(closing())
            else:
                with scope(shield=True):
                    await closing()

    async def tasks(count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):  # a task each, as uvicorn runs each request
            await loop.create_task(request())

    def turns(count: int) -> None:
        asyncio.run(tasks(count))

    return turns


def _admission_turns(through_admission: bool) -> Any:
    from proxy.admission import Admission
    from proxy.store.base import Admitted, Claim, Reservation

    reservation = Reservation(
        id="r1", key_id="key_1", organization_id="org_1", amount=Decimal("0.01")
    )
    admitted = Admitted(reservation=reservation)

    class Store:
        async def admit(self, claim: Claim, ticket: str) -> Admitted:
            return admitted

        async def settle(
            self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
        ) -> None:
            return None

        def subscribe(self, wake: object) -> None:
            pass

    store = Store()
    admission = Admission(store)  # type: ignore[arg-type]
    claim = Claim(key_id="key_1", organization_id="org_1", amount=Decimal("0.01"), project_id="p")
    cost = Decimal("0.001")

    async def requests(count: int) -> None:
        for _ in range(count):
            if through_admission:
                held = await admission.reserve(claim)
                assert isinstance(held, Reservation)
                await admission.settle(held, cost, tokens=22)
            else:
                outcome = await store.admit(claim, "ticket")
                await store.settle(outcome.reservation, cost, tokens=22)

    def turns(count: int) -> None:
        asyncio.run(requests(count))

    return turns


def child(root: str, case: str) -> None:
    sys.path.insert(0, root)
    turns = {
        "answer": _answer_turns,
        "closing": lambda: _closing_turns(True),
        "unshielded": lambda: _closing_turns(False),
        "admission": lambda: _admission_turns(True),
        "store": lambda: _admission_turns(False),
        "nothing": lambda: lambda count: None,
    }[case]()
    turns(WARMUP)
    gc.collect()
    gc.freeze()
    operator.call(turns, TURNS)


def count(root: str, case: str) -> float:
    return operator_call_instructions([__file__, "--child", root, case]) / TURNS


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    root = str(ROOT)
    if len(sys.argv) == 3 and sys.argv[1] == "--root":
        root = str(Path(sys.argv[2]).resolve())
    print(f"tree {root}")
    print("| step | instructions a request |")
    print("|---|---:|")
    for case, bare in (("answer", "nothing"), ("closing", "unshielded"), ("admission", "store")):
        print(f"| {case} | {count(root, case) - count(root, bare):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
