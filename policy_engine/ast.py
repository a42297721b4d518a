"""The policy AST: what the parser (and the YAML lowering) produce.

Every node is a frozen, keyword-only msgspec Struct with a `span`; unions are
tagged by the class name so a tree round-trips through `msgspec.json`.

Node set:

- `Module(package, imports, rules)` — one source file. `package` is a path of
  names (`("gateway", "iam")`).
- `Import(path, alias)` — `import data.x as y`, `import input.x`,
  `import rego.v1`, `import future.keywords.in`.
- Rules (`Rule` union), each named by a path relative to the package
  (`("p",)`, or `("p", "q", "r")` for ref heads):
  `CompleteRule` (`p := v if {…} else := w if {…}`, `p if {…}`, `p := v`),
  `DefaultRule` (`default p := v`, `default f(_) := v`),
  `PartialSetRule` (`p contains x if {…}`),
  `PartialObjectRule` (`p[k] := v if {…}`),
  `FunctionRule` (`f(x, [a, b]) := y if {…} else := …`),
  `GeneralRule` (a general ref head: `p[q].r := v if {…}`, `p[q] contains x if {…}`;
  `name` is the static prefix, `keys` the rest of the head's reference).
  An empty body (`()`) means "always"; a missing value means `true`.
- `Literal(negated, expr, withs)` — one statement of a body; `expr` is an
  `Expr`: a term, `Assign` (`:=`), `Unify` (`=`), `SomeVars` (`some x, y`),
  `SomeIn` (`some k, v in xs`) or `Every` (`every k, v in xs {…}`).
- Terms (`Term` union): scalars `NullLit BoolLit NumberLit StringLit`
  (numbers keep their source text so they stay exact), `Var`, `Ref` (a head
  term followed by a path of terms: `input.a[x]` is
  `Ref(Var(input), (StringLit(a), Var(x)))`), collections `ArrayTerm
  ObjectTerm SetTerm`, comprehensions `ArrayCompr SetCompr ObjectCompr`,
  `Call` (name path + args; operators written as symbols stay `BinOp`),
  `BinOp` (`+ - * / % & | == != < <= > >=`), `UnaryMinus`, `Membership`
  (`x in xs`, `k, v in xs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import msgspec

from policy_engine.source import Span

__all__ = [
    "CHILDREN",
    "CHILD_FIELDS",
    "ArrayCompr",
    "ArrayTerm",
    "Assign",
    "BinOp",
    "Body",
    "BoolLit",
    "Call",
    "CompleteRule",
    "DefaultRule",
    "Else",
    "Every",
    "Expr",
    "FunctionRule",
    "GeneralRule",
    "Import",
    "Literal",
    "Membership",
    "Module",
    "NullLit",
    "NumberLit",
    "ObjectCompr",
    "ObjectItem",
    "ObjectTerm",
    "PartialObjectRule",
    "PartialSetRule",
    "Ref",
    "Rule",
    "SetCompr",
    "SetTerm",
    "SomeIn",
    "SomeVars",
    "StringLit",
    "Term",
    "UnaryMinus",
    "Unify",
    "Var",
    "With",
    "walk",
]


class _Node(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False):
    # gc=False: the collector does not track nodes. A tree is frozen and built
    # bottom up from names, flags, tuples and other nodes, so it can never be
    # part of a reference cycle; tracking it only made every collection walk it
    # (a loaded policy keeps its AST for as long as the engine lives).
    span: Span


# ---- terms -----------------------------------------------------------------


class NullLit(_Node, frozen=True, kw_only=True, tag=True):
    pass


class BoolLit(_Node, frozen=True, kw_only=True, tag=True):
    value: bool


class NumberLit(_Node, frozen=True, kw_only=True, tag=True):
    text: str
    """The number as written (`-1.50`, `1e400`); exact, converted by the compiler."""


class StringLit(_Node, frozen=True, kw_only=True, tag=True):
    value: str
    raw: bool = False
    """Written as a back-quoted raw string."""


class Var(_Node, frozen=True, kw_only=True, tag=True):
    name: str


class Ref(_Node, frozen=True, kw_only=True, tag=True):
    head: Term
    path: tuple[Term, ...]


class ArrayTerm(_Node, frozen=True, kw_only=True, tag=True):
    items: tuple[Term, ...]


class ObjectItem(_Node, frozen=True, kw_only=True, tag=True):
    key: Term
    value: Term


class ObjectTerm(_Node, frozen=True, kw_only=True, tag=True):
    items: tuple[ObjectItem, ...]


class SetTerm(_Node, frozen=True, kw_only=True, tag=True):
    items: tuple[Term, ...]
    """Empty for `set()`."""


class ArrayCompr(_Node, frozen=True, kw_only=True, tag=True):
    term: Term
    body: Body


class SetCompr(_Node, frozen=True, kw_only=True, tag=True):
    term: Term
    body: Body


class ObjectCompr(_Node, frozen=True, kw_only=True, tag=True):
    key: Term
    value: Term
    body: Body


class Call(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    """`("count",)`, `("object", "get")`, `("data", "pkg", "f")`."""
    args: tuple[Term, ...]


class BinOp(_Node, frozen=True, kw_only=True, tag=True):
    op: str
    """One of `+ - * / % & | == != < <= > >=`."""
    left: Term
    right: Term


class UnaryMinus(_Node, frozen=True, kw_only=True, tag=True):
    operand: Term


class Membership(_Node, frozen=True, kw_only=True, tag=True):
    key: Term | None
    """The `k` of `k, v in xs`; None for `v in xs`."""
    value: Term
    collection: Term


Term: TypeAlias = (
    NullLit
    | BoolLit
    | NumberLit
    | StringLit
    | Var
    | Ref
    | ArrayTerm
    | ObjectTerm
    | SetTerm
    | ArrayCompr
    | SetCompr
    | ObjectCompr
    | Call
    | BinOp
    | UnaryMinus
    | Membership
)

# ---- body expressions --------------------------------------------------------


class Assign(_Node, frozen=True, kw_only=True, tag=True):
    target: Term
    value: Term


class Unify(_Node, frozen=True, kw_only=True, tag=True):
    left: Term
    right: Term


class SomeVars(_Node, frozen=True, kw_only=True, tag=True):
    names: tuple[Var, ...]


class SomeIn(_Node, frozen=True, kw_only=True, tag=True):
    key: Term | None
    value: Term
    collection: Term


class Every(_Node, frozen=True, kw_only=True, tag=True):
    key: Var | None
    value: Var
    domain: Term
    body: Body


Expr: TypeAlias = Term | Assign | Unify | SomeVars | SomeIn | Every


class With(_Node, frozen=True, kw_only=True, tag=True):
    target: Term
    """A `Ref` (or `Var`) rooted at `input` or `data`."""
    value: Term


class Literal(_Node, frozen=True, kw_only=True, tag=True):
    negated: bool = False
    expr: Expr
    withs: tuple[With, ...] = ()


Body: TypeAlias = tuple[Literal, ...]

# ---- rules ---------------------------------------------------------------------


class Else(_Node, frozen=True, kw_only=True, tag=True):
    value: Term | None
    """None means `true`."""
    body: Body


class CompleteRule(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    value: Term | None
    """None means `true` (`p if {…}`)."""
    body: Body
    elses: tuple[Else, ...] = ()


class DefaultRule(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    args: tuple[Term, ...] | None
    """Present for `default f(_) := v`."""
    value: Term


class PartialSetRule(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    element: Term
    body: Body


class PartialObjectRule(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    key: Term
    value: Term | None
    """None means `true`."""
    body: Body


class FunctionRule(_Node, frozen=True, kw_only=True, tag=True):
    name: tuple[str, ...]
    args: tuple[Term, ...]
    value: Term | None
    """None means `true`."""
    body: Body
    elses: tuple[Else, ...] = ()


class GeneralRule(_Node, frozen=True, kw_only=True, tag=True):
    """A rule whose head reference has a variable or bracket before its last segment.

    `p[q].r := i if …` is `name=("p",)`, `keys=(Var(q), StringLit(r))`, `value=i`.
    Its group's value is the object built from every solution's key path.
    """

    name: tuple[str, ...]
    keys: tuple[Term, ...]
    value: Term | None
    """None means `true`; the element for `contains`."""
    contains: bool = False
    """`p[q] contains x`: the leaf at the key path is a set collecting the values."""
    body: Body


Rule: TypeAlias = (
    CompleteRule | DefaultRule | PartialSetRule | PartialObjectRule | FunctionRule | GeneralRule
)


class Import(_Node, frozen=True, kw_only=True, tag=True):
    path: tuple[str, ...]
    """`("data", "x")`, `("rego", "v1")`, `("future", "keywords", "in")`."""
    alias: str | None = None


class Module(_Node, frozen=True, kw_only=True, tag=True):
    package: tuple[str, ...]
    imports: tuple[Import, ...] = ()
    rules: tuple[Rule, ...] = ()


# ---- walking -------------------------------------------------------------------------

# Each node class's fields that may hold nodes (all but `span`), last first (the
# order `walk` pushes them so that it visits them first to last).
CHILD_FIELDS: Final[Mapping[type, tuple[str, ...]]] = MappingProxyType(
    {
        kind: tuple(name for name in reversed(kind.__struct_fields__) if name != "span")
        for kind in _Node.__subclasses__()
    }
)


# Annotations of fields that never hold a node (names, flags, texts): `walk` skips them.
_SCALAR_PARTS = frozenset({"str", "bool", "int", "None", "tuple[str, ...]"})


def _children_getter(kind: type) -> tuple[bool, Callable[[Any], Any] | None]:
    """(one field, getter): the values of `kind`'s fields that may hold nodes, last first."""
    annotations = getattr(kind, "__annotations__", {})
    fields = [
        name
        for name in CHILD_FIELDS[kind]
        if not {part.strip() for part in str(annotations.get(name, "")).split("|")} <= _SCALAR_PARTS
    ]
    if not fields:
        return True, None
    if len(fields) == 1:
        return True, attrgetter(fields[0])
    return False, attrgetter(*fields)


# Per node class: (its getter returns one value, not a tuple; the getter, or None for a
# class with no field that holds nodes). The fields are `CHILD_FIELDS`', last first.
CHILDREN: Final[Mapping[type, tuple[bool, Callable[[Any], Any] | None]]] = MappingProxyType(
    {kind: _children_getter(kind) for kind in CHILD_FIELDS}
)


def walk(root: object, ref_heads: bool = True) -> Iterator[_Node]:
    """Every node in `root` (a node or a tuple of them), parents first, left to right.

    With `ref_heads=False` the `Var` head of a reference is not visited on its
    own (in `input.x` the `input` is part of the reference, not a use).
    Iterative, so it costs one step per node and no recursion.
    """
    stack: list[Any] = [root]
    pop, push, extend = stack.pop, stack.append, stack.extend
    children = CHILDREN.get
    while stack:
        node = pop()
        kind = type(node)
        if kind is tuple:
            extend(reversed(node))
            continue
        plan = children(kind)
        if plan is None:
            continue  # None (an absent optional part)
        yield node
        if not ref_heads and kind is Ref and type(node.head) is Var:
            push(node.path)
            continue
        one, getter = plan
        if getter is None:
            continue
        if one:
            push(getter(node))
        else:
            extend(getter(node))
