"""Generated code for the hottest closures: call sites and constant paths.

A template of our own (never policy text) is filled with variable-slot numbers
and compiled once per distinct shape; constants and callees reach the code
through its globals.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from types import CodeType
from typing import Any

from policy_engine import ast
from policy_engine.runtime import (
    MISSING,
    Ctx,
    Frame,
    ValueFn,
    data_index,
    index_value,
)
from policy_engine.source import Span
from policy_engine.values import UNDEFINED, equal

__all__ = [
    "data_root",
    "dynamic_index",
    "generate",
    "inline_body",
    "input_root",
    "key_step",
    "key_steps",
    "not_equal",
    "open_test",
    "root_walk",
    "rule_walk",
    "slot_reader_fn",
    "str_terms",
    "string_walk",
    "walk",
]


def str_terms(keys: tuple[str, ...], span: Span) -> list[ast.Term]:
    return [ast.StringLit(span=span, value=k) for k in keys]


def slot_reader_fn(slot: int) -> ValueFn:
    return lambda ctx, f: f[slot]


def not_equal(a: Any, b: Any) -> bool:
    return not equal(a, b)


def input_root(ctx: Ctx, f: Frame) -> Any:
    return ctx.input


def data_root(ctx: Ctx, f: Frame) -> Any:
    return ctx.data


def generate(source: str, env: dict[str, Any], code_cache: dict[str, CodeType]) -> Any:
    """Define the one function in `source` with `env` as its globals.

    The source comes only from this module's templates (names and slot numbers,
    never policy text); values reach it through `env`. Identical templates are
    compiled once per compiler.
    """
    code = code_cache.get(source)
    if code is None:
        code = code_cache[source] = compile(source, "<policy_engine generated>", "exec")
    exec(code, env)  # noqa: S102 - our own template, see above
    (name,) = [key for key in env if key in ("call", "get")]
    function = env[name]
    # Its own copy of the code: CPython specialises instructions in place, in the code
    # object (a global's dict slot, a call's target), so functions of one template
    # sharing it (every rule's cache lookup, with its own `rid` and `fill`) kept
    # undoing each other's specialisations: 12% of a decision was global lookups
    # that missed. The copy costs a memory copy; the compile is still shared.
    function.__code__ = function.__code__.replace()
    return function


# Names an inlined body keeps: Python's own, the context, and the shared markers
# (the same objects in every generated function's globals).
_KEPT_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | {"ctx", "U", "M"}
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")
_RETURN = re.compile(r"\breturn\b")


def inline_body(
    source: str,
    env: dict[str, Any],
    prefix: str,
    frame: str,
    out: str,
    into: dict[str, Any],
    done: dict[tuple[str, str, str, str], list[str] | None],
) -> list[str] | None:
    """Statements running generated function `source` (`def …(ctx, f):` and its body,
    from our templates) inline: `out` is set to what it returns.

    Its globals and locals are renamed with `prefix` (globals copied into `into`),
    its frame is `frame`; the body runs in a one-pass loop, each `return` becoming an
    assignment and a `break`. Names are found by a pattern, so this is for templates
    without string literals that name anything; a body with a loop or a `return`
    inside a line cannot be inlined (None). `done` keeps the answer per template.
    """
    key = (source, prefix, frame, out)
    if key in done:
        known = done[key]
    else:
        known = done[key] = _renamed_body(source, prefix, frame, out)
    if known is not None:
        for name, value in env.items():
            into[name if name in _KEPT_NAMES else prefix + name] = value
    return known


def open_test(lines: list[str], out: str) -> tuple[list[str], str] | None:
    """An inlined test (`inline_body`'s statements setting `out`) as statements and a
    condition to test inside its loop, or None when the flag is needed.

    When every early exit sets `out` to False and the body ends in `out = <condition>`,
    the caller writes `if <condition>:` at the loop's level, what must follow the test
    inside it, and a closing `break` after: the flag is neither set nor read (three
    bytecodes a test). What follows must not `break` or `continue` out of the loop.
    """
    if len(lines) < 4 or lines[-2:] != ["    break", "    break"]:
        return None
    assignment = f"    {out} = "
    if not lines[-3].startswith(assignment):
        return None
    failed = f"{out} = False"
    body: list[str] = []
    for line in lines[:-3]:
        text = line.lstrip()
        if text.startswith(f"{out} ") or text.startswith(f"{out}="):
            if text != failed:
                return None
            continue  # its `break` leaves the loop without running what follows
        body.append(line)
    return body, lines[-3][len(assignment) :]


def _renamed_body(source: str, prefix: str, frame: str, out: str) -> list[str] | None:
    """See `inline_body`; the statements without their globals."""

    def rename(match: re.Match[str]) -> str:
        name = match.group(0)
        if name == "f":
            return frame
        return name if name in _KEPT_NAMES else prefix + name

    lines = ["while True:"]
    for line in source.split("\n")[1:]:
        text = line.lstrip()
        if not text:
            continue
        if text.startswith(("for ", "while ")) or (
            not text.startswith("return ") and _RETURN.search(text)
        ):
            return None
        indent = line[: len(line) - len(text)]
        if text.startswith("return "):
            lines.append(f"{indent}{out} = {_NAME.sub(rename, text[len('return ') :])}")
            lines.append(f"{indent}break")
        else:
            lines.append(indent + _NAME.sub(rename, text))
    lines.append("    break")
    return lines


def key_step(
    var: str, name: str, key: Any, data: bool = False, env: dict[str, Any] | None = None
) -> str:
    """One generated statement `var = var[key]` with Rego semantics (UNDEFINED when
    absent): objects by `get`, arrays by a constant non-negative index inline.

    With `data`, a step of a reference into base data: a number also finds the object
    key that is its text, a string of digits indexes an array (`runtime.data_index`).

    With `env` (the generated function's globals), a string key outside base data is
    looked up with `dict.get` called on the value, falling back to `index_value` on the
    TypeError a value that is not an object raises: half the instructions of testing
    the type first when it is an object (the input document's steps, nearly always),
    about 0.4 µs more when it is not. For a string key, `index_value` on an object is
    exactly its `get` (FrozenDict does not override it).
    """
    if env is not None and not data and type(key) is str:
        env["dict_get"], env["index_value"] = dict.get, index_value
        return (
            f"    try:\n        {var} = dict_get({var}, {name}, U)\n"
            f"    except TypeError:\n        {var} = index_value({var}, {name})"
        )
    other = "data_index" if data else "index_value"
    if type(key) is int and key >= 0:
        if data:
            return (
                f"    {var} = {var}[{name}] if type({var}) is tuple and len({var}) > {name} "
                f"else data_index({var}, {name})"
            )
        return (
            f"    {var} = {var}[{name}] if type({var}) is tuple and len({var}) > {name} "
            f"else ({var}.get({name}, U) if type({var}) is dict else index_value({var}, {name}))"
        )
    return f"    {var} = {var}.get({name}, U) if type({var}) is dict else {other}({var}, {name})"


def key_steps(
    var: str,
    start: str,
    steps: list[tuple[str, Any]],
    data: bool,
    env: dict[str, Any],
    guarded: bool = False,
) -> list[str]:
    """Generated statements setting `var` to `start` followed by constant keys
    (`steps`: the global name of each key and the key), with `key_step`'s semantics.

    Outside base data, each run of string keys is one expression on the value,
    subscripts then a last `dict.get`: a value that is not an object raises TypeError
    there, an object without an inner step's key KeyError, and the run is walked again
    from its start by `string_walk`, which answers as `key_step` does step by step. No
    statement sits between the steps of a run, and none tests UNDEFINED in between. With
    `guarded` (`start` is a rule's value or a variable, not the input or data document),
    a first run on a value that is not a plain dict is walked by `string_walk` without
    trying (and raising) first.
    """
    # A root (`ctx.input`) is read inside the first run of string keys rather than
    # stored first: one store and one load fewer per walk (every input path).
    rooted = start != var and not guarded and bool(steps) and _string_key(steps[0][1], data)
    lines = [f"    {var} = {start}"] if start != var and not rooted else []
    run: list[str] = []

    def flush() -> None:
        nonlocal rooted
        if not run:
            return
        env["dict_get"], env["string_walk"] = dict.get, string_walk
        origin = start if rooted else var
        rooted = False
        # Inner steps subscript (two bytecodes a step, against a `dict.get` call's
        # five); only the last step may find no such key without it being an error
        # already (a missing inner key made the next `get` raise TypeError before),
        # so it stays a `get`: an absent field answers UNDEFINED with no exception.
        expr = origin + "".join(f"[{name}]" for name in run[:-1])
        expr = f"dict_get({expr}, {run[-1]}, U)"
        names = ", ".join(run)
        walked = f"{var} = string_walk({origin}, ({names},))"
        if guarded and not lines:
            # A rule's value is often null (`default w := null`, then `w.rpm`): raising
            # TypeError for it costs more than the test (formatting its message alone
            # is ~3k instructions), so a value that is not an object is walked directly.
            lines.append(f"    if type({var}) is not dict:\n        {walked}")
            lines.append(f"    else:\n        try:\n            {var} = {expr}")
            lines.append(f"        except (KeyError, TypeError):\n            {walked}")
        else:
            lines.append(f"    try:\n        {var} = {expr}")
            lines.append(f"    except (KeyError, TypeError):\n        {walked}")
        run.clear()

    for name, key in steps:
        if _string_key(key, data):
            # The same object as the field names of the proxy's documents (interned
            # identifiers): a lookup then matches by identity, with no text compared.
            env[name] = sys.intern(key)
            run.append(name)
            continue
        flush()
        lines.append(key_step(var, name, key, data=data, env=env))
    flush()
    return lines


def _string_key(key: Any, data: bool) -> bool:
    """Whether `key_steps` walks this step in a run of `dict.get` calls."""
    return not data and type(key) is str


def string_walk(value: Any, keys: tuple[str, ...]) -> Any:
    """`value` followed by string keys with Rego semantics (UNDEFINED when absent or not
    an object): for a string key, `index_value` on an object is exactly its `get`."""
    for key in keys:
        value = value.get(key, UNDEFINED) if type(value) is dict else index_value(value, key)
    return value


def root_walk(root: str, keys: tuple[Any, ...], code_cache: dict[str, CodeType]) -> ValueFn:
    """`ctx.input` / `ctx.data` followed by constant keys, as straight-line code."""
    env: dict[str, Any] = {"U": UNDEFINED, "index_value": index_value, "data_index": data_index}
    data = root == "data"
    lines = [f"    v = ctx.{root}"]
    if data:
        for i, key in enumerate(keys):
            env[f"k{i}"] = key
            lines.append(key_step("v", f"k{i}", key, data=True, env=env))
            if i < len(keys) - 1:
                lines.append("    if v is U:\n        return U")
    else:
        env.update((f"k{i}", key) for i, key in enumerate(keys))
        lines.extend(
            key_steps("v", "v", [(f"k{i}", key) for i, key in enumerate(keys)], False, env)
        )
    source = "def get(ctx, f):\n" + "\n".join(lines) + "\n    return v\n"
    get: ValueFn = generate(source, env, code_cache)
    return get


def rule_walk(
    cache: str, rule_id: int, fn: ValueFn, keys: tuple[Any, ...], code_cache: dict[str, CodeType]
) -> ValueFn:
    """A memoised rule's value (read from `ctx.<cache>` inline) followed by constant keys."""
    env: dict[str, Any] = {"U": UNDEFINED, "M": MISSING, "rid": rule_id, "rule": fn}
    env["index_value"] = index_value
    lines = [f"    v = ctx.{cache}[rid]", "    if v is M:", "        v = rule(ctx, f)"]
    env.update((f"k{i}", key) for i, key in enumerate(keys))
    steps = [(f"k{i}", key) for i, key in enumerate(keys)]
    lines.extend(key_steps("v", "v", steps, False, env, guarded=True))
    source = "def get(ctx, f):\n" + "\n".join(lines) + "\n    return v\n"
    get: ValueFn = generate(source, env, code_cache)
    return get


def slot_walk(slot: int, keys: tuple[Any, ...], code_cache: dict[str, CodeType]) -> ValueFn:
    """A frame slot's value (a variable, a function's argument) followed by constant keys,
    as straight-line code: one call, not a walk calling the slot's reader."""
    env: dict[str, Any] = {"U": UNDEFINED, "index_value": index_value}
    env.update((f"k{i}", key) for i, key in enumerate(keys))
    steps = [(f"k{i}", key) for i, key in enumerate(keys)]
    lines = [f"    v = f[{slot}]", *key_steps("v", "v", steps, False, env, guarded=True)]
    source = "def get(ctx, f):\n" + "\n".join(lines) + "\n    return v\n"
    get: ValueFn = generate(source, env, code_cache)
    return get


def walk(
    fn: ValueFn, keys: tuple[Any, ...], code_cache: dict[str, CodeType], data: bool = False
) -> ValueFn:
    """`fn`'s value followed by constant keys (`data`: in base data, see `key_step`)."""
    if not keys:
        return fn
    if fn is input_root:
        return root_walk("input", keys, code_cache)
    if fn is data_root:
        return root_walk("data", keys, code_cache)
    if data:
        return _data_walk(fn, keys)
    if len(keys) == 1:
        (key,) = keys

        def get1(ctx: Ctx, f: Frame) -> Any:
            v = fn(ctx, f)
            if type(v) is dict:
                return v.get(key, UNDEFINED)
            return index_value(v, key)

        return get1

    def get(ctx: Ctx, f: Frame) -> Any:
        v = fn(ctx, f)
        for key in keys:
            v = v.get(key, UNDEFINED) if type(v) is dict else index_value(v, key)
            if v is UNDEFINED:
                return v
        return v

    return get


def _data_walk(fn: ValueFn, keys: tuple[Any, ...]) -> ValueFn:
    def get(ctx: Ctx, f: Frame) -> Any:
        v = fn(ctx, f)
        for key in keys:
            v = data_index(v, key)
            if v is UNDEFINED:
                return v
        return v

    return get


def dynamic_index(fn: ValueFn, key_fn: ValueFn, data: bool = False) -> ValueFn:
    """`fn`'s value at the computed key (`data`: in base data, see `key_step`)."""
    step = data_index if data else index_value

    def get(ctx: Ctx, f: Frame) -> Any:
        v = fn(ctx, f)
        key = key_fn(ctx, f)
        if v is UNDEFINED or key is UNDEFINED:
            return UNDEFINED
        return step(v, key)

    return get
