"""A tiny stand-in policy for tests of the proxy's mechanics (not of the policy).

It implements just enough of the contract's order of checks to drive the request
path: token, key status, usage limit, body error, then allow via the first provider
the catalog lists for the model, billed to credits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from proxy.policy import DecideFn


def fake_loader(policy_dir: str, data: dict[str, Any]) -> DecideFn:
    models: dict[str, Any] = data["catalog"]["models"]

    def deny(status: int, message: str) -> dict[str, Any]:
        return {"allow": False, "status": status, "message": message}

    def decide(document: dict[str, Any]) -> object:
        request, key = document["request"], document["key"]
        if not request["token_present"]:
            return deny(401, "no token")
        if key is None or key["status"] != "active":
            return deny(401, "bad token")
        limit = key["usage_limit"]
        if limit is not None and Decimal(key["usage"]) >= Decimal(limit):
            return deny(401, "limit reached")
        if request["operation"] == "models.list":
            return {"allow": True, "status": 200, "models": sorted(models)}
        if request["body_error"]:
            return deny(400, request["body_error"])
        model = request["model"]
        if model not in models:
            return deny(400, f"Unsupported model: {model}")
        provider = next(iter(models[model]["providers"]))
        return {
            "allow": True,
            "status": 200,
            "model": model,
            "provider": provider,
            "provider_model_id": models[model]["providers"][provider]["model_id"],
            "billing": "credits",
        }

    return decide
