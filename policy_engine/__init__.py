"""A Rego v1 subset policy engine: parse -> check -> compile to closures -> decide.

Public API (stable)::

    from policy_engine import Engine, EngineConfig, PolicyError, EvalError, UNDEFINED

    engine = Engine.from_paths(["policies/"], data={"catalog": catalog})  # *.rego, *.iam.yaml
    engine = Engine.from_sources({"a.rego": text}, data=None, config=EngineConfig())
    decide = engine.prepare("data.gateway.decision")     # once: parse, resolve, compile
    decision = decide(input_document, data=None)          # per request: value or UNDEFINED
    rows = engine.query("data.gateway.decision = x", input=..., data=...)  # [] if undefined

- Loading raises `PolicyError` (`.code`, `.diagnostics`: every problem, each
  with `file`, `line`, `column`, `message`, `code`; `render()` gives
  `file:line:col: code: message` plus the source line and a caret).
- Evaluation raises `EvalError` (`.code`: `eval_conflict_error`,
  `eval_type_error` / `eval_builtin_error` in strict mode, `eval_limit_error`)
  where OPA reports an error; otherwise a failing built-in makes its
  expression undefined.
- Results: arrays as `list`, objects as `dict`, sets as `frozenset`, numbers
  as `int` or `Decimal` (never float; floats given in input or data are read
  as `Decimal(repr(f))`). `UNDEFINED` is distinct from `None` (Rego `null`).
- `data` passed to a prepared query replaces top-level keys of the engine's data.
- Limits (`EngineConfig`): `max_policy_bytes`, `max_steps`; `strict` turns
  built-in errors into `EvalError`.
- The engine does no I/O except reading the files given to `from_paths`.
  What an evaluation reads from the world (the clock of `time.now_ns`, the seed
  of `rand.intn` / `uuid.rfc4122`, where `print` writes) comes from the
  `EvalOptions` passed to that evaluation; there is no global state.
"""

from policy_engine.engine import Engine, EngineConfig
from policy_engine.errors import EvalError, PolicyError
from policy_engine.runtime import EvalOptions
from policy_engine.values import UNDEFINED

__all__ = ["UNDEFINED", "Engine", "EngineConfig", "EvalError", "EvalOptions", "PolicyError"]
