"""The prepared policy the request path asks, and its hot reload.

The engine is built once from the policy directory and the catalog and swapped as a
single reference when a file changes (polled mtimes) or on SIGHUP. A reload that
fails keeps the previous policy serving and logs the error with file:line:col.

Every load type-checks the policy against the shipped input schema
(`schemas/input.schema.json`, the contract of the document this proxy builds), so a
misspelt `input.…` path fails the load instead of quietly denying every request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from proxy.budgets import Budget, Period
from proxy.catalog import Catalog, CatalogError, load_catalog
from proxy.documents import Decision, InputDocument, decision_from_value, engine_input
from proxy.gc_tuning import after_policy_reload

__all__ = [
    "INPUT_SCHEMA_FILE",
    "DecideFn",
    "LoadedPolicy",
    "PolicyHolder",
    "PolicyLoadError",
    "PreparedPolicy",
    "engine_loader",
    "input_schema_text",
]

logger = logging.getLogger("gateway.policy")

# Takes the plain input value, returns the plain decision value (or the engine's UNDEFINED).
DecideFn = Callable[[dict[str, Any]], object]
# Builds a DecideFn from the policy directory and `data`; raises PolicyLoadError.
Loader = Callable[[str, dict[str, Any]], DecideFn]


class PolicyLoadError(Exception):
    """Policies or catalog could not be loaded; the message carries file:line:col."""


def _policy_print(line: str) -> None:
    """Where the policy's `print(...)` lines go: the gateway's log, never the response."""
    logger.info("policy print: %s", line)


INPUT_SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "input.schema.json"


def input_schema_text() -> tuple[str, str]:
    """(schema text, name) of the input schema the policy is checked against.

    The file in the repository; an install without it (a wheel) uses the schema
    written from `InputDocument`, the types that file is generated from."""
    try:
        return INPUT_SCHEMA_FILE.read_text(encoding="utf-8"), str(INPUT_SCHEMA_FILE)
    except FileNotFoundError:
        schema = msgspec.json.schema(InputDocument)
        return msgspec.json.encode(schema).decode(), "the InputDocument schema (proxy.documents)"


class PreparedPolicy:
    """The engine's decision, plus the period budgets that apply when policy files set
    some (`budgets:`, weighed against the stored ones by
    `data.gateway.effective_budgets`): a DecideFn that also answers which budget
    applies to a request's key and project."""

    def __init__(
        self, decide: DecideFn, budgets: DecideFn | None, controls: DecideFn | None = None
    ) -> None:
        self._decide = decide
        self._budgets = budgets
        # `data.gateway.effective_controls`, for the admin surfaces (never per request).
        self.controls = controls

    def __call__(self, document: dict[str, Any]) -> object:
        return self._decide(document)

    @property
    def sets_budgets(self) -> bool:
        """Whether any policy file sets a budget (if not, nobody asks per request)."""
        return self._budgets is not None

    def policy_budgets(self, document: dict[str, Any]) -> object:
        return None if self._budgets is None else self._budgets(document)


def engine_loader(policy_dir: str, data: dict[str, Any]) -> DecideFn:
    """The real loader: policy_engine, prepared once for `data.gateway.decision`.

    Each decision gets its own EvalOptions: the request's time for `time.now_ns`
    (one reading per decision), a seed for `rand.intn` / `uuid.rfc4122` derived
    from that time (so a logged time reproduces the draws), and print to the log.
    """
    from policy_engine import Engine, EvalOptions, PolicyError
    from policy_engine.typecheck import parse_input_schema

    try:
        schema = parse_input_schema(*input_schema_text())
        engine = Engine.from_paths([policy_dir], data=data, input_schema=schema)
        prepared = engine.prepare("data.gateway.decision")
    except PolicyError as exc:
        raise PolicyLoadError(str(exc)) from None
    budgets = _budget_query(engine)

    def decide(document: dict[str, Any]) -> object:
        now = time.time_ns()
        return prepared(document, None, EvalOptions(now_ns=now, seed=now, print_hook=_policy_print))

    return PreparedPolicy(decide, budgets, _controls_query(engine))


def _controls_query(engine: Any) -> DecideFn | None:
    """`data.gateway.effective_controls` (what `keys show` and the admin surfaces show
    as applying), or None when the policy cannot answer it."""
    from policy_engine import PolicyError

    try:
        query = engine.prepare("data.gateway.effective_controls")
    except PolicyError:
        return None

    def controls(document: dict[str, Any]) -> object:
        return query(document)

    return controls


