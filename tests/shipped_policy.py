"""The shipped policy compiled once per test session (the `shipped_policies` fixture of
tests/conftest.py); a module of its own so that test files can import the type."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.policy import DecideFn, PolicyHolder


class ShippedPolicies:
    """The shipped policy (`policies/` and its catalog), compiled once per test session
    for each gateway instance a test runs, rather than once per app: compiling it takes
    ~0.7 s of CPU, and about sixty apps in the suite serve it unchanged. Instance `i` of
    every test gets the same holder; two instances of one test get two holders, as two
    gateway processes would. Only for apps whose config leaves `policy_dir`, `catalog`
    and `reload_interval` (0: no reloads) at what the holder was built from."""

    def __init__(self) -> None:
        self._holders: list[PolicyHolder] = []
        self._compiled: dict[str, DecideFn] = {}

    def holder(self, instance: int = 0) -> PolicyHolder:
        from proxy.config import GatewayConfig
        from proxy.policy import PolicyHolder

        while len(self._holders) <= instance:
            config = GatewayConfig()
            self._holders.append(PolicyHolder(config.policy_dir, config.catalog_path))
        return self._holders[instance]

    def loader(self, policy_dir: str, data: dict[str, Any]) -> DecideFn:
        """`engine_loader`, compiling the shipped policy directory once per session for
        each catalog; any other directory (tests write their own) compiles every time,
        so a test that rewrites its files and reloads gets what it wrote."""
        from proxy.config import default_policy_dir
        from proxy.policy import engine_loader

        if policy_dir != default_policy_dir():
            return engine_loader(policy_dir, data)
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in self._compiled:
            self._compiled[key] = engine_loader(policy_dir, data)
        return self._compiled[key]
