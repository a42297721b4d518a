"""`policy-engine fmt`: print a module in one canonical layout.

The layout (like `opa fmt`): tabs for indentation; `package`, then imports,
then rules in source order; `:=` for every assignment head; a body with one
statement written on the head's line stays there (`p if x`), any other body
is braced with one statement per line; `} else := … if {` chains; binary
operators with one space around them and parentheses only where precedence
needs them. Collections and comprehensions that span several lines in the
source stay multi-line (one item per line, trailing comma); the others are
printed on one line. Blank lines between statements are kept (at most one).

Comments are not in the AST, so they are placed back by line: the printer
tags every output line with the source line it came from; a standalone
comment goes before the first output line from a later source line, a
trailing comment goes at the end of the output line covering its line.

INVARIANT: `format_text` is idempotent and the result parses to the same
AST as the input, spans aside (tested over every `.rego` file in the repo).
"""

from __future__ import annotations

import json
import re

from policy_engine import ast
from policy_engine.errors import PARSE_ERROR, Diagnostic, PolicyError
from policy_engine.parser import parse_module
from policy_engine.tooling.comments import Comment, scan_comments

__all__ = ["format_module", "format_text"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = frozenset(
    {"package", "import", "default", "if", "else", "contains", "some", "every", "in", "not",
     "with", "as", "true", "false", "null"}
)  # fmt: skip
_MARKS = ("\x00", "\x01", "\x02", "\ue000", "\ue001", "\uf8ff")
"""Candidates for the line-tag marker; one that does not occur in the text is used."""
_PREC = {
    "==": 2, "!=": 2, "<": 2, "<=": 2, ">": 2, ">=": 2,
    "|": 3, "&": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}  # fmt: skip
_POSTFIX = 8
_OPENERS = ("{", "[", "(", "|")
_CLOSERS = ("}", "]", ")")


def format_text(text: str, file: str = "<policy>") -> str:
    """The canonical form of a policy text; raises `PolicyError` when it does not parse."""
    module = parse_module(text, file)
    return format_module(module, text)


def format_module(module: ast.Module, source: str) -> str:
    """Print `module`, placing back the comments and blank lines found in `source`."""
    mark = next((m for m in _MARKS if m not in source), None)
    if mark is None:
        raise PolicyError(
            [Diagnostic(code=PARSE_ERROR, message="the file uses every character fmt could tag "
                        "lines with (U+0000-U+0002, U+E000, U+E001, U+F8FF); remove one of them",
                        file=module.span.file, line=1, column=1)]
        )  # fmt: skip
    printer = _Printer(mark)
    records = _records(printer.module(module, _package_line(source)), mark)
    records = _with_comments(records, scan_comments(source))
    # Lines as the parser counts them: only "\n" ends one (str.splitlines would also
    # split at "\r", "\x85" or U+2028, even inside a string literal).
    return _join(records, source.split("\n"))


# ---- output lines tagged with source lines ------------------------------------------------


class _Record:
    __slots__ = ("comment", "src", "text", "top")

    def __init__(self, text: str, src: int, comment: bool = False, top: bool = False) -> None:
        self.text = text
        self.src = src
        self.comment = comment
        self.top = top
        """Starts a top-level statement (package, import block, rule): a blank line before."""

    @property
    def indent(self) -> int:
        return len(self.text) - len(self.text.lstrip("\t"))


def _records(printed: str, mark: str) -> list[_Record]:
    """Split the printer's output at its tagged line breaks (a raw string may hold others)."""
    records: list[_Record] = []
    for chunk in printed.split("\n" + mark)[1:]:
        src, text = chunk.split(mark, 1)
        records.append(_Record(text, int(src.rstrip("!")), top=src.endswith("!")))
    return records


def _with_comments(records: list[_Record], comments: list[Comment]) -> list[_Record]:
    out = list(records)
    for comment in comments:
        if comment.standalone:
            _insert_standalone(out, comment)
        else:
            _attach_trailing(out, comment)
    return out


def _insert_standalone(out: list[_Record], comment: Comment) -> None:
    for position, record in enumerate(out):
        if not record.comment and record.src > comment.line:
            indent = record.indent + (1 if record.text.lstrip().startswith(_CLOSERS) else 0)
            out.insert(position, _Record("\t" * indent + comment.text, comment.line, True))
            return
    out.append(_Record(comment.text, comment.line, True))


def _attach_trailing(out: list[_Record], comment: Comment) -> None:
    target = None
    for record in out:
        if not record.comment and record.src <= comment.line:
            target = record
    if target is None:
        out.insert(0, _Record(comment.text, comment.line, True))
        return
    target.text = f"{target.text} {comment.text}"


def _join(records: list[_Record], source_lines: list[str]) -> str:
    lines: list[str] = []
    previous: _Record | None = None
    separated = _separated(records, source_lines)
    for position, record in enumerate(records):
        if previous is not None and (
            position in separated or _blank_between(previous, record, source_lines)
        ):
            lines.append("")
        lines.append(record.text.rstrip())
        previous = record
    return "\n".join(lines) + "\n"


def _separated(records: list[_Record], source_lines: list[str]) -> set[int]:
    """Positions that get a blank line before them: each top-level statement, or the
    comment block written directly above it."""
    out: set[int] = set()
    for position, record in enumerate(records):
        if not record.top:
            continue
        start = position
        while (
            start > 0
            and records[start - 1].comment
            and records[start - 1].indent == 0
            and not _blank_between(records[start - 1], records[start], source_lines)
        ):
            start -= 1
        if start > 0:
            out.add(start)
    return out


def _blank_between(before: _Record, after: _Record, source_lines: list[str]) -> bool:
    if before.text.rstrip().endswith(_OPENERS) and not before.comment:
        return False
    if after.text.lstrip().startswith(_CLOSERS):
        return False
    gap = source_lines[before.src : after.src - 1]
    return any(not line.strip() for line in gap)


def _package_line(source: str) -> int:
    for number, line in enumerate(source.split("\n"), start=1):
        if line.lstrip().startswith("package"):
            return number
    return 1


# ---- the printer ------------------------------------------------------------------------------


def _path(parts: tuple[str, ...]) -> str:
    out = parts[0]
    for part in parts[1:]:
        out += f".{part}" if _IDENT.match(part) and part not in _KEYWORDS else f"[{_string(part)}]"
    return out


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _multiline(node: ast.Term) -> bool:
    return node.span.end_line > node.span.line


class _Printer:
    """AST -> text with line tags; one method per node kind."""

    def __init__(self, mark: str) -> None:
        self.mark = mark

    def nl(self, indent: int, src: int, top: bool = False) -> str:
        """A line break whose next output line comes from source line `src`."""
        return f"\n{self.mark}{src}{'!' if top else ''}{self.mark}" + "\t" * indent

    def module(self, module: ast.Module, package_line: int) -> str:
        out = self.nl(0, package_line, top=True) + "package " + _path(module.package)
        for position, imp in enumerate(module.imports):
            alias = f" as {imp.alias}" if imp.alias else ""
            out += (
                self.nl(0, imp.span.line, top=position == 0) + "import " + _path(imp.path) + alias
            )
        for rule in module.rules:
            out += self.nl(0, rule.span.line, top=True) + self.rule(rule)
        return out

    # ---- rules -----------------------------------------------------------------------------

    def rule(self, rule: ast.Rule) -> str:
        name = _path(rule.name)
        if isinstance(rule, ast.GeneralRule):
            head = name + "".join(self.ref_key(key) for key in rule.keys)
            if rule.contains:
                head += f" contains {self.expr(rule.value, 0)}" if rule.value is not None else ""
            else:
                head += self.value_part(rule.value)
            return head + self.body_of(rule.body, rule.span.line, rule.span.end_line)
        if isinstance(rule, ast.DefaultRule):
            args = f"({self.args(rule.args)})" if rule.args is not None else ""
            return f"default {name}{args} := {self.expr(rule.value, 0)}"
        if isinstance(rule, ast.PartialSetRule):
            head = f"{name} contains {self.expr(rule.element, 0)}"
            return head + self.body_of(rule.body, rule.span.line, rule.span.end_line)
        if isinstance(rule, ast.PartialObjectRule):
            head = f"{name}[{self.expr(rule.key, 0)}]" + self.value_part(rule.value)
            return head + self.body_of(rule.body, rule.span.line, rule.span.end_line)
        if isinstance(rule, ast.FunctionRule):
            head = f"{name}({self.args(rule.args)})" + self.value_part(rule.value)
        else:
            head = name + self.value_part(rule.value)
        end = rule.elses[0].span.line if rule.elses else rule.span.end_line
        body, braced = self.clause_body(rule.body, rule.span.line, end)
        out = head + body
        for position, clause in enumerate(rule.elses):
            following = rule.elses[position + 1 :]
            end = following[0].span.line if following else rule.span.end_line
            out += " " if braced else self.nl(0, clause.span.line)
            body, braced = self.clause_body(clause.body, clause.span.line, end)
            out += "else" + self.value_part(clause.value) + body
        return out

    def ref_key(self, key: ast.Term) -> str:
        """`.name` for a plain string key of a rule head, `[term]` for anything else."""
        if (
            isinstance(key, ast.StringLit)
            and _IDENT.match(key.value)
            and key.value not in _KEYWORDS
        ):
            return f".{key.value}"
        return f"[{self.expr(key, 0)}]"

    def value_part(self, value: ast.Term | None) -> str:
        return "" if value is None else f" := {self.expr(value, 0)}"

    def args(self, args: tuple[ast.Term, ...]) -> str:
        return ", ".join(self.expr(a, 1) for a in args)

    def body_of(self, body: ast.Body, head_line: int, end_line: int) -> str:
        return self.clause_body(body, head_line, end_line)[0]

    def clause_body(self, body: ast.Body, head_line: int, end_line: int) -> tuple[str, bool]:
        """` if x` for a one-statement body written on the head's line, else a braced body.

        The flag says whether the body was braced (an `else` then follows the `}`).
        """
        if not body:
            return "", False
        if len(body) == 1 and body[0].span.line == head_line:
            single = self.literal(body[0], 0)
            if self.mark not in single:
                return " if " + single, False
        return " if {" + self.block(body, 1) + self.nl(0, end_line) + "}", True

    def block(self, body: ast.Body, indent: int) -> str:
        return "".join(self.nl(indent, lit.span.line) + self.literal(lit, indent) for lit in body)

    # ---- statements ------------------------------------------------------------------------

    def literal(self, lit: ast.Literal, indent: int) -> str:
        text = ("not " if lit.negated else "") + self.statement(lit.expr, indent)
        for modifier in lit.withs:
            target = self.expr(modifier.target, _POSTFIX, indent)
            text += f" with {target} as {self.expr(modifier.value, 1, indent)}"
        return text

    def statement(self, expr: ast.Expr, indent: int) -> str:
        if isinstance(expr, ast.Assign):
            return f"{self.expr(expr.target, 1, indent)} := {self.expr(expr.value, 1, indent)}"
        if isinstance(expr, ast.Unify):
            return f"{self.expr(expr.left, 1, indent)} = {self.expr(expr.right, 1, indent)}"
        if isinstance(expr, ast.SomeVars):
            return "some " + ", ".join(v.name for v in expr.names)
        if isinstance(expr, ast.SomeIn):
            terms = [expr.key, expr.value] if expr.key is not None else [expr.value]
            declared = ", ".join(self.expr(t, 2, indent) for t in terms)
            return f"some {declared} in {self.expr(expr.collection, 2, indent)}"
        if isinstance(expr, ast.Every):
            names = f"{expr.key.name}, {expr.value.name}" if expr.key else expr.value.name
            domain = self.expr(expr.domain, 2, indent)
            inner = self.block(expr.body, indent + 1)
            return (
                f"every {names} in {domain} {{" + inner + self.nl(indent, expr.span.end_line) + "}"
            )
        return self.expr(expr, 0, indent)

    # ---- terms -----------------------------------------------------------------------------

    def expr(self, term: ast.Term, min_prec: int, indent: int = 0, item: bool = False) -> str:
        """`term` printed where the grammar needs at least precedence `min_prec`.

        `item` is set inside collection items and comprehension heads, where an
        unparenthesised `|` would start a comprehension.
        """
        prec, text = self.term(term, indent, item)
        if prec < min_prec or (item and isinstance(term, ast.BinOp) and term.op == "|"):
            return f"({text})"
        return text

    def term(self, term: ast.Term, indent: int, item: bool) -> tuple[int, str]:
        if isinstance(term, ast.BinOp):
            prec = _PREC[term.op]
            left = self.expr(term.left, prec, indent, item)
            right = self.expr(term.right, prec + 1, indent, item)
            return prec, f"{left} {term.op} {right}"
        if isinstance(term, ast.Membership):
            if term.key is None:
                value = self.expr(term.value, 1, indent, item)
                return 1, f"{value} in {self.expr(term.collection, 2, indent, item)}"
            parts = [self.expr(t, 2, indent, item) for t in (term.key, term.value)]
            return 0, f"{parts[0]}, {parts[1]} in {self.expr(term.collection, 2, indent, item)}"
        if isinstance(term, ast.UnaryMinus):
            return 7, "-" + self.expr(term.operand, 7, indent, item)
        if isinstance(term, ast.NumberLit):
            return (7 if term.text.startswith("-") else _POSTFIX), term.text
        return _POSTFIX, self.primary(term, indent)

    def primary(self, term: ast.Term, indent: int) -> str:
        if isinstance(term, ast.NullLit):
            return "null"
        if isinstance(term, ast.BoolLit):
            return "true" if term.value else "false"
        if isinstance(term, ast.StringLit):
            if term.raw and "`" not in term.value:
                return f"`{term.value}`"
            return _string(term.value)
        if isinstance(term, ast.Var):
            return term.name
        if isinstance(term, ast.Ref):
            return self.ref(term, indent)
        if isinstance(term, ast.Call):
            return f"{'.'.join(term.name)}({', '.join(self.expr(a, 1, indent) for a in term.args)})"
        if isinstance(term, ast.ArrayTerm | ast.SetTerm | ast.ObjectTerm):
            return self.collection(term, indent)
        if isinstance(term, ast.ArrayCompr | ast.SetCompr | ast.ObjectCompr):
            return self.comprehension(term, indent)
        raise TypeError(f"cannot format {type(term).__name__}")  # pragma: no cover

    def ref(self, ref: ast.Ref, indent: int) -> str:
        out = self.expr(ref.head, _POSTFIX, indent)
        for part in ref.path:
            if (
                isinstance(part, ast.StringLit)
                and not part.raw
                and _IDENT.match(part.value)
                and part.value not in _KEYWORDS
            ):
                out += "." + part.value
                continue
            out += f"[{self.expr(part, 1, indent)}]"
        return out

    def collection(self, term: ast.ArrayTerm | ast.SetTerm | ast.ObjectTerm, indent: int) -> str:
        if isinstance(term, ast.ObjectTerm):
            inner = indent + 1
            items = [
                f"{self.expr(i.key, 1, inner, True)}: {self.expr(i.value, 1, inner, True)}"
                for i in term.items
            ]
            lines = [i.span.line for i in term.items]
            opener, closer = "{", "}"
        else:
            if isinstance(term, ast.SetTerm) and not term.items:
                return "set()"
            items = [self.expr(t, 1, indent + 1, True) for t in term.items]
            lines = [t.span.line for t in term.items]
            opener, closer = ("[", "]") if isinstance(term, ast.ArrayTerm) else ("{", "}")
        if not items:
            return opener + closer
        if _multiline(term) or any(self.mark in i for i in items):
            body = "".join(
                self.nl(indent + 1, line) + i + "," for i, line in zip(items, lines, strict=True)
            )
            return opener + body + self.nl(indent, term.span.end_line) + closer
        return opener + ", ".join(items) + closer

    def comprehension(
        self, term: ast.ArrayCompr | ast.SetCompr | ast.ObjectCompr, indent: int
    ) -> str:
        if isinstance(term, ast.ObjectCompr):
            key = self.expr(term.key, 1, indent, True)
            head = f"{key}: {self.expr(term.value, 1, indent, True)}"
            opener, closer = "{", "}"
        else:
            head = self.expr(term.term, 1, indent, True)
            opener, closer = ("[", "]") if isinstance(term, ast.ArrayCompr) else ("{", "}")
        statements = [self.literal(lit, indent + 1) for lit in term.body]
        if _multiline(term) or any(self.mark in s for s in statements):
            body = self.block(term.body, indent + 1)
            return f"{opener}{head} |" + body + self.nl(indent, term.span.end_line) + closer
        return f"{opener}{head} | {'; '.join(statements)}{closer}"
