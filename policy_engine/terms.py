"""Compile-time scope: which variables a body has bound, and in which frame slots.

`Scope` is what the body compiler threads through a rule: the slots of the
rule's frame (shared by nested comprehensions, `not` and `every`, which run in
the same frame), the variables bound so far, and how global names resolve
(package rules and imports). `NotReady` signals that a statement needs a
variable no earlier statement binds; the orderer then tries another statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from policy_engine import ast
from policy_engine.source import Span

__all__ = ["Layout", "NotReady", "Scope", "term_vars"]


class NotReady(Exception):
    """A statement cannot run yet: these variables are still unbound."""

    def __init__(self, names: set[str], span: Span | None = None) -> None:
        super().__init__(", ".join(sorted(names)))
        self.names = names
        self.span = span


@dataclass(eq=False)
class Layout:
    """Slot allocator for one frame (a rule definition, a function or a query)."""

    size: int = 1  # slot 0 holds the head-value accumulator

    def new_slot(self) -> int:
        self.size += 1
        return self.size - 1


@dataclass(eq=False)
class Scope:
    layout: Layout
    package: tuple[str, ...]
    globals: dict[str, tuple[str, ...]]
    """Global names: package rule names and import aliases -> absolute path."""
    bound: dict[str, int] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)
    """Declared local with `some`/`:=`/arguments: they shadow globals."""
    elsewhere: set[str] = field(default_factory=set)
    """Variables used by other statements of the current body (for `not`)."""

    def copy(self) -> Scope:
        return Scope(
            layout=self.layout,
            package=self.package,
            globals=self.globals,
            bound=dict(self.bound),
            declared=set(self.declared),
            elsewhere=set(self.elsewhere),
        )

    def is_local(self, name: str) -> bool:
        if name in self.bound or name in self.declared:
            return True
        return name not in ("input", "data") and name not in self.globals

    def bind(self, name: str) -> int:
        slot = self.layout.new_slot()
        self.bound[name] = slot
        self.declared.add(name)
        return slot


def term_vars(node: object) -> Iterator[str]:
    """Every variable name mentioned anywhere inside an AST node."""
    for found in ast.walk(node):
        if type(found) is ast.Var:
            yield found.name
