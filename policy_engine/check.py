"""Static checks that need the whole rule tree, run as named stages before compilation.

`check_modules` runs, in order (OPA's compile stage list, reduced to what this
engine checks):

1. `index` (`index.build_index`): file rules by path; kind and default clashes.
2. the `STAGES` below, each a `Stage(name, run)` over the modules and the index:
   `recursion` (a rule may not depend on itself, directly or not) and
   `redeclared` (`redeclared.check_redeclared`: a name declared twice in a scope).

Every stage runs even when an earlier one found problems, so one load reports
them all. Unsafe variables, unknown functions and arity errors are found while
compiling bodies (`compile.py`), because deciding them needs the same statement
ordering the compiler does; `engine.load` merges all diagnostics and sorts them
by position. A new static check is one more `Stage`.

3. `types` (`typecheck`, run by `check_types_stage` once compilation found the
   policy safe): OPA's `rego_type_error`s, with `input` typed by an input schema
   when one is given. OPA type-checks after its safety checks too: a type error
   in an unsafe body would only hide the real problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from policy_engine import ast
from policy_engine.errors import RECURSION_ERROR, Diagnostic
from policy_engine.index import RuleIndex, build_index
from policy_engine.redeclared import check_redeclared
from policy_engine.source import Span
from policy_engine.terms import term_vars
from policy_engine.typecheck import InputSchema, check_types

__all__ = [
    "STAGES",
    "Stage",
    "check_modules",
    "check_recursion",
    "check_types_stage",
    "dependencies",
]

Path = tuple[str, ...]


def _static_prefix(head: str, path: tuple[ast.Term, ...]) -> Path:
    parts = [head]
    for item in path:
        if isinstance(item, ast.StringLit):
            parts.append(item.value)
        elif isinstance(item, ast.NumberLit) and item.text.isdigit():
            # `data[2]` reads key "2" of base data (OPA's store paths are strings); no
            # rule is named by a number, so it narrows the prefix like a string does.
            parts.append(item.text)
        else:
            break
    return tuple(parts)


def _module_names(index: RuleIndex, module: ast.Module) -> dict[str, Path]:
    prefix = ("data", *module.package)
    names = {name: (*prefix, name) for name in index.children(prefix)}
    for imp in module.imports:
        if imp.path[0] == "data" and len(imp.path) > 1:
            names[imp.alias or imp.path[-1]] = imp.path
    return names


def _targets(index: RuleIndex, prefix: Path) -> Iterator[Path]:
    """Rule groups a reference with this static prefix may evaluate."""
    for i in range(len(prefix), 0, -1):
        if prefix[:i] in index.groups:
            yield prefix[:i]
            if prefix[:i] in index.namespaces:
                # A key-tree rule merges the rules under it (general ref heads).
                yield from (group.path for group in index.groups_under(prefix))
            return
    for group in index.groups_under(prefix):
        yield group.path


def dependencies(
    index: RuleIndex, module: ast.Module, rule: ast.Rule, names: dict[str, Path] | None = None
) -> set[Path]:
    """Rule groups this rule refers to (through names, `data.` refs and calls)."""
    if names is None:
        names = _module_names(index, module)
    local = set(term_vars(getattr(rule, "args", None) or ()))
    found: set[Path] = set()
    # A reference's head variable is part of the reference, not a use of its own.
    for node in ast.walk(rule, ref_heads=False):
        prefix: Path | None = None
        if isinstance(node, ast.Ref) and isinstance(node.head, ast.Var):
            head = node.head.name
            if head == "data":
                prefix = _static_prefix("data", node.path)
            elif head in names and head not in local:
                prefix = (*names[head], *_static_prefix(head, node.path)[1:])
        elif isinstance(node, ast.Var) and node.name in names and node.name not in local:
            prefix = names[node.name]
        elif isinstance(node, ast.Var) and node.name == "data":
            prefix = ("data",)
        elif isinstance(node, ast.Call):
            if node.name[0] == "data":
                prefix = node.name
            elif node.name[0] in names:
                prefix = (*names[node.name[0]], *node.name[1:])
        if prefix is not None:
            found.update(_targets(index, prefix))
    return found


def check_recursion(index: RuleIndex) -> list[Diagnostic]:
    """One `rego_recursion_error` per rule group that lies on a dependency cycle."""
    graph: dict[Path, set[Path]] = {}
    module_names: dict[int, dict[str, Path]] = {}
    spans: dict[Path, Span] = {}
    for path, group in index.groups.items():
        deps: set[Path] = set()
        for module, rule in group.definitions:
            names = module_names.get(id(module))
            if names is None:
                names = module_names[id(module)] = _module_names(index, module)
            deps |= dependencies(index, module, rule, names)
            spans.setdefault(path, rule.span)
        graph[path] = deps
    problems: list[Diagnostic] = []
    for start in sorted(graph):
        cycle = _cycle_from(graph, start)
        if cycle is not None:
            shown = " -> ".join(".".join(p[1:]) for p in cycle)
            problems.append(
                Diagnostic.at(
                    RECURSION_ERROR,
                    f"rule `{'.'.join(start[1:])}` is recursive: {shown}; "
                    "Rego rules cannot refer back to themselves",
                    spans[start],
                )
            )
    return problems


def _cycle_from(graph: dict[Path, set[Path]], start: Path) -> list[Path] | None:
    stack: list[tuple[Path, list[Path]]] = [(start, [start])]
    seen: set[Path] = set()
    while stack:
        node, trail = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*trail, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*trail, nxt]))
    return None


class Stage(NamedTuple):
    """One static check: its name (as in diagnostics and docs) and what it runs."""

    name: str
    run: Callable[[list[ast.Module], RuleIndex], list[Diagnostic]]


STAGES: tuple[Stage, ...] = (
    Stage("recursion", lambda _modules, index: check_recursion(index)),
    Stage("redeclared", lambda modules, _index: check_redeclared(modules)),
)
"""The checks after `index`, in the order they run."""


def check_modules(modules: list[ast.Module]) -> tuple[RuleIndex, list[Diagnostic]]:
    """The rule index and every problem the stages find (empty when the policy is sound)."""
    index, problems = build_index(modules)
    for stage in STAGES:
        problems += stage.run(modules, index)
    return index, problems


def check_types_stage(
    modules: list[ast.Module], index: RuleIndex, input_schema: InputSchema | None = None
) -> list[Diagnostic]:
    """The `types` stage: every `rego_type_error`, `input` typed by `input_schema` if given."""
    if input_schema is None:
        return check_types(modules, index)
    return check_types(modules, index, input_schema.type, input_schema.source)
