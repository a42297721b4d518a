"""Built-ins about the world outside the documents: rand.intn, uuid.rfc4122, print, trace
(which read the evaluation's `EvalOptions`) and opa.runtime (which reveals nothing).

Each answer is fixed for the whole evaluation, as OPA fixes it per query:
the same `rand.intn("k", 10)` or `uuid.rfc4122("k")` call gives the same value
every time within one evaluation (`Ctx.memo`). Random numbers come from a
generator seeded with `EvalOptions.seed` (or from the system when None), so a
seeded evaluation is reproducible. print and trace never change a result:
they hand a line to the hook the caller passed, or nowhere.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from policy_engine.builtins.base import Builtin, builtin, want_int64, want_string
from policy_engine.builtins.formatting import rego_text
from policy_engine.runtime import Ctx
from policy_engine.values import UNDEFINED

__all__ = ["BUILTINS"]


def _generator(ctx: Ctx) -> random.Random:
    found = ctx.fixed().get("random")
    if found is None:
        seed = ctx.options.seed
        # Not for secrets: reproducible draws for policies (S311 is about cryptography).
        found = random.Random(seed if seed is not None else random.SystemRandom().getrandbits(64))  # noqa: S311
        ctx.fixed()["random"] = found
    assert isinstance(found, random.Random)
    return found


def rand_intn(ctx: Ctx, key: object, n: object) -> int:
    """A random integer in [0, n), the same for the same key and n within one evaluation."""
    name = want_string("rand.intn", 1, key)
    bound = abs(want_int64("rand.intn", 2, n))
    if bound == 0:
        return 0
    memo_key = ("rand.intn", name, bound)
    found = ctx.fixed().get(memo_key)
    if found is None:
        found = ctx.fixed()[memo_key] = _generator(ctx).randrange(bound)
    return int(found)


def uuid_rfc4122(ctx: Ctx, key: object) -> str:
    """A version 4 UUID, the same for the same key within one evaluation."""
    name = want_string("uuid.rfc4122", 1, key)
    memo_key = ("uuid.rfc4122", name)
    found = ctx.fixed().get(memo_key)
    if found is None:
        raw = _generator(ctx).getrandbits(128).to_bytes(16, "big")
        found = ctx.fixed()[memo_key] = str(uuid.UUID(bytes=raw, version=4))
    return str(found)


def _print_text(value: Any) -> str:
    if value is UNDEFINED:
        return "<undefined>"
    return value if isinstance(value, str) else rego_text(value)


def print_(ctx: Ctx, *values: Any) -> bool:
    """Writes its operands, separated by spaces, to the evaluation's print hook; always true."""
    hook = ctx.options.print_hook
    if hook is not None:
        hook(" ".join(_print_text(value) for value in values))
    return True


def trace(ctx: Ctx, note: object) -> bool:
    """Adds a note to the evaluation's trace (its trace hook); always true."""
    text = want_string("trace", 1, note)
    hook = ctx.options.trace_hook
    if hook is not None:
        hook(text)
    return True


def opa_runtime() -> dict[str, Any]:
    """What OPA reports about its process (env, config, version); here an empty object.

    The engine exposes nothing of its host to policies, so that a decision never
    depends on where it runs.
    """
    return {}


BUILTINS: tuple[Builtin, ...] = (
    builtin("opa.runtime", opa_runtime, "() -> object[string, any]", "opa.runtime()"),
    builtin(
        "rand.intn",
        rand_intn,
        "(str: string, n: number) -> number",
        'rand.intn("request", 100)',
        context=True,
    ),
    builtin(
        "uuid.rfc4122",
        uuid_rfc4122,
        "(k: string) -> string",
        'uuid.rfc4122("request")',
        context=True,
    ),
    builtin("print", print_, "(...) -> boolean", 'print("model", "gpt-4o")', context=True),
    builtin("trace", trace, "(note: string) -> boolean", 'trace("checked the key")', context=True),
)
