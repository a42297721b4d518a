"""Grammar rules -> `policy_engine.ast` nodes (used only by the parser modules).

Problems found while building nodes (a call on something that is not a name,
`else` after a partial rule...) raise `SyntaxProblem` with a position.
"""

from __future__ import annotations

import json
import re
from typing import Any

from policy_engine import ast
from policy_engine.parse_token import Token
from policy_engine.source import Span

__all__ = ["SyntaxProblem", "ToAst"]


class SyntaxProblem(Exception):
    """A syntax problem found while building the AST."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _terms(children: list[Any]) -> list[Any]:
    """Children without tokens and without absent optionals."""
    return [c for c in children if c is not None and not isinstance(c, Token)]


class ToAst:
    """Grammar rule -> AST node: each method takes the rule's position meta and children.

    Called by the parser's reductions (`parse_build`), children first.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        # ids of parenthesised expressions: `k, (v in xs) in ys` keeps its grouping.
        self.parenthesized: set[int] = set()

    def paren(self, meta: Any, ch: list[Any]) -> ast.Term:
        (inner,) = _terms(ch)
        self.parenthesized.add(id(inner))
        return inner  # type: ignore[no-any-return]

    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(file=self.file, line=1, column=1)
        return Span(
            file=self.file,
            line=meta.line,
            column=meta.column,
            end_line=meta.end_line,
            end_column=meta.end_column,
        )

    def _tspan(self, tok: Token) -> Span:
        return Span(
            file=self.file,
            line=tok.line or 1,
            column=tok.column or 1,
            end_line=tok.end_line or 0,
            end_column=tok.end_column or 0,
        )

    # ---- module structure ------------------------------------------------------

    def module(self, meta: Any, ch: list[Any]) -> ast.Module:
        package, *rest = ch
        imports = tuple(x for x in rest if isinstance(x, ast.Import))
        rules = tuple(x for x in rest if not isinstance(x, ast.Import))
        return ast.Module(span=self._span(meta), package=package, imports=imports, rules=rules)

    def query(self, meta: Any, ch: list[Any]) -> tuple[ast.Literal, ...]:
        return tuple(_terms(ch))

    def package_decl(self, meta: Any, ch: list[Any]) -> tuple[str, ...]:
        path: tuple[str, ...] = ch[0]
        return path

    def import_decl(self, meta: Any, ch: list[Any]) -> ast.Import:
        alias = str(ch[1]) if len(ch) > 1 and ch[1] is not None else None
        return ast.Import(span=self._span(meta), path=ch[0], alias=alias)

    def path_ref(self, meta: Any, ch: list[Token]) -> tuple[str, ...]:
        return tuple(_string_value(t) if t.type == "STRING" else str(t) for t in ch)

    def rule_ref(self, meta: Any, ch: list[Any]) -> list[Any]:
        # `p["q"]` names the same rule as `p.q`, except in last position where a
        # bracket keeps its partial-object reading (`p["k"] := 1`).
        parts = [str(c) if isinstance(c, Token) else c for c in ch]
        return [
            p.value if isinstance(p, ast.StringLit) and i < len(parts) - 1 else p
            for i, p in enumerate(parts)
        ]

    def call_args(self, meta: Any, ch: list[Any]) -> tuple[ast.Term, ...]:
        return tuple(c for c in ch if c is not None)

    def assign_op(self, meta: Any, ch: list[Token]) -> str:
        return str(ch[0])

    def value_head(self, meta: Any, ch: list[Any]) -> tuple[str, Any, Any, Any, Span]:
        ref, args, _op, value = ch
        if _op == "=" and value is not None:
            pass
        return ("value", ref, args, value, self._span(meta))

    def contains_head(self, meta: Any, ch: list[Any]) -> tuple[str, Any, Any, Any, Span]:
        ref, element = ch[0], ch[-1]
        return ("contains", ref, None, element, self._span(meta))

    def rule_body(self, meta: Any, ch: list[Any]) -> tuple[ast.Literal, ...]:
        body: tuple[ast.Literal, ...] = ch[0]
        return body

    def bare_body(self, meta: Any, ch: list[Any]) -> tuple[ast.Literal, ...]:
        raise SyntaxProblem(
            "rule bodies need the `if` keyword in Rego v1: write `p if { … }`",
            meta.line,
            meta.column,
        )

    def single_body(self, meta: Any, ch: list[Any]) -> tuple[ast.Literal, ...]:
        return (ch[0],)

    def braced_body(self, meta: Any, ch: list[Any]) -> tuple[ast.Literal, ...]:
        return tuple(_terms(ch))

    compr_body = braced_body

    def else_clause(self, meta: Any, ch: list[Any]) -> ast.Else:
        _op, value, body = ch
        return ast.Else(span=self._span(meta), value=value, body=body or ())

    def default_rule(self, meta: Any, ch: list[Any]) -> ast.DefaultRule:
        ref, args, _op, value = ch
        return ast.DefaultRule(
            span=self._span(meta), name=self._rule_name(_named(ref), meta), args=args, value=value
        )

    def _rule_name(self, ref: list[Any], meta: Any) -> tuple[str, ...]:
        if not all(isinstance(p, str) for p in ref):
            raise SyntaxProblem(
                "a rule name cannot contain brackets here; write `p.q` or `p[key] := value`",
                meta.line,
                meta.column,
            )
        return tuple(ref)

    @staticmethod
    def _general_rule(
        ref: list[Any], value: Any, contains: bool, body: ast.Body, span: Span
    ) -> ast.GeneralRule:
        prefix: list[str] = []
        for part in ref:
            if not isinstance(part, str):
                break
            prefix.append(part)
        keys = tuple(
            ast.StringLit(span=span, value=p) if isinstance(p, str) else p
            for p in ref[len(prefix) :]
        )
        return ast.GeneralRule(
            span=span, name=tuple(prefix), keys=keys, value=value, contains=contains, body=body
        )

    def regular_rule(self, meta: Any, ch: list[Any]) -> ast.Rule:
        (kind, ref, args, value, _hspan), body, *elses = ch
        span = self._span(meta)
        body = body or ()
        if elses and (kind != "value" or not all(isinstance(p, str) for p in ref)):
            raise SyntaxProblem(
                "`else` can only follow a complete rule or a function", meta.line, meta.column
            )
        if kind == "contains":
            if not all(isinstance(p, str) for p in ref):
                return self._general_rule(ref, value, True, body, span)
            return ast.PartialSetRule(
                span=span, name=self._rule_name(ref, meta), element=value, body=body
            )
        if args is not None:
            name = self._rule_name(_named(ref), meta)
            return ast.FunctionRule(
                span=span, name=name, args=args, value=value, body=body, elses=tuple(elses)
            )
        if not all(isinstance(p, str) for p in ref[:-1]):
            return self._general_rule(ref, value, False, body, span)
        if not isinstance(ref[-1], str):
            name = self._rule_name(ref[:-1], meta)
            key = ref[-1]
            return ast.PartialObjectRule(span=span, name=name, key=key, value=value, body=body)
        name = self._rule_name(ref, meta)
        return ast.CompleteRule(span=span, name=name, value=value, body=body, elses=tuple(elses))

    # ---- literals ------------------------------------------------------------------

    def literal(self, meta: Any, ch: list[Any]) -> ast.Literal:
        negated = bool(ch) and isinstance(ch[0], Token) and ch[0].type == "NOT"
        rest = ch[1:]
        expr, *withs = rest
        return ast.Literal(span=self._span(meta), negated=negated, expr=expr, withs=tuple(withs))

    def with_clause(self, meta: Any, ch: list[Any]) -> ast.With:
        target, value = ch
        if not isinstance(target, ast.Ref | ast.Var):
            raise SyntaxProblem(
                "`with` needs a reference such as `input.x` or `data.y`", meta.line, meta.column
            )
        return ast.With(span=self._span(meta), target=target, value=value)

    def assign(self, meta: Any, ch: list[Any]) -> ast.Assign:
        return ast.Assign(span=self._span(meta), target=ch[0], value=ch[1])

    def unify(self, meta: Any, ch: list[Any]) -> ast.Unify:
        return ast.Unify(span=self._span(meta), left=ch[0], right=ch[1])

    def keyval_membership(self, meta: Any, ch: list[Any]) -> ast.Membership:
        key, membership = _terms(ch)
        return _with_key(key, membership, meta, self.parenthesized)

    def some_expr(self, meta: Any, ch: list[Any]) -> ast.SomeVars | ast.SomeIn:
        span = self._span(meta)
        terms = _terms(ch)
        if isinstance(terms[-1], ast.Membership) and terms[-1].key is None:
            if len(terms) > 2:
                raise SyntaxProblem(
                    "`some` takes at most a key and a value: `some k, v in xs`",
                    meta.line,
                    meta.column,
                )
            m = (
                terms[-1]
                if len(terms) == 1
                else _with_key(terms[0], terms[-1], meta, self.parenthesized)
            )
            return ast.SomeIn(span=span, key=m.key, value=m.value, collection=m.collection)
        for t in terms:
            if not isinstance(t, ast.Var):
                raise SyntaxProblem(
                    "`some` declares variable names: `some x, y` or `some x in xs`",
                    meta.line,
                    meta.column,
                )
        return ast.SomeVars(span=span, names=tuple(terms))

    def every_expr(self, meta: Any, ch: list[Any]) -> ast.Every:
        names = [c for c in ch if isinstance(c, Token) and c.type == "NAME"]
        domain, body = _terms(ch)
        vars_ = [ast.Var(span=self._tspan(n), name=str(n)) for n in names]
        key = vars_[0] if len(vars_) == 2 else None
        return ast.Every(span=self._span(meta), key=key, value=vars_[-1], domain=domain, body=body)

    # ---- terms ------------------------------------------------------------------------

    def operators(self, meta: Any, ch: list[Any]) -> ast.Term:
        """Group `a op b op c …` by precedence (all operators associate left)."""
        operands: list[ast.Term] = [ch[0]]
        ops: list[Token] = []
        for op, operand in zip(ch[1::2], ch[2::2], strict=True):
            while ops and _PRECEDENCE[ops[-1].type] >= _PRECEDENCE[op.type]:
                self._reduce(operands, ops)
            ops.append(op)
            operands.append(operand)
        while ops:
            self._reduce(operands, ops)
        return operands[0]

    def _reduce(self, operands: list[ast.Term], ops: list[Token]) -> None:
        op = ops.pop()
        right = operands.pop()
        left = operands.pop()
        start, end = left.span, right.span
        span = Span(
            file=self.file,
            line=start.line,
            column=start.column,
            end_line=end.end_line,
            end_column=end.end_column,
        )
        if op.type == "IN":
            operands.append(ast.Membership(span=span, key=None, value=left, collection=right))
        else:
            operands.append(ast.BinOp(span=span, op=str(op), left=left, right=right))

    def unary(self, meta: Any, ch: list[Any]) -> ast.Term:
        op, operand = ch
        # OPA's grammar: `-` prefixes a number, a variable, a reference or a call,
        # nothing else (`+1`, `--1`, `-(1)`, `-"a"`, `-[1]` are parse errors).
        if str(op) == "+":
            raise SyntaxProblem(
                "unexpected `+`: a number is written without a sign", meta.line, meta.column
            )
        parenthesized = id(operand) in self.parenthesized
        if isinstance(operand, ast.NumberLit) and not operand.text.startswith("-"):
            if not parenthesized:
                return ast.NumberLit(span=self._span(meta), text="-" + operand.text)
        elif (
            isinstance(operand, ast.Var | ast.Ref | ast.Call)
            and not parenthesized
            and (not isinstance(operand, ast.Ref) or isinstance(operand.head, ast.Var))
        ):
            return ast.UnaryMinus(span=self._span(meta), operand=operand)
        raise SyntaxProblem(
            "unexpected term after `-`: it negates a number, a variable, a reference "
            "or a call; write `0 - (…)` to negate anything else",
            meta.line,
            meta.column + 1,
        )

    def _extend(self, meta: Any, base: ast.Term, item: ast.Term) -> ast.Ref:
        if isinstance(base, ast.Ref):
            return ast.Ref(span=self._span(meta), head=base.head, path=(*base.path, item))
        return ast.Ref(span=self._span(meta), head=base, path=(item,))

    def dot(self, meta: Any, ch: list[Any]) -> ast.Ref:
        base, name = ch
        return self._extend(meta, base, ast.StringLit(span=self._tspan(name), value=str(name)))

    def index(self, meta: Any, ch: list[Any]) -> ast.Ref:
        return self._extend(meta, ch[0], ch[1])

    def call(self, meta: Any, ch: list[Any]) -> ast.Term:
        target, *args = ch
        name = _call_name(target)
        if name is None:
            raise SyntaxProblem(
                "only named functions can be called, like `f(x)` or `data.pkg.f(x)`",
                meta.line,
                meta.column,
            )
        real_args = tuple(a for a in args if a is not None)
        if name == ("set",) and not real_args:
            return ast.SetTerm(span=self._span(meta), items=())
        return ast.Call(span=self._span(meta), name=name, args=real_args)

    def contains_call(self, meta: Any, ch: list[Any]) -> ast.Call:
        args = tuple(a for a in ch[1:] if a is not None)
        return ast.Call(span=self._span(meta), name=("contains",), args=args)

    def var(self, meta: Any, ch: list[Token]) -> ast.Var:
        return ast.Var(span=self._span(meta), name=str(ch[0]))

    def number(self, meta: Any, ch: list[Token]) -> ast.NumberLit:
        return ast.NumberLit(span=self._span(meta), text=str(ch[0]))

    def string(self, meta: Any, ch: list[Token]) -> ast.StringLit:
        return ast.StringLit(span=self._span(meta), value=_string_value(ch[0]))

    def raw_string(self, meta: Any, ch: list[Token]) -> ast.StringLit:
        return ast.StringLit(span=self._span(meta), value=str(ch[0])[1:-1], raw=True)

    def true(self, meta: Any, ch: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(span=self._span(meta), value=True)

    def false(self, meta: Any, ch: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(span=self._span(meta), value=False)

    def null(self, meta: Any, ch: list[Any]) -> ast.NullLit:
        return ast.NullLit(span=self._span(meta))

    def array(self, meta: Any, ch: list[Any]) -> ast.ArrayTerm:
        return ast.ArrayTerm(span=self._span(meta), items=tuple(c for c in ch if c is not None))

    def set(self, meta: Any, ch: list[Any]) -> ast.SetTerm:
        return ast.SetTerm(span=self._span(meta), items=tuple(c for c in ch if c is not None))

    def object(self, meta: Any, ch: list[Any]) -> ast.ObjectTerm:
        return ast.ObjectTerm(span=self._span(meta), items=tuple(c for c in ch if c is not None))

    def object_item(self, meta: Any, ch: list[Any]) -> ast.ObjectItem:
        return ast.ObjectItem(span=self._span(meta), key=ch[0], value=ch[1])

    def array_compr(self, meta: Any, ch: list[Any]) -> ast.ArrayCompr:
        term, body = _terms(ch)
        return ast.ArrayCompr(span=self._span(meta), term=term, body=body)

    def set_compr(self, meta: Any, ch: list[Any]) -> ast.SetCompr:
        term, body = _terms(ch)
        return ast.SetCompr(span=self._span(meta), term=term, body=body)

    def object_compr(self, meta: Any, ch: list[Any]) -> ast.ObjectCompr:
        key, value, body = _terms(ch)
        return ast.ObjectCompr(span=self._span(meta), key=key, value=value, body=body)


_PRECEDENCE = {"IN": 1, "RELOP": 2, "BAR": 3, "AMP": 4, "ADDOP": 5, "MULOP": 6}


def _with_key(
    key: ast.Term, membership: ast.Term, meta: Any, parenthesized: set[int]
) -> ast.Membership:
    """`k, v in xs`: the key joins the innermost left `in` (`k, v in xs in ys` is
    `(k, v in xs) in ys`, as in OPA)."""
    if not isinstance(membership, ast.Membership) or membership.key is not None:
        raise SyntaxProblem(
            "a `,` here must be followed by a membership test: `key, value in collection`",
            meta.line,
            meta.column,
        )
    inner = membership.value
    if isinstance(inner, ast.Membership) and inner.key is None and id(inner) not in parenthesized:
        return ast.Membership(
            span=membership.span,
            key=None,
            value=_with_key(key, inner, meta, parenthesized),
            collection=membership.collection,
        )
    return ast.Membership(
        span=key.span, key=key, value=membership.value, collection=membership.collection
    )


def _string_value(tok: Token) -> str:
    """A double-quoted literal's value (JSON escapes; raw control characters allowed)."""
    try:
        value: str = json.loads(str(tok), strict=False)
    except ValueError as exc:
        raise SyntaxProblem(
            f"invalid string literal: {exc}", tok.line or 1, tok.column or 1
        ) from None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone `\ud800`-style escape: replace it (U+FFFD) as Go's decoder does.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _call_name(target: ast.Term) -> tuple[str, ...] | None:
    if isinstance(target, ast.Var):
        return (target.name,)
    if isinstance(target, ast.Ref) and isinstance(target.head, ast.Var):
        parts = [target.head.name]
        for item in target.path:
            if not (isinstance(item, ast.StringLit) and _IDENT.match(item.value)):
                return None
            parts.append(item.value)
        return tuple(parts)
    return None


def _named(ref: list[Any]) -> list[Any]:
    """A function's or default's name: a bracketed string in any position is a name part."""
    return [p.value if isinstance(p, ast.StringLit) else p for p in ref]
