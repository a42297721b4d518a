"""`policy-engine prop`: search for inputs that break the policies' invariants.

Every rule named `prop_*` is an invariant: for every input valid under the
input schema it must be defined and not `false`. Rules named `example_*`
hold example inputs (say, a request that is allowed): most generated inputs
are one of them with a few parts drawn anew, which reaches the checks that
random inputs almost never pass all at once. Hypothesis generates inputs
(`schema_strategy`), evaluates every property on each, and on a violation
shrinks the input to a minimal one, printed with the decision it produced.

A failing input is saved as JSON (`counterexamples`, under
`.hypothesis/policy-engine/<key>/` by default, the key made of the property
names and the schema), and the next run, say after fixing the policy,
replays the saved inputs first. `--seed` makes a run reproducible.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from hypothesis import HealthCheck, Phase, given, seed, settings, target
from hypothesis.errors import HypothesisException

from policy_engine import ast
from policy_engine.engine import Engine, Prepared, _parse_all
from policy_engine.errors import COMPILE_ERROR, Diagnostic, EvalError, PolicyError
from policy_engine.tooling.counterexamples import CounterexampleStore
from policy_engine.tooling.explain import Explainer
from policy_engine.tooling.loading import PolicySet
from policy_engine.tooling.schema_strategy import dictionary_of, schema_strategy
from policy_engine.values import UNDEFINED, to_json_value

__all__ = ["PropConfig", "PropFailure", "PropReport", "render_prop_report", "run_properties"]


class PropConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How hard and how reproducibly to search."""

    max_examples: int = 500
    """Inputs to try (after replaying saved failures)."""
    seed: int | None = None
    """Fixes hypothesis's random choices; the same seed finds the same example."""
    database: str | None = ".hypothesis/policy-engine"
    """Directory of saved failing examples; None keeps nothing."""
    pattern: str | None = None
    """Only properties whose full name matches this regular expression."""
    decision: str = "data.gateway.decision"
    """Shown next to a counterexample when the policies define it."""
    steer: bool = True
    """Steer the search towards inputs that get further into `decision`.

    Random inputs mostly fail an early check (no token, unknown key), so the
    rules behind them are rarely reached. With this on, each input's decision
    is also evaluated by the tracing engine and hypothesis's targeted search
    (`hypothesis.target`) maximises how far down the decision's else-chain the
    input gets, and for each answer the number of statements that held.
    """


class Property(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    file: str
    line: int


class PropFailure(msgspec.Struct, frozen=True, kw_only=True):
    """The minimal input found that breaks `prop`, and what the policies answered."""

    prop: Property
    outcome: str
    """`false`, `undefined`, or the evaluation error."""
    input: Any
    decision: Any
    """What `PropConfig.decision` answered for the input (None when undefined)."""
    decision_ref: str | None = None
    """The decision shown, or None when the policies define no such rule."""


class PropReport(msgspec.Struct, frozen=True, kw_only=True):
    properties: tuple[Property, ...]
    failures: tuple[PropFailure, ...]
    examples: int
    """Inputs evaluated, replayed ones and shrinking steps included."""
    seconds: float
    seed: int | None
    replayed: bool = False
    """The failure came from a saved counterexample, without a new search."""


class _Violation(Exception):
    def __init__(self, prop: Property, outcome: str, document: Any) -> None:
        super().__init__(f"{prop.name} is {outcome}")
        self.prop = prop
        self.outcome = outcome
        self.document = document


def find_properties(modules: list[ast.Module], pattern: str | None) -> list[Property]:
    selected = re.compile(pattern) if pattern else None
    found: dict[str, Property] = {}
    for module in modules:
        for rule in module.rules:
            if isinstance(rule, ast.CompleteRule) and rule.name[-1].startswith("prop_"):
                name = ".".join(("data", *module.package, *rule.name))
                if selected is None or selected.search(name):
                    found.setdefault(
                        name, Property(name=name, file=rule.span.file, line=rule.span.line)
                    )
    return list(found.values())


def _string_constants(modules: list[ast.Module]) -> list[str]:
    return [
        node.value
        for module in modules
        for node in _walk(module)
        if isinstance(node, ast.StringLit)
    ]


def _walk(node: Any) -> Any:
    if isinstance(node, msgspec.Struct):
        yield node
        for field in node.__struct_fields__:
            yield from _walk(getattr(node, field))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)


