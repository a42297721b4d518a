"""The public facade: load policies once, prepare queries once, evaluate per request.

```python
engine = Engine.from_paths(["policies/"], data={"catalog": catalog})
decide = engine.prepare("data.gateway.decision")
decision = decide(input_document)          # UNDEFINED when undefined
engine.query("data.gateway.decision = x", input=..., data=...)  # OPA result set
```
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from policy_engine import ast
from policy_engine.check import check_modules, check_types_stage
from policy_engine.compile import CompiledQuery, Compiler
from policy_engine.errors import COMPILE_ERROR, Diagnostic, PolicyError
from policy_engine.index import RuleIndex
from policy_engine.loader import read_policy_files
from policy_engine.parser import parse_module, parse_query
from policy_engine.runtime import DEFAULT_OPTIONS, MISSING, Ctx, EvalOptions, Frame
from policy_engine.source import Source
from policy_engine.terms import NotReady
from policy_engine.typecheck import InputSchema
from policy_engine.values import UNDEFINED, from_json, thaw

__all__ = ["Engine", "EngineConfig", "Prepared"]

Prepared = Callable[..., Any]


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and evaluation switches; the defaults suit the gateway."""

    max_policy_bytes: int = 4_000_000
    """Largest total size of all policy texts loaded into one engine."""
    max_steps: int = 1_000_000
    """Most iteration steps one evaluation may take before `eval_limit_error`."""
    strict: bool = False
    """Raise built-in errors (`eval_type_error`, `eval_builtin_error`) instead of undefined."""


def _lower_yaml(name: str, text: str) -> list[ast.Module]:
    try:
        yaml_policy = importlib.import_module("policy_engine.yaml_policy")
    except ImportError:
        raise PolicyError(
            [
                Diagnostic(
                    code=COMPILE_ERROR,
                    message="YAML policies are not supported",
                    file=name,
                    line=1,
                    column=1,
                )
            ]
        ) from None
    modules: list[ast.Module] = yaml_policy.lower(Source(name=name, text=text))
    return modules


def _parse_all(sources: Mapping[str, str]) -> tuple[list[ast.Module], list[Diagnostic]]:
    modules: list[ast.Module] = []
    problems: list[Diagnostic] = []
    for name, text in sources.items():
        try:
            if name.endswith(".iam.yaml"):
                modules.extend(_lower_yaml(name, text))
            else:
                modules.append(parse_module(text, name))
        except PolicyError as exc:
            problems.extend(exc.diagnostics)
    return modules, problems


_SCALARS = frozenset({str, int, bool, type(None), Decimal})


def public_value(value: Any) -> Any:
    """The public API form (lists, dicts, frozensets), never an object the engine keeps."""
    kind = type(value)
    if kind is dict:
        # The common decision shape: an object of scalars, or of objects of scalars and
        # arrays (reasons, rate limits). A plain loop over the members: C iterator
        # chains (`issuperset(map(type, …))`, `compress`) cost more here (callgrind: a
        # 9-member decision with a nested object 31.3k instructions that way, 14.6k so).
        out = value.copy()
        for key, member in value.items():
            if type(member) not in _SCALARS:
                if type(member) is dict:
                    out[key] = public_value(member)
                elif type(member) is tuple and not member:
                    out[key] = []
                else:
                    out[key] = thaw(member)
        return out
    if kind in _SCALARS or value is UNDEFINED:
        return value
    return thaw(value)


def _checked_and_compiled(
    modules: list[ast.Module], parse_problems: list[Diagnostic], input_schema: InputSchema | None
) -> tuple[RuleIndex, Compiler]:
    """The static checks, compilation and the type check; raises `PolicyError`.

    The static checks run on the modules that parsed even when others did not, so
    one load reports both kinds of problem.
    """
    index, check_problems = check_modules(modules)
    problems = parse_problems + check_problems
    if problems:
        raise PolicyError(problems)
    compiler = Compiler(index)
    for path, group in index.groups.items():
        if group.kind == "function":
            compiler.function(path)
        else:
            compiler.rule(path)
    if compiler.diagnostics:
        raise PolicyError(compiler.diagnostics)
    # After the safety checks compilation makes, as in OPA: a type error is
    # reported only for a policy that is otherwise sound.
    type_problems = check_types_stage(modules, index, input_schema)
    if type_problems:
        raise PolicyError(type_problems)
    return index, compiler


