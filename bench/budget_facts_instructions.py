"""Instructions for a budgeted request's first budget facts (its windows and their
figures, served by the key cache), counted by callgrind (not a test).

    .venv/bin/python -m bench.budget_facts_instructions [--root TREE]

The key has a day budget, its project a week budget; the key cache holds the windows'
figures (the steady state of a key in use). One child per tree under `valgrind
--tool=callgrind --toggle-collect=_operator_call`: 200 turns warm up, then 2,000 turns
run inside `operator.call`; the report is the counted instructions over 2,000. A turn is
what the gateway's request path runs for the first decision's facts: in this tree
`Gateway._first_budget_facts` (awaited only when it hands back a coroutine), in a tree
before it `Gateway._budget_facts(..., fresh=False)` driven as a coroutine. `--root`
imports `proxy` from another tree (a before/after comparison in one run). Needs valgrind.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is importable from the tree
    sys.path.append(str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402

TURNS = 2000
WARMUP = 200
TIME = "2027-01-06T13:20:00Z"


class _Store:
    """The wrapped store's figures read (only the first, which fills the cache)."""

    async def budget_usage(self, key: Any, project: Any) -> Any:
        from proxy.store.base import WindowUsage

        return WindowUsage(usage=Decimal("1.25")), WindowUsage(usage=Decimal("7.5"))


class _Policy:
    sets_budgets = False


class _Request:
    time = TIME


class _Asked:
    policy = _Policy()
    request = _Request()


def _context() -> Any:
    from proxy.budgets import Budget
    from proxy.store.base import ApiKey, KeyContext, Organization, Project

    key = ApiKey(
        id="key-1",
        token_hash="hash-1",
        display="llmgtwy_…abcd",
        project_id="default",
        status="active",
        usage_limit=None,
        usage=Decimal(0),
        description="",
        created_at="2026-11-27T10:00:00Z",
        budget=Budget(amount=Decimal(10), period="day"),
    )
    return KeyContext(
        key=key,
        reserved=Decimal(0),
        rules=(),
        project=Project(
            id="default",
            organization_id="default",
            budget=Budget(amount=Decimal(100), period="week"),
        ),
        organization=Organization(id="default", credits=Decimal(10)),
        credits_reserved=Decimal(0),
    )


def child(root: str) -> None:
    sys.path.insert(0, root)
    import proxy.budget_facts
    import proxy.gateway as gateway
    from proxy.budget_facts import WindowTimes
    from proxy.key_cache import KeyCachingStore

    cache = KeyCachingStore(_Store(), clock=lambda: 100.0)  # type: ignore[arg-type]
    # A gateway with just what the budget facts read (no config, no app).
    stand_in: Any = gateway.Gateway.__new__(gateway.Gateway)
    stand_in._store = cache
    stand_in._windows = WindowTimes(ZoneInfo("UTC"))
    stand_in._gateway_value = None
    if hasattr(proxy.budget_facts, "KnownFacts"):
        stand_in._known_facts = proxy.budget_facts.KnownFacts()
    if hasattr(gateway, "_RecentBudgets"):  # a tree before `_first_budget_facts`
        stand_in._recent_budgets = gateway._RecentBudgets(cache)
    asked, context = _Asked(), _context()

    def facts_of(first: Any) -> Any:
        if not asyncio.iscoroutine(first):
            return first
        try:
            first.send(None)
        except StopIteration as done:
            return done.value
        raise RuntimeError("the figures were not held")

    if hasattr(gateway.Gateway, "_first_budget_facts"):

        def turns(count: int) -> None:
            first = gateway.Gateway._first_budget_facts
            for _ in range(count):
                facts_of(first(stand_in, asked, context))
    else:

        def turns(count: int) -> None:
            facts = gateway.Gateway._budget_facts
            for _ in range(count):
                facts_of(facts(stand_in, asked, context, fresh=False))

    async def fill() -> None:  # the first read fills the cache, as a key's first request
        key_window = stand_in._windows.window(context.key.budget, TIME)
        project_window = stand_in._windows.window(context.project.budget, TIME)
        await cache.recent_budget_usage(
            (context.key.id, key_window.start), (context.project.id, project_window.start)
        )

    asyncio.run(fill())
    turns(WARMUP)
    if hasattr(gateway.Gateway, "_first_budget_facts"):
        held = facts_of(gateway.Gateway._first_budget_facts(stand_in, asked, context))
    else:
        held = facts_of(gateway.Gateway._budget_facts(stand_in, asked, context, fresh=False))
    if held.key.usage != Decimal("1.25") or held.project.usage != Decimal("7.5"):
        raise RuntimeError(f"not the held figures: {held}")
    gc.collect()
    gc.freeze()
    operator.call(turns, TURNS)


def count(root: str) -> float:
    return operator_call_instructions([__file__, "--child", root]) / TURNS


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    roots = [str(ROOT)]
    if len(sys.argv) == 3 and sys.argv[1] == "--root":
        roots.insert(0, str(Path(sys.argv[2]).resolve()))
    for root in roots:
        print(f"{root}: {count(root):,.0f} instructions a request's first budget facts")


if __name__ == "__main__":
    main()