def _seeds(modules: list[ast.Module], engine: Engine) -> list[Any]:
    """The values of rules named `example_*`: inputs the search starts near."""
    names = {
        ".".join(("data", *m.package, *r.name))
        for m in modules
        for r in m.rules
        if isinstance(r, ast.CompleteRule) and r.name[-1].startswith("example_")
    }
    seeds = []
    for name in sorted(names):
        try:
            value = engine.prepare(name)(UNDEFINED)
        except EvalError:
            continue
        if isinstance(value, dict):
            seeds.append(value)
    return seeds


_ALL_PROPS_PACKAGE = "policy_engine_prop_check"
_ALL_PROPS = f"data.{_ALL_PROPS_PACKAGE}.all_props"


def _all_props_module(props: list[Property]) -> str:
    """A rule whose value is every property's, in order: one evaluation context for
    them all, so the rules they share (the decision, mostly) are computed once per
    input rather than once per property."""
    refs = ", ".join(p.name for p in props)
    return f"package {_ALL_PROPS_PACKAGE}\n\nall_props := [{refs}]\n"


def _check_all(
    all_props: Prepared | None, props: list[tuple[Property, Prepared]], document: Any
) -> None:
    """`_check`, first in one evaluation of every property: when that gives each a
    value other than `false`, every property holds. Anything else (an undefined one
    leaves the whole array undefined, an error, a `false`) is checked one property at
    a time, which names the first that breaks exactly as before."""
    if all_props is not None:
        try:
            values = all_props(document)
        except EvalError:
            values = UNDEFINED
        if (
            isinstance(values, list)
            and len(values) == len(props)
            and not any(value is False for value in values)
        ):
            return
    _check(props, document)


def _check(props: list[tuple[Property, Prepared]], document: Any) -> None:
    for prop, prepared in props:
        try:
            value = prepared(document)
        except EvalError as exc:
            raise _Violation(prop, f"an error: {exc}", document) from None
        if value is UNDEFINED:
            raise _Violation(prop, "undefined", document)
        if value is False:
            raise _Violation(prop, "false", document)