def _too_deep(file: str, texts: Mapping[str, str]) -> PolicyError:
    return PolicyError(
        [
            Diagnostic(
                code=COMPILE_ERROR,
                message="expressions nest too deeply to compile; split deep "
                "expressions into separate rules or variables",
                file=file,
                line=1,
                column=1,
            )
        ],
        texts,
    )


class Engine:
    """Compiled policies plus base data; immutable once built, safe to share."""

    def __init__(
        self,
        index: RuleIndex,
        compiler: Compiler,
        data: Any,
        config: EngineConfig,
        texts: Mapping[str, str],
    ) -> None:
        self._index = index
        self._compiler = compiler
        self._data = data
        self._config = config
        self._texts = dict(texts)
        self._lock = threading.Lock()
        # Values of rules that read no `input`, for evaluations on this engine's own
        # data and configuration (see `Ctx.shared`). A memo, not state: each entry is
        # a pure function of the immutable policies and data; racing writers store
        # equal values.
        self._shared: list[Any] | None = (
            [MISSING] * (compiler.rule_count + 1) if compiler.share_static_rules else None
        )

    # ---- loading ---------------------------------------------------------------------

    @classmethod
    def from_sources(
        cls,
        sources: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
        input_schema: InputSchema | None = None,
    ) -> Engine:
        """Parse, check and compile `{file name: policy text}`; raises `PolicyError`.

        With `input_schema` (`typecheck.parse_input_schema`), every `input.…`
        reference is type-checked against it, as `opa check --schema` does.
        """
        config = config or EngineConfig()
        size = sum(len(text) for text in sources.values())
        if size > config.max_policy_bytes:
            raise PolicyError(
                [
                    Diagnostic(
                        code=COMPILE_ERROR,
                        message=f"policies total {size} bytes, over the limit of "
                        f"{config.max_policy_bytes}; raise `max_policy_bytes` to load them",
                        file=next(iter(sources), "<policy>"),
                        line=1,
                        column=1,
                    )
                ]
            )
        modules, problems = _parse_all(sources)
        try:
            index, compiler = _checked_and_compiled(modules, problems, input_schema)
        except RecursionError:
            # Every stage after parsing walks the AST recursively; the parser does
            # not, so this is where a deeply nested expression shows.
            raise _too_deep(next(iter(sources), "<policy>"), sources) from None
        except PolicyError as exc:
            raise exc.with_texts(sources) from None
        return cls(index, compiler, from_json(dict(data or {})), config, sources)

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | Path],
        data: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
        input_schema: InputSchema | None = None,
    ) -> Engine:
        """Load `.rego` and `.iam.yaml` files (directories non-recursively)."""
        return cls.from_sources(read_policy_files(paths), data, config, input_schema)

    # ---- evaluation ------------------------------------------------------------------------

    def _context(
        self,
        input_: Any,
        data: Mapping[str, Any] | None,
        strict: bool,
        options: EvalOptions = DEFAULT_OPTIONS,
    ) -> Ctx:
        merged = self._data if data is None else {**self._data, **from_json(dict(data))}
        own = data is None and (not strict or self._config.strict)
        return Ctx(
            input_,
            merged,
            steps=self._config.max_steps,
            strict=strict or self._config.strict,
            shared=self._shared if own else None,
            options=options,
            rules=self._compiler.rule_count,
        )

    def compile_query(self, text: str) -> CompiledQuery:
        body = parse_query(text)
        with self._compiling():
            compiled = self._compiler.query(body)
            problems = self._compiler.diagnostics
        if problems:
            raise PolicyError(problems, {"<query>": text})
        return compiled

    @contextlib.contextmanager
    def _compiling(self) -> Iterator[None]:
        """Exclusive use of the shared compiler for one query or prepared reference.

        Rules are already compiled; a query only adds its own closures. The
        compiler's scratch state (diagnostics, the registry of inlinable value
        functions) is reset around it, so concurrent callers and long-running
        processes that query repeatedly neither race nor grow it.
        """
        with self._lock:
            known = set(self._compiler.known_ids())
            self._compiler.diagnostics = []
            try:
                yield
            except RecursionError:
                raise _too_deep("<query>", {}) from None
            finally:
                self._compiler.forget_except(known)
                # Every rule is compiled at load, so a query adds none; should one ever,
                # the engine-wide cache grows in place to hold it.
                shared = self._shared
                if shared is not None and len(shared) <= self._compiler.rule_count:
                    shared.extend([MISSING] * (self._compiler.rule_count + 1 - len(shared)))

    def query(
        self,
        query_text: str,
        input: Any = None,
        data: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        options: EvalOptions = DEFAULT_OPTIONS,
    ) -> list[dict[str, Any]]:
        """OPA-style result set: one dict of bindings per solution, `[]` when undefined.

        `options` fixes what the evaluation reads from the world (clock, seed, print).
        """
        compiled = self.compile_query(query_text)
        ctx = self._context(UNDEFINED if input is None else input, data, strict, options)
        results: list[dict[str, Any]] = []
        outputs = compiled.outputs

        def collect(_ctx: Ctx, f: Frame) -> bool:
            results.append({name: public_value(f[slot]) for name, slot in outputs.items()})
            return False

        frame: Frame = [None] * compiled.size
        compiled.step(ctx, frame, lambda c, f: collect(c, f))
        return results

    def prepare(self, ref_text: str) -> Prepared:
        """Compile a reference such as `data.gateway.decision` into `fn(input, data, options)`."""
        body = parse_query(ref_text)
        if (
            len(body) != 1
            or body[0].negated
            or body[0].withs
            or not isinstance(body[0].expr, ast.Ref | ast.Var | ast.Call)
        ):
            raise PolicyError(
                [
                    Diagnostic(
                        code=COMPILE_ERROR,
                        message="prepare takes a single reference such as `data.gateway.decision`",
                        file="<query>",
                        line=1,
                        column=1,
                    )
                ],
                {"<query>": ref_text},
            )
        with self._compiling():
            scope = self._compiler.module_scope(None)
            hoists: list[Any] = []
            try:
                fn = self._compiler.value(body[0].expr, scope, hoists)
            except NotReady as exc:
                self._compiler.unsafe(exc)
                fn = None
            if hoists:
                self._compiler.diagnostics.append(
                    Diagnostic(
                        code=COMPILE_ERROR,
                        message="a prepared reference cannot iterate; use `query` for that",
                        file="<query>",
                        line=1,
                        column=1,
                    )
                )
            problems = self._compiler.diagnostics
        if problems or fn is None:
            raise PolicyError(problems, {"<query>": ref_text})
        size = scope.layout.size
        base = self._data
        steps = self._config.max_steps
        strict = self._config.strict
        value_fn = fn
        shared = self._shared
        fill = self._compiler.fresh_evaluator(fn)
        fresh = Ctx.fresh
        rules = self._compiler.rule_count
        blank = [MISSING] * (rules + 1)

        def prepared(
            input: Any,
            data: Mapping[str, Any] | None = None,
            options: EvalOptions = DEFAULT_OPTIONS,
        ) -> Any:
            if data is None:
                ctx = fresh(input, base, steps, strict, shared, options, blank)
            else:
                ctx = Ctx(
                    input,
                    {**base, **from_json(dict(data))},
                    steps,
                    strict,
                    None,
                    None,
                    options,
                    rules,
                )
            return public_value(value_fn(ctx, [None] * size))

        if fill is None:
            return prepared
        computed = fill

        def prepared_rule(
            input: Any,
            data: Mapping[str, Any] | None = None,
            options: EvalOptions = DEFAULT_OPTIONS,
        ) -> Any:
            # A rule that reads `input`: its cache in a new context is empty, so its
            # value is computed without looking there first.
            if data is None:
                return public_value(
                    computed(fresh(input, base, steps, strict, shared, options, blank))
                )
            ctx = Ctx(
                input, {**base, **from_json(dict(data))}, steps, strict, None, None, options, rules
            )
            return public_value(computed(ctx))

        return prepared_rule

    @property
    def rule_paths(self) -> list[str]:
        """Every rule's full path (`data.pkg.rule`), for tools."""
        return sorted(".".join(path) for path in self._index.groups)
