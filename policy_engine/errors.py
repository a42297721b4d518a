"""The policy engine's one error family.

```
PolicyEngineError            base of everything the engine raises, has `.code`
├── PolicyError              loading failed: parse, check or compile problems;
│                            `.diagnostics` lists every problem found
└── EvalError                evaluation failed (conflict, strict type/builtin error,
                             step limit); one problem, `.diagnostic`
```

Codes are stable snake_case strings (OPA's names) so callers and tests can
match on them; messages are for people: one lowercase sentence saying what is
wrong and, where it helps, how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from policy_engine.source import Span, snippet

__all__ = [
    "BUILTIN_ERROR",
    "COMPILE_ERROR",
    "CONFLICT_ERROR",
    "EVAL_TYPE_ERROR",
    "LIMIT_ERROR",
    "PARSE_ERROR",
    "RECURSION_ERROR",
    "TYPE_ERROR",
    "UNSAFE_VAR_ERROR",
    "Diagnostic",
    "EvalError",
    "PolicyEngineError",
    "PolicyError",
    "render",
]

PARSE_ERROR = "rego_parse_error"
COMPILE_ERROR = "rego_compile_error"
UNSAFE_VAR_ERROR = "rego_unsafe_var_error"
RECURSION_ERROR = "rego_recursion_error"
TYPE_ERROR = "rego_type_error"
CONFLICT_ERROR = "eval_conflict_error"
EVAL_TYPE_ERROR = "eval_type_error"
BUILTIN_ERROR = "eval_builtin_error"
LIMIT_ERROR = "eval_limit_error"


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    """One problem: a stable code, a message for people, and where it is."""

    code: str
    message: str
    file: str
    line: int
    column: int

    @classmethod
    def at(cls, code: str, message: str, span: Span | None) -> Diagnostic:
        if span is None:
            return cls(code=code, message=message, file="<query>", line=0, column=0)
        return cls(code=code, message=message, file=span.file, line=span.line, column=span.column)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)


def render(diagnostic: Diagnostic, texts: Mapping[str, str] | None = None) -> str:
    """`file:line:col: code: message`, then the source line and a caret if known."""
    head = (
        f"{diagnostic.file}:{diagnostic.line}:{diagnostic.column}: "
        f"{diagnostic.code}: {diagnostic.message}"
    )
    text = (texts or {}).get(diagnostic.file)
    if text is None or diagnostic.line <= 0:
        return head
    context = snippet(text, diagnostic.line, diagnostic.column, diagnostic.file)
    return f"{head}\n{context}" if context else head


class PolicyEngineError(Exception):
    """Base of every error the policy engine raises."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PolicyError(PolicyEngineError):
    """Policies could not be loaded; `.diagnostics` holds every problem, sorted."""

    def __init__(
        self, diagnostics: Iterable[Diagnostic], texts: Mapping[str, str] | None = None
    ) -> None:
        ordered = sorted(diagnostics, key=Diagnostic.sort_key)
        if not ordered:
            ordered = [
                Diagnostic(code=COMPILE_ERROR, message="unknown problem", file="", line=0, column=0)
            ]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(ordered)
        self.texts: dict[str, str] = dict(texts or {})
        super().__init__(ordered[0].code, self.render())

    def render(self) -> str:
        """All problems rendered with source context, one block per problem."""
        return "\n".join(render(d, self.texts) for d in self.diagnostics)

    def with_texts(self, texts: Mapping[str, str]) -> PolicyError:
        return PolicyError(self.diagnostics, {**self.texts, **texts})


class EvalError(PolicyEngineError):
    """Evaluation failed where OPA reports an error (conflict, strict type error...)."""

    def __init__(self, code: str, message: str, span: Span | None = None) -> None:
        super().__init__(code, message)
        self.message = message
        self.span = span
        self.diagnostic = Diagnostic.at(code, message, span)

    def __str__(self) -> str:
        if self.span is None:
            return f"{self.code}: {self.message}"
        return render(self.diagnostic)
