"""Key store and usage ledger: the records, the interface the proxy uses, and its backends.

`open_store(database_url, usage_store_url)` picks the backend from the URLs:

- `sqlite:///path.db` (default): one instance, `proxy.store.sqlite`;
- `postgresql://…`: several instances sharing keys and usage, `proxy.store.postgres`;
- plus `usage_store: redis://…` (PostgreSQL only): the usage ledger in Redis,
  flushed to PostgreSQL, `proxy.store.redis_ledger`.
"""

from __future__ import annotations

from typing import Any

from proxy.store.base import (
    ApiKey,
    Conflict,
    IamRule,
    KeyContext,
    NotFound,
    Organization,
    Project,
    Reservation,
    Store,
    StoreError,
)

__all__ = [
    "ApiKey",
    "Conflict",
    "IamRule",
    "KeyContext",
    "NotFound",
    "Organization",
    "Project",
    "Reservation",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(database_url: str, usage_store_url: str | None = None, **options: Any) -> Store:
    """The store for `database_url` (not yet migrated: call `await store.migrate()`).

    Options: `reservation_ttl` (seconds an unsettled reservation holds, default 600),
    `token_secret` (bytes; hash tokens with HMAC-SHA256 instead of SHA-256),
    `flush_interval` (Redis ledger: seconds between flushes to PostgreSQL, default 1).
    """
    if database_url.startswith("sqlite:"):
        if usage_store_url:
            raise StoreError(
                f"usage_store `{usage_store_url}` needs a PostgreSQL database; "
                "set `database: postgresql://…` or remove `usage_store`"
            )
        from proxy.store.sqlite import SqliteStore, sqlite_path_from_url

        return SqliteStore(sqlite_path_from_url(database_url), **options)
    if database_url.startswith(("postgresql://", "postgres://")):
        if usage_store_url:
            if not usage_store_url.startswith(("redis://", "rediss://", "unix://")):
                raise StoreError(
                    f"usage_store `{usage_store_url}` is not a Redis URL; "
                    "write `redis://127.0.0.1:6379/0`"
                )
            from proxy.store.redis_ledger import RedisLedgerStore

            return RedisLedgerStore(database_url, usage_store_url, **options)
        from proxy.store.postgres import PostgresStore

        return PostgresStore(database_url, **options)
    raise StoreError(
        f"database `{database_url}` is not supported; "
        "write `sqlite:///./gateway.db` or `postgresql://user@host/dbname`"
    )
