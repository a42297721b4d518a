"""A Rego v1 subset policy engine: parse -> check -> compile to closures -> decide."""

from policy_engine.engine import Engine, EngineConfig
from policy_engine.errors import EvalError, PolicyError
from policy_engine.values import UNDEFINED

__all__ = ["UNDEFINED", "Engine", "EngineConfig", "EvalError", "PolicyError"]
