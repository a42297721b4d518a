"""The model catalog (`policies/catalog.yaml`): read once per (re)load.

The engine receives the plain mapping as `data.catalog`; the proxy keeps a typed view
for prices (Decimal, USD per million tokens) and the `/v1/models` listing.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from proxy.documents import Operation
from proxy.usage import TokenUsage, uncached_tokens

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogModel",
    "CatalogProvider",
    "ModelPrice",
    "load_catalog",
]

_PER_TOKEN = Decimal(1_000_000)


class CatalogError(Exception):
    """The catalog file cannot be read or has the wrong shape (message has file and field)."""


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's offer of a model."""

    model_id: str
    input_price: Decimal = Decimal(0)
    output_price: Decimal = Decimal(0)
    # Completion tokens assumed (and forwarded) when a request names no limit;
    # None: the gateway's `default_max_tokens`.
    max_output_tokens: int | None = None
    # The most one image part can cost in prompt tokens here; None: images are refused.
    image_input_tokens: int | None = None
    # The body field that caps completion tokens at this provider (reasoning models
    # accept only `max_completion_tokens`).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Prompt-cache prices (None: the input price; the 1-hour write: the 5-minute one).
    cache_read_price: Decimal | None = None
    cache_write_price: Decimal | None = None
    cache_write_1h_price: Decimal | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """USD for the given token counts (prices are per million tokens)."""
        total = prompt_tokens * self.input_price + completion_tokens * self.output_price
        return total / _PER_TOKEN

    def bound_cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """The most `prompt_tokens` and `completion_tokens` can cost here, whichever way
        the provider splits the prompt between plain input and cache reads and writes."""
        write = self.cache_write_price or self.input_price
        highest = max(self.input_price, write, self.cache_write_1h_price or write)
        return (prompt_tokens * highest + completion_tokens * self.output_price) / _PER_TOKEN

    def usage_cost(self, usage: TokenUsage) -> Decimal:
        """USD for what the provider reported, each kind of prompt token at its price."""
        write = self.cache_write_price if self.cache_write_price is not None else self.input_price
        write_1h = self.cache_write_1h_price if self.cache_write_1h_price is not None else write
        read = self.cache_read_price if self.cache_read_price is not None else self.input_price
        total = (
            uncached_tokens(usage) * self.input_price
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.cache_write_1h_tokens * write_1h
            + usage.completion_tokens * self.output_price
        )
        return total / _PER_TOKEN


class CatalogModel(msgspec.Struct, frozen=True, kw_only=True):
    owned_by: str = "system"
    created: int = 0
    providers: dict[str, ModelPrice] = msgspec.field(default_factory=dict)


class CatalogProvider(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    base_url: str | None = None
    # The operations served natively at `base_url` (the policy routes by this too).
    apis: tuple[Operation, ...] = ("chat.completions", "completions", "embeddings")


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    providers: dict[str, CatalogProvider] = msgspec.field(default_factory=dict)
    models: dict[str, CatalogModel] = msgspec.field(default_factory=dict)

    def price(self, model: str | None, provider: str | None) -> ModelPrice | None:
        if model is None or provider is None:
            return None
        entry = self.models.get(model)
        return None if entry is None else entry.providers.get(provider)


def load_catalog(path: str) -> tuple[Catalog, dict[str, Any]]:
    """The typed catalog and the plain mapping handed to the engine as `data.catalog`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise CatalogError(f"{where}: the catalog is not valid YAML") from None
    try:
        catalog = msgspec.convert(raw, Catalog, strict=False)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{path}: {exc}") from None
    return catalog, raw