def _budget_query(engine: Any) -> DecideFn | None:
    """`data.gateway.effective_budgets`, when the policy defines it and some policy
    file sets a budget at all; None otherwise (then no request pays for asking, and
    the key store's budgets apply)."""
    from policy_engine import UNDEFINED, PolicyError

    try:
        listed = engine.prepare("data.gateway.budget_policies.budgets")({})
        if listed is UNDEFINED or not listed:
            return None
        query = engine.prepare("data.gateway.effective_budgets")
    except PolicyError:
        return None

    def budgets(document: dict[str, Any]) -> object:
        return query(document)

    return budgets


class LoadedPolicy:
    """One consistent generation of policy + catalog."""

    def __init__(self, decide: DecideFn, catalog: Catalog) -> None:
        self._decide = decide
        self.catalog = catalog
        self._budgets = (
            decide if isinstance(decide, PreparedPolicy) and decide.sets_budgets else None
        )

    @property
    def sets_budgets(self) -> bool:
        return self._budgets is not None

    @property
    def controls(self) -> DecideFn | None:
        """`data.gateway.effective_controls` for the admin surfaces; None without it."""
        return self._decide.controls if isinstance(self._decide, PreparedPolicy) else None

    def policy_budgets(
        self, document: dict[str, Any]
    ) -> tuple[Budget | None, Budget | None] | None:
        """The budgets that apply to the request's key and project (None in a pair:
        none applies), as the policy weighs the stored ones against the policy files',
        for the input in the engine's form (`engine_input`'s); None when no policy file
        sets a budget (then the stored ones apply). A malformed answer is logged and the
        stored budgets apply."""
        if self._budgets is None:
            return None
        try:
            value = self._budgets.policy_budgets(document)
            chosen = msgspec.convert(value, _PolicyBudgets)
        except msgspec.ValidationError:
            logger.exception("the policy returned malformed effective_budgets")
            return None
        return _budget(chosen.key), _budget(chosen.project)

    def decide(self, document: InputDocument) -> Decision | None:
        """The decision, or None when the policy is undefined or malformed for this input."""
        return self.decide_input(engine_input(document))

    def decide_input(self, document: dict[str, Any]) -> Decision | None:
        """`decide` of the document in the engine's form (`engine_input`'s)."""
        try:
            value = self._decide(document)
            return decision_from_value(value)
        except msgspec.ValidationError:
            logger.exception("the policy returned a malformed decision")
        except Exception:
            logger.exception("the policy failed to evaluate")
        return None


class _PolicyBudget(msgspec.Struct, frozen=True):
    amount: str
    period: Period


class _PolicyBudgets(msgspec.Struct, frozen=True):
    key: _PolicyBudget | None = None
    project: _PolicyBudget | None = None


def _budget(found: _PolicyBudget | None) -> Budget | None:
    return None if found is None else Budget(amount=Decimal(found.amount), period=found.period)


def _snapshot(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    files: list[tuple[str, int, int]] = []
    for root in paths:
        candidates = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in candidates:
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(files)


class PolicyHolder:
    """Holds the current LoadedPolicy; `reload()` swaps it only when the new one loads."""

    def __init__(self, policy_dir: str, catalog_path: str, loader: Loader = engine_loader) -> None:
        self._policy_dir = policy_dir
        self._catalog_path = catalog_path
        self._loader = loader
        self._watched = [Path(policy_dir), Path(catalog_path)]
        self._seen = _snapshot(self._watched)
        self._reloading = threading.Lock()  # one build at a time (poll and SIGHUP may race)
        self._refreeze: asyncio.TimerHandle | None = None  # see `gc_tuning`
        self.current = self._load()

    def _load(self) -> LoadedPolicy:
        try:
            catalog, raw = load_catalog(self._catalog_path)
        except CatalogError as exc:
            raise PolicyLoadError(str(exc)) from None
        return LoadedPolicy(self._loader(self._policy_dir, {"catalog": raw}), catalog)

    def reload(self) -> bool:
        """Build a new generation; on failure keep serving the old one and log why.
        Safe to call from a worker thread: the swap is one reference assignment."""
        with self._reloading:
            self._seen = _snapshot(self._watched)
            try:
                fresh = self._load()
            except PolicyLoadError as exc:
                logger.error("policy reload failed, keeping the previous policy:\n%s", exc)
                return False
            self.current = fresh  # INVARIANT: one reference swap; requests see old or new
        logger.info("policy reloaded from %s", self._policy_dir)
        return True

    async def reload_off_loop(self) -> bool:
        """`reload` on a worker thread, so compiling policies never stalls requests."""
        reloaded = await asyncio.to_thread(self.reload)
        if reloaded:
            self._refreeze = after_policy_reload(asyncio.get_running_loop(), self._refreeze)
        return reloaded

    def changed(self) -> bool:
        return _snapshot(self._watched) != self._seen

    async def watch(self, interval: float) -> None:
        """Poll the files every `interval` seconds and reload on change (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                await self.reload_off_loop()
