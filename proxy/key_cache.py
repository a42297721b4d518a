"""A `Store` that remembers key records for a fraction of a second.

Every API request needs its key's record (key, rules, project, organization, usage);
reading it from the store each time was one of three store round trips per request.
`KeyCachingStore` wraps the real store and answers `key_context` from memory for up
to `ttl` seconds (0.5 by default).

Why this honours the contract:

- Revocation within 1 s: a key disabled or deleted in another process (the CLI, a
  second gateway) is re-read at most `ttl` (≤ 0.5 s) later. A change made through this
  process (admin API, dashboard: they use this same object as `app.state.store`) drops
  the whole cache at once.
- Usage stays exact: the cached settled figures (the key's usage, and its and its
  project's period-budget windows, `recent_budget_usage`) only feed the policy's
  pre-check.
  The atomic `admit` reads the live figures and is the authority: a stale figure
  that says "room left" is corrected by the store refusing (the gateway then re-reads
  the key bypassing this cache and the policy answers with the documented message),
  so a cached figure can never admit a request the store would not. A stale figure
  that says "limit reached" is re-checked live too (`key_context(..., fresh=True)` on
  every denial), so it cannot refuse wrongly.

Unknown tokens are never cached, so a key created elsewhere works at once.

Refreshed ahead: a record (or budget figures) served after 80% of its `ttl` is read
again in the background while the cached one is still served, so a key in steady use
never makes its requests wait for the store (on PostgreSQL that read, 1-9 ms on a
loaded machine, held up every request of the key arriving meanwhile twice a second).
A record is never served past `ttl` after its read began; past that, the request
reads (or joins the read under way) as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from proxy.budgets import Budget
from proxy.input_document import with_input_parts
from proxy.store.base import (
    NO_RATE_LIMITS,
    Admitted,
    ApiKey,
    AuditEntry,
    Claim,
    IamRule,
    KeyActivity,
    KeyContext,
    KeyStatus,
    Organization,
    Project,
    ProjectMode,
    ProjectRule,
    Queued,
    RateLimits,
    RateState,
    Refused,
    Reservation,
    RuleStatus,
    RuleType,
    Store,
    WindowUsage,
)

__all__ = ["DEFAULT_KEY_CACHE_TTL", "KeyCachingStore"]

# Half the contract's 1 s revocation bound, leaving room for the request in flight.
DEFAULT_KEY_CACHE_TTL = 0.5
# Keys held at most; the oldest entry goes first (a bound on memory, not a policy).
_MAX_ENTRIES = 10_000


# Share of the ttl after which a served entry is read again in the background.
_REFRESH_AFTER = 0.8


class _Entry:
    __slots__ = ("context", "expires", "refresh_at")

    def __init__(self, context: KeyContext, read_at: float, ttl: float) -> None:
        self.context = context
        self.expires = read_at + ttl
        self.refresh_at = read_at + ttl * _REFRESH_AFTER


class _Figures:
    __slots__ = ("expires", "figures", "refresh_at")

    def __init__(
        self, figures: tuple[WindowUsage, WindowUsage], read_at: float, ttl: float
    ) -> None:
        self.figures = figures
        self.expires = read_at + ttl
        self.refresh_at = read_at + ttl * _REFRESH_AFTER


_WindowSubjects = tuple[tuple[str, str] | None, tuple[str, str] | None]


class KeyCachingStore:
    """The wrapped store with a short-lived key cache; every other call passes through."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = DEFAULT_KEY_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl <= DEFAULT_KEY_CACHE_TTL:
            raise ValueError(
                f"key cache ttl {ttl} s is outside 0..{DEFAULT_KEY_CACHE_TTL} s: the contract "
                "refuses a revoked key within 1 s; use a smaller ttl"
            )
        self.inner = store
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # One store read per token at a time: a burst of requests for an uncached key
        # shares the read instead of sending 64 identical ones.
        self._reading: dict[str, asyncio.Future[KeyContext | None]] = {}
        self._generation = 0
        # Budget windows' figures for the policy's pre-check (`recent_budget_usage`).
        self._figures: dict[_WindowSubjects, _Figures] = {}
        self._reading_figures: dict[
            _WindowSubjects, asyncio.Future[tuple[WindowUsage, WindowUsage]]
        ] = {}
        # Background reads under way, by token hash or budget subjects.
        self._refreshes: dict[object, asyncio.Task[object]] = {}

    def invalidate(self) -> None:
        """Forget every cached key (after any administrative change in this process)."""
        self._entries.clear()
        self._figures.clear()
        self._generation += 1

    # -- request path ----------------------------------------------------------------
    async def key_context(self, token_hash: str, *, fresh: bool = False) -> KeyContext | None:
        """The key's record, from memory when read less than `ttl` ago (unless `fresh`)."""
        if not fresh and self._ttl > 0:
            entry = self._entries.get(token_hash)
            if entry is not None:
                now = self._clock()
                if entry.expires > now:
                    if now >= entry.refresh_at and token_hash not in self._refreshes:
                        self._refresh(token_hash, self._read(token_hash))
                    return entry.context
            pending = self._reading.get(token_hash)
            if pending is not None:
                try:
                    return await asyncio.shield(pending)
                except asyncio.CancelledError:
                    if not pending.cancelled():
                        raise  # this request itself was cancelled
                    # The request doing the read was cancelled (its client left): read here.
        return await self._read(token_hash)

    def _refresh(self, entry: object, read: Coroutine[Any, Any, object]) -> None:
        """Run `read` of `entry` in the background; a failure leaves the entry to expire
        (the next request then reads, and meets the error, itself)."""
        task = asyncio.get_running_loop().create_task(read)
        self._refreshes[entry] = task
        task.add_done_callback(lambda done: self._refreshed(entry, done))

    def _refreshed(self, entry: object, task: asyncio.Task[object]) -> None:
        if self._refreshes.get(entry) is task:
            del self._refreshes[entry]
        if not task.cancelled():
            task.exception()  # retrieved: a failed background read is not an error here

    async def _read(self, token_hash: str) -> KeyContext | None:
        generation = self._generation
        read_at = self._clock()
        future: asyncio.Future[KeyContext | None] = asyncio.get_running_loop().create_future()
        self._reading.setdefault(token_hash, future)
        try:
            context = await self.inner.key_context(token_hash)
            if context is not None:
                # Once per read, not per request served from it (`engine_document`).
                context = with_input_parts(context)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters, if any, re-raise it
            raise
        finally:
            if self._reading.get(token_hash) is future:
                del self._reading[token_hash]
        future.set_result(context)
        # A change made while this read ran may not be in it: do not keep it then.
        if context is not None and self._ttl > 0 and generation == self._generation:
            if len(self._entries) >= _MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries[token_hash] = _Entry(context, read_at, self._ttl)
        return context

    def hash_token(self, token: str) -> str:
        return self.inner.hash_token(token)

    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        return await self.inner.reserve(key_id, organization_id, amount)

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        return await self.inner.admit(claim, ticket)

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        return await self.inner.budget_usage(key, project)

    async def recent_budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        """`budget_usage`, from memory when read less than `ttl` ago: for the policy's
        pre-check only, exactly like the cached key record's usage (see the module
        docstring). The windows are part of the cache key, so a new window is never
        answered with the last one's figures; the atomic `admit` holds each window
        against its live figures, and every refusal is judged on a fresh read."""
        subjects = (key, project)
        if self._ttl <= 0:
            return await self.inner.budget_usage(key, project)
        figures = self.cached_budget_usage(subjects)
        if figures is not None:
            return figures
        pending = self._reading_figures.get(subjects)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise
        return await self._read_figures(subjects)

    def cached_budget_usage(
        self, subjects: _WindowSubjects
    ) -> tuple[WindowUsage, WindowUsage] | None:
        """`recent_budget_usage` when memory answers it (starting the refresh ahead when
        due), without a coroutine: a budgeted request in steady use never waits for its
        figures, and the coroutine around the look-up cost ~4k instructions a request.
        None: not held (or the cache is off), await `recent_budget_usage`."""
        entry = self._figures.get(subjects)
        if entry is None:
            return None
        now = self._clock()
        if entry.expires <= now:
            return None
        if now >= entry.refresh_at and subjects not in self._refreshes:
            self._refresh(subjects, self._read_figures(subjects))
        return entry.figures

    async def _read_figures(self, subjects: _WindowSubjects) -> tuple[WindowUsage, WindowUsage]:
        generation = self._generation
        read_at = self._clock()
        future: asyncio.Future[tuple[WindowUsage, WindowUsage]] = (
            asyncio.get_running_loop().create_future()
        )
        self._reading_figures.setdefault(subjects, future)
        try:
            figures = await self.inner.budget_usage(*subjects)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            if self._reading_figures.get(subjects) is future:
                del self._reading_figures[subjects]
        future.set_result(figures)
        if generation == self._generation:
            if len(self._figures) >= _MAX_ENTRIES:
                del self._figures[next(iter(self._figures))]
            self._figures[subjects] = _Figures(figures, read_at, self._ttl)
        return figures

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        await self.inner.withdraw(claim, ticket)

    def subscribe(self, wake: Callable[[str, str | None], None]) -> None:
        self.inner.subscribe(wake)

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        await self.inner.settle(reservation, actual_cost, tokens=tokens)

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        return await self.inner.rate_windows(key_id, project_id, now)

    async def release(self, reservation: Reservation) -> None:
        await self.inner.release(reservation)

    # -- lifecycle -------------------------------------------------------------------
    async def migrate(self) -> None:
        await self.inner.migrate()
        self.invalidate()

    async def close(self) -> None:
        refreshes = list(self._refreshes.values())
        for task in refreshes:
            task.cancel()
        await asyncio.gather(*refreshes, return_exceptions=True)
        await self.inner.close()

    async def ensure_defaults(self) -> None:
        await self.inner.ensure_defaults()
        self.invalidate()

    async def reclaim_expired(self) -> int:
        return await self.inner.reclaim_expired()

    # -- administration: reads pass through, changes drop the cache ----------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization:
        return await self.inner.create_organization(org_id, credits)

    async def set_credits(self, org_id: str, credits: Decimal) -> Organization:
        try:
            return await self.inner.set_credits(org_id, credits)
        finally:
            self.invalidate()

    async def get_organization(self, org_id: str) -> Organization:
        return await self.inner.get_organization(org_id)

    async def list_organizations(self) -> list[Organization]:
        return await self.inner.list_organizations()

    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project:
        return await self.inner.create_project(project_id, org_id, mode)

    async def get_project(self, project_id: str) -> Project:
        return await self.inner.get_project(project_id)

    async def list_projects(self) -> list[Project]:
        return await self.inner.list_projects()

    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project:
        try:
            return await self.inner.set_project_mode(project_id, mode)
        finally:
            self.invalidate()

    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project:
        try:
            return await self.inner.set_provider_key(project_id, provider, source)
        finally:
            self.invalidate()

    async def protect_secrets(self) -> tuple[int, int]:
        try:
            return await self.inner.protect_secrets()
        finally:
            self.invalidate()

    async def archive_project(self, project_id: str) -> Project:
        try:
            return await self.inner.archive_project(project_id)
        finally:
            self.invalidate()

    async def rename_organization(self, org_id: str, name: str) -> Organization:
        return await self.inner.rename_organization(org_id, name)  # not in the input document

    async def rename_project(self, project_id: str, name: str) -> Project:
        return await self.inner.rename_project(project_id, name)  # not in the input document

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        try:
            return await self.inner.set_project_budget(project_id, budget)
        finally:
            self.invalidate()

    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        try:
            return await self.inner.add_project_rule(project_id, rule_type, values)
        finally:
            self.invalidate()

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]:
        return await self.inner.list_project_rules(project_id)

    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule:
        try:
            return await self.inner.set_project_rule_status(project_id, rule_id, status)
        finally:
            self.invalidate()

    async def remove_project_rule(self, project_id: str, rule_id: str) -> None:
        try:
            await self.inner.remove_project_rule(project_id, rule_id)
        finally:
            self.invalidate()

    async def create_key(
        self,
        project_id: str,
        usage_limit: Decimal | None,
        description: str,
        *,
        expires_at: str | None = None,
        rate_limits: RateLimits = NO_RATE_LIMITS,
    ) -> tuple[ApiKey, str]:
        return await self.inner.create_key(
            project_id, usage_limit, description, expires_at=expires_at, rate_limits=rate_limits
        )

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        try:
            return await self.inner.set_key_rate_limits(key_id, limits)
        finally:
            self.invalidate()

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        try:
            return await self.inner.set_project_rate_limits(project_id, limits)
        finally:
            self.invalidate()

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        try:
            return await self.inner.set_key_expiry(key_id, expires_at)
        finally:
            self.invalidate()

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        try:
            return await self.inner.rotate_key(key_id, grace_seconds)
        finally:
            self.invalidate()

    async def get_key(self, key_id: str) -> ApiKey:
        return await self.inner.get_key(key_id)

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        return await self.inner.list_keys(project_id)

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        try:
            return await self.inner.set_key_status(key_id, status)
        finally:
            self.invalidate()

    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey:
        try:
            return await self.inner.set_usage_limit(key_id, usage_limit)
        finally:
            self.invalidate()

    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        try:
            return await self.inner.set_key_budget(key_id, budget)
        finally:
            self.invalidate()

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        return await self.inner.rename_key(key_id, description)  # not in the input document

    async def add_rule(self, key_id: str, rule_type: RuleType, values: tuple[str, ...]) -> IamRule:
        try:
            return await self.inner.add_rule(key_id, rule_type, values)
        finally:
            self.invalidate()

    async def list_rules(self, key_id: str) -> list[IamRule]:
        return await self.inner.list_rules(key_id)

    async def remove_rule(self, key_id: str, rule_id: str) -> None:
        try:
            await self.inner.remove_rule(key_id, rule_id)
        finally:
            self.invalidate()

    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        try:
            return await self.inner.set_rule_status(key_id, rule_id, status)
        finally:
            self.invalidate()

    # -- audit log ---------------------------------------------------------------------
    async def add_key_activity(self, rows: list[KeyActivity]) -> None:
        await self.inner.add_key_activity(rows)

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        return await self.inner.key_activity(key_ids)

    async def record_audit(self, entry: AuditEntry) -> None:
        await self.inner.record_audit(entry)

    async def list_audit(
        self, since: str | None, object_filter: str | None, limit: int
    ) -> list[AuditEntry]:
        return await self.inner.list_audit(since, object_filter, limit)
