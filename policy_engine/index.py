"""The rule tree: every rule of every module filed under its full `data` path.

`data.gateway.decision` is the group of all definitions of `decision` in
package `gateway` (plus its `default`). Namespaces are the paths in between;
a namespace's value is the object of its children merged over base data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from policy_engine import ast
from policy_engine.errors import COMPILE_ERROR, Diagnostic

__all__ = ["TREE_KINDS", "RuleGroup", "RuleIndex", "build_index"]

Path = tuple[str, ...]


@dataclass(eq=False)
class RuleGroup:
    """All definitions sharing one path; `kind` is complete, set, object or function."""

    path: Path
    kind: str
    package: Path
    definitions: list[tuple[ast.Module, ast.Rule]] = field(default_factory=list)
    default: ast.DefaultRule | None = None
    arity: int = 0
    default_module: ast.Module | None = None
    """The module the `default` is written in (its imports resolve its names)."""


@dataclass(eq=False)
class RuleIndex:
    """Rule groups by path, the namespaces above them, and each module's rule names."""

    groups: dict[Path, RuleGroup] = field(default_factory=dict)
    namespaces: dict[Path, set[str]] = field(default_factory=dict)
    """namespace path -> names of its direct children (groups or namespaces)."""

    def children(self, path: Path) -> set[str]:
        return self.namespaces.get(path, set())

    def groups_under(self, path: Path) -> Iterator[RuleGroup]:
        for group_path, group in self.groups.items():
            if group_path[: len(path)] == path:
                yield group


def _kind(rule: ast.Rule) -> str:
    if isinstance(rule, ast.FunctionRule):
        return "function"
    if isinstance(rule, ast.PartialSetRule):
        return "set"
    if isinstance(rule, ast.PartialObjectRule):
        return "object"
    if isinstance(rule, ast.GeneralRule):
        return "general"
    if isinstance(rule, ast.DefaultRule):
        return "function" if rule.args is not None else "complete"
    return "complete"


def _arity(rule: ast.Rule) -> int:
    if isinstance(rule, ast.FunctionRule):
        return len(rule.args)
    if isinstance(rule, ast.DefaultRule) and rule.args is not None:
        return len(rule.args)
    return 0


_KIND_WORDS = {
    "complete": "a complete rule",
    "set": "a partial set rule (`contains`)",
    "object": "a partial object rule",
    "function": "a function",
    "general": "a rule with a general reference head",
}
# Kinds whose value is an object built from key paths: other rules may sit under them
# (`p[q].r := 1` beside `p.a.r := 0`) and the object at that path merges them all.
TREE_KINDS = frozenset({"object", "general"})


def build_index(modules: Iterable[ast.Module]) -> tuple[RuleIndex, list[Diagnostic]]:
    """File every rule under `("data", *package, *name)`; report kind clashes."""
    index = RuleIndex()
    problems: list[Diagnostic] = []
    modules_seen = list(modules)
    for module in modules_seen:
        for rule in module.rules:
            path = ("data", *module.package, *rule.name)
            kind = _kind(rule)
            group = index.groups.get(path)
            if group is None:
                group = RuleGroup(path=path, kind=kind, package=module.package, arity=_arity(rule))
                index.groups[path] = group
            elif {group.kind, kind} == TREE_KINDS:
                group.kind = "general"  # `p[k] := v` beside `p[k].r := w`: one key tree
            elif group.kind != kind or group.arity != _arity(rule):
                problems.append(
                    Diagnostic.at(
                        COMPILE_ERROR,
                        f"rule `{'.'.join(path[1:])}` is defined as {_KIND_WORDS[kind]} here but "
                        f"as {_KIND_WORDS[group.kind]} elsewhere; give one of them another name",
                        rule.span,
                    )
                )
                continue
            if isinstance(rule, ast.DefaultRule):
                if group.default is not None:
                    problems.append(
                        Diagnostic.at(
                            COMPILE_ERROR,
                            f"rule `{'.'.join(path[1:])}` has more than one default value",
                            rule.span,
                        )
                    )
                group.default = rule
                group.default_module = module
            else:
                group.definitions.append((module, rule))
    for path in index.groups:
        for i in range(1, len(path)):
            index.namespaces.setdefault(path[:i], set()).add(path[i])
    for module in modules_seen:
        # A package exists even without rules: `data.a.b` is `{}` for an empty `package a.b`.
        package = ("data", *module.package)
        index.namespaces.setdefault(package, set())
        for i in range(1, len(package)):
            index.namespaces.setdefault(package[:i], set()).add(package[i])
    for path, group in index.groups.items():
        if path in index.namespaces and group.kind not in TREE_KINDS:
            first = group.default or group.definitions[0][1]
            problems.append(
                Diagnostic.at(
                    COMPILE_ERROR,
                    f"rule `{'.'.join(path[1:])}` conflicts with rules nested under it "
                    f"(`{'.'.join(path[1:])}.…`); rename one of them",
                    first.span,
                )
            )
    return index, problems
