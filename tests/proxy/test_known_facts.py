"""A budgeted request's first budget facts (`Gateway._first_budget_facts`): made once
per key, record and second from the key cache's held figures, and made again whenever
any of those changes (`proxy.budget_facts.KnownFacts`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec
from proxy_helpers import key_context

from proxy.budget_facts import NO_BUDGETS, BudgetFacts, KnownFacts, WindowTimes
from proxy.budgets import Budget
from proxy.documents import RequestDocument
from proxy.gateway import Gateway
from proxy.input_document import engine_document
from proxy.key_cache import KeyCachingStore
from proxy.store.base import (
    KeyContext,
    Store,
    WindowUsage,
)

NOON = "2027-01-06T12:00:00Z"


class _Figures:
    """A store's budget windows' figures: the key's spend, as set by the test."""

    def __init__(self) -> None:
        self.spent = Decimal("1.25")
        self.reads = 0

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        self.reads += 1
        return WindowUsage(usage=self.spent), WindowUsage()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Asked:
    """Just what the budget facts read of a request."""

    def __init__(self, time: str) -> None:
        self.policy = cast(Any, type("Policy", (), {"sets_budgets": False})())
        self.request = cast(Any, type("Request", (), {"time": time})())


def _context(amount: Decimal = Decimal(10), budget: bool = True) -> KeyContext:
    return key_context(budget=Budget(amount=amount, period="day") if budget else None)


def _gateway(store: _Figures, clock: _Clock) -> Gateway:
    """A gateway with just what the budget facts read (no config, no app)."""
    gateway = Gateway.__new__(Gateway)
    cache = KeyCachingStore(cast(Store, store), ttl=0.5, clock=clock)
    vars(gateway).update(
        _store=cache,
        _windows=WindowTimes(ZoneInfo("UTC")),
        _gateway_value=None,
        _known_facts=KnownFacts(),
    )
    return gateway


def _first(gateway: Gateway, time: str, context: KeyContext) -> BudgetFacts:
    async def facts() -> BudgetFacts:
        first = gateway._first_budget_facts(cast(Any, _Asked(time)), context)
        return first if isinstance(first, BudgetFacts) else await first

    return asyncio.run(facts())


def test_the_facts_of_a_record_and_second_are_made_once_from_the_held_figures() -> None:
    store, clock = _Figures(), _Clock()
    gateway, context = _gateway(store, clock), _context()
    read = _first(gateway, NOON, context)  # the figures read: the cache holds them
    assert read.key is not None and read.key.usage == Decimal("1.25")
    made = _first(gateway, NOON, context)
    assert made == read
    assert _first(gateway, NOON, context) is made
    assert store.reads == 1
    assert made.key is not None
    assert (made.key.window_start, made.key.resets_at) == (
        "2027-01-06T00:00:00Z",
        "2027-01-07T00:00:00Z",
    )
    assert made.key_window is not None and made.key_window.amount == Decimal(10)


def test_new_facts_for_new_figures_a_new_record_and_a_new_second() -> None:
    store, clock = _Figures(), _Clock()
    gateway, context = _gateway(store, clock), _context()
    _first(gateway, NOON, context)
    kept = _first(gateway, NOON, context)
    # The cache's figures read again (past its ttl): the facts carry the new spend.
    store.spent = Decimal(4)
    clock.now += 0.6
    reread = _first(gateway, NOON, context)
    assert reread.key is not None and reread.key.usage == Decimal(4)
    assert _first(gateway, NOON, context).key == reread.key
    # A new record of the key (its budget changed elsewhere): its own budget.
    raised = _context(Decimal(20))
    facts = _first(gateway, NOON, raised)
    assert facts.key is not None and facts.key.amount == Decimal(20)
    assert facts.key_window is not None and facts.key_window.amount == Decimal(20)
    # The next day's second: the next day's window.
    tomorrow = _first(gateway, "2027-01-07T00:00:00Z", raised)
    assert tomorrow.key is not None and tomorrow.key.window_start == "2027-01-07T00:00:00Z"
    assert kept.key is not None and kept.key.usage == Decimal("1.25")


def test_a_key_without_budgets_has_no_facts_and_reads_no_figures() -> None:
    store, clock = _Figures(), _Clock()
    gateway = _gateway(store, clock)
    assert _first(gateway, NOON, _context(budget=False)) is NO_BUDGETS
    assert store.reads == 0


def test_known_facts_are_only_those_of_the_same_record_and_second() -> None:
    known, context = KnownFacts(), _context()
    subjects = (("key-1", "2027-01-06T00:00:00Z"), None)
    figures = (WindowUsage(), WindowUsage())
    facts = BudgetFacts()
    known.keep(context, NOON, subjects, figures, facts)
    kept = known.last(context, NOON)
    assert kept is not None and kept.facts is facts and kept.figures is figures
    assert known.last(context, "2027-01-06T12:00:01Z") is None
    assert known.last(_context(), NOON) is None  # an equal record read again is not this one


def test_kept_facts_carry_the_engine_members_of_their_record_and_windows() -> None:
    store, clock = _Figures(), _Clock()
    gateway, context = _gateway(store, clock), _context()
    _first(gateway, NOON, context)  # the figures read
    kept = _first(gateway, NOON, context)
    known = gateway._known_facts
    members = known.members(context, kept)
    assert members is not None
    # Exactly the members the engine document would make from the windows itself.
    request = RequestDocument(
        operation="chat.completions", token_present=True, time=NOON, client_ip="127.0.0.1"
    )
    made = engine_document(request, context, {}, kept.key, kept.project)
    assert (made["key"], made["project"]) == members
    assert engine_document(request, context, {}, kept.key, kept.project, members) == made
    assert made["key"]["period_budget"]["usage"] == "1.25"
    # Only for those very facts of that very record.
    assert known.members(context, facts_of_copy(kept)) is None
    assert known.members(_context(), kept) is None


def facts_of_copy(facts: BudgetFacts) -> BudgetFacts:
    return msgspec.structs.replace(facts)