def _store_key(props: list[Property], schema: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([p.name for p in props]).encode())
    digest.update(json.dumps(schema, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def run_properties(
    policies: PolicySet, schema: Mapping[str, Any], config: PropConfig | None = None
) -> PropReport:
    """Search for a counterexample to every `prop_*` rule in `policies`.

    Saved counterexamples are tried first; if one still breaks a property it
    is reported without a new search.
    """
    config = config or PropConfig()
    modules, problems = _parse_all(policies.sources)
    if problems:
        raise PolicyError(problems, policies.sources)
    props = find_properties(modules, config.pattern)
    sources = policies.sources
    if props:
        sources = {**sources, f"<{_ALL_PROPS_PACKAGE}>": _all_props_module(props)}
    engine = Engine.from_sources(sources, policies.data)
    prepared = [(p, engine.prepare(p.name)) for p in props]
    all_props = engine.prepare(_ALL_PROPS) if props else None
    store = CounterexampleStore(config.database, _store_key(props, schema))
    started = time.perf_counter()
    violation = _replay(prepared, store) if props else None
    replayed = violation is not None
    examples = 0
    if violation is None and props:
        violation, examples = _search(
            policies, modules, schema, config, engine, prepared, all_props
        )
        if violation is not None:
            store.save(violation.document)
    return PropReport(
        properties=tuple(props),
        failures=(_failure(engine, config, violation),) if violation is not None else (),
        examples=examples,
        seconds=round(time.perf_counter() - started, 3),
        seed=config.seed,
        replayed=replayed,
    )


def _replay(
    prepared: list[tuple[Property, Prepared]], store: CounterexampleStore
) -> _Violation | None:
    for file, document in store.saved():
        try:
            _check(prepared, document)
        except _Violation as violation:
            return violation
        store.forget(file)  # fixed: no longer worth replaying
    return None


def _search(
    policies: PolicySet,
    modules: list[ast.Module],
    schema: Mapping[str, Any],
    config: PropConfig,
    engine: Engine,
    prepared: list[tuple[Property, Prepared]],
    all_props: Prepared | None,
) -> tuple[_Violation | None, int]:
    """Run hypothesis; the shrunk violation (or None) and the number of inputs tried."""
    dictionary = dictionary_of([_string_constants(modules), policies.data])
    strategy = schema_strategy(schema, dictionary, _seeds(modules, engine))
    steer = (
        _steering(policies, config)
        if config.steer and config.decision in engine.rule_paths
        else None
    )
    violations: list[_Violation] = []
    evaluated: list[int] = [0]

    def check(document: Any) -> None:
        evaluated[0] += 1
        if steer is not None and not violations:  # steering is for finding, not shrinking
            steer(document)
        try:
            _check_all(all_props, prepared, document)
        except _Violation as exc:
            violations.append(exc)  # the last one raised is the shrunk example
            raise

    search = settings(
        max_examples=config.max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
        print_blob=False,
    )(given(strategy)(check))
    if config.seed is not None:
        search = seed(config.seed)(search)
    try:
        _quietly(search)
    except _Violation:
        return violations[-1], evaluated[0]
    return None, evaluated[0]


def _steering(policies: PolicySet, config: PropConfig) -> Any:
    explainer = Explainer.from_sources(policies.sources, policies.data)

    ref = config.decision

    def steer(document: Any) -> None:
        try:
            explanation = explainer.explain(ref, document)
        except EvalError:
            return  # the properties report it
        events = explanation.events
        held = sum(e.op == "eval" for e in events)
        # How far down the decision's else-chain the input got: clauses that failed.
        reached = sum(
            e.op == "fail" and e.kind == "clause" and e.name == ref and e.depth == 0 for e in events
        )
        target(float(reached * 1000 + held), label="decision clause reached")
        if explanation.verdict is not None:
            # Each answer explored on its own, so no single one takes all the search.
            target(float(held), label=f"statements held, answer at line {explanation.verdict.line}")

    return steer


def _quietly(search: Any) -> None:
    """Run the search without hypothesis printing its own report (we print ours)."""
    from hypothesis.reporting import with_reporter

    with with_reporter(lambda _message: None):
        try:
            search()
        except HypothesisException as exc:
            problem = Diagnostic(
                code=COMPILE_ERROR,
                message=f"the input search could not run: {exc}; check the input schema",
                file="<schema>",
                line=1,
                column=1,
            )
            raise PolicyError([problem]) from exc


def _failure(engine: Engine, config: PropConfig, violation: _Violation) -> PropFailure:
    decision: Any = None
    shown = config.decision if config.decision in engine.rule_paths else None
    if shown is not None:
        try:
            value = engine.prepare(config.decision)(violation.document)
            decision = None if value is UNDEFINED else to_json_value(value)
        except EvalError as exc:
            decision = f"error: {exc}"
    return PropFailure(
        prop=violation.prop,
        outcome=violation.outcome,
        input=to_json_value(violation.document),
        decision=decision,
        decision_ref=shown,
    )


def render_prop_report(report: PropReport) -> str:
    """The verdict per property; for a failure the minimal input and the decision as JSON."""
    lines: list[str] = []
    failed = {f.prop.name: f for f in report.failures}
    for prop in report.properties:
        failure = failed.get(prop.name)
        if failure is None:
            continue
        lines.append(
            f"{prop.file}:{prop.line}: FAIL {prop.name} does not hold ({failure.outcome}) for:"
        )
        shown: dict[str, Any] = {"input": failure.input}
        if failure.decision_ref is not None:
            shown["decision"] = failure.decision
        lines.append(_json(shown))
    seed_note = f" (seed {report.seed})" if report.seed is not None else ""
    if not report.properties:
        lines.append("no prop_* rules found")
    elif not report.failures:
        names = ", ".join(p.name.rsplit(".", 1)[-1] for p in report.properties)
        count = len(report.properties)
        holds = "property holds" if count == 1 else "properties hold"
        lines.append(f"{count} {holds} over {report.examples} inputs{seed_note}: {names}")
    elif report.replayed:
        lines.append(
            "a saved counterexample still fails (delete it from the database to search anew)"
        )
    else:
        lines.append(f"counterexample found in {report.seconds:.1f} s{seed_note}")
    return "\n".join(lines) + "\n"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
