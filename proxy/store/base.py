"""The records the key store holds and the one interface every backend implements.

The proxy only ever talks to `Store`; SQLite, PostgreSQL and PostgreSQL+Redis are
interchangeable behind it (see `open_store`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal, Protocol

import msgspec

from proxy.budgets import Budget

__all__ = [
    "NO_RATE_LIMITS",
    "Admitted",
    "ApiKey",
    "AuditEntry",
    "Budget",
    "BudgetWindow",
    "Claim",
    "Conflict",
    "IamRule",
    "KeyActivity",
    "KeyContext",
    "KeyInputParts",
    "KeyStatus",
    "NotFound",
    "Organization",
    "Project",
    "ProjectMode",
    "ProjectRule",
    "Queued",
    "RateCount",
    "RateLimits",
    "RateReason",
    "RateState",
    "Refused",
    "Reservation",
    "RuleStatus",
    "RuleType",
    "Store",
    "StoreError",
    "WindowUsage",
]

KeyStatus = Literal["active", "inactive", "deleted"]
ProjectMode = Literal["api-keys", "credits", "hybrid"]
ProjectStatus = Literal["active", "deleted"]
RuleType = Literal[
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "allow_operations",
    "deny_operations",
]
RuleStatus = Literal["active", "inactive"]


class StoreError(Exception):
    """A request the store cannot carry out; the message says why and how to fix it."""


class NotFound(StoreError):
    """The organization, project, key or rule named does not exist."""


class Conflict(StoreError):
    """The record exists but its state forbids the change (e.g. re-enabling a deleted key)."""


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The rate ceilings of a key or a project (issue 13 point 2); None: no ceiling.
    `rpm` and `tpm` count requests and tokens (prompt + completion) admitted in any
    sliding 60-second window; `max_parallel` counts requests in flight."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None


NO_RATE_LIMITS = RateLimits()


class RateCount(msgspec.Struct, frozen=True, kw_only=True):
    """One subject's (key's or project's) rate window as the store saw it when it
    admitted (this request included) or refused (this request not included) a claim."""

    requests: int  # admitted in the 60 s before the request time
    tokens: int  # their tokens: reserved bounds, settled counts once settled
    parallel: int  # requests in flight (unsettled, unreleased, unexpired reservations)
    # Request times (epoch seconds, the gateway's clock) of the oldest and newest request
    # in the window: when room frees up and when the window is empty again.
    oldest: float | None = None
    newest: float | None = None


class RateState(msgspec.Struct, frozen=True, kw_only=True):
    """The windows of the subjects with rate limits (None: that subject has none)."""

    key: RateCount | None = None
    project: RateCount | None = None


class Organization(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    credits: Decimal
    name: str = ""  # what people call it; the id never changes, the name may


class Project(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    mode: ProjectMode = "hybrid"
    status: ProjectStatus = "active"
    # provider id -> where the secret comes from: {"env": "VAR"} or {"value": "sk-..."}.
    # INVARIANT: never rendered back in full to any client.
    provider_keys: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    name: str = ""  # what people call it; the id never changes, the name may
    budget: Budget | None = None  # a ceiling per calendar period for all its keys together
    # Ceilings shared by every key of the project (each key's own apply as well).
    rate_limits: RateLimits = NO_RATE_LIMITS


class IamRule(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    type: RuleType
    values: tuple[str, ...]
    status: RuleStatus = "active"


class ProjectRule(msgspec.Struct, frozen=True, kw_only=True):
    """An IAM rule of a whole project: a ceiling every key of the project stays under."""

    id: str
    project_id: str
    type: RuleType
    values: tuple[str, ...]
    status: RuleStatus = "active"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    token_hash: str
    display: str  # e.g. "llmgtwy_Ab12…9xYz": prefix and last four, never the token
    project_id: str
    status: KeyStatus
    usage_limit: Decimal | None
    usage: Decimal  # settled usage only
    description: str
    created_at: str  # RFC 3339, UTC
    # RFC 3339 UTC (`2027-01-01T00:00:00Z`); from then on the key is refused (check 2).
    expires_at: str | None = None
    budget: Budget | None = None  # at most this much settled usage per calendar period
    rate_limits: RateLimits = NO_RATE_LIMITS


class KeyInputParts(msgspec.Struct, frozen=True, kw_only=True):
    """A key record's members of the engine's input (`proxy.input_document.key_input_parts`):
    the key's and the project's objects without their period budgets' windows, and the
    organization's, as `engine_input` makes them. Built once per record read (the key
    cache does), so the requests served from that record only add their own members.
    INVARIANT: shared by those requests and never changed (the engine's values are
    immutable; `engine_document` adds a budget window to a copy)."""

    key: dict[str, Any]
    project: dict[str, Any]
    organization: dict[str, Any]


class KeyContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the input document needs about one key, read in one go per request."""

    key: ApiKey
    reserved: Decimal  # cost held by reservations still in flight
    rules: tuple[IamRule, ...]
    project: Project
    organization: Organization
    credits_reserved: Decimal
    project_rules: tuple[ProjectRule, ...] = ()
    # Set when the token presented is the key's previous one, kept after a rotation:
    # the end of its grace period (RFC 3339 UTC). None for the key's current token.
    token_expires_at: str | None = None
    # The record's members of the engine's input, made from the fields above when the
    # key cache keeps the record (`KeyCachingStore`); None: not made (made per request).
    input_parts: KeyInputParts | None = None


class BudgetWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A period budget as one request claims it: the budget's amount and the window the
    request falls in (its start, RFC 3339 UTC, computed by the gateway from its clock,
    `proxy.budgets.window`). The store keeps one counter per (subject, start)."""

    amount: Decimal
    start: str


class WindowUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One budget window's figures: settled usage, and in-flight reservations."""

    usage: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    organization_id: str | None  # set when the request is billed to credits
    amount: Decimal
    # The budget windows this reservation holds room in; settling charges them (the
    # window the request was admitted in, even if it settles after the window ended).
    key_window: str | None = None
    project_id: str | None = None
    project_window: str | None = None
    # Set when the key or project has rate limits: the windows right after admission
    # (headers), and whose window entries settle/release correct (`project_id` names
    # the project's then).
    rate: RateState | None = None
    # With `rate`: the request time the windows counted it at and the tokens they
    # reserved for it (its bound), which settlement replaces with the tokens used.
    rate_at: float = 0.0
    rate_tokens: int = 0
    # SQLite: the amount in the units of its key's reserved figures when its row holds
    # them (settling, releasing or undoing it takes them out); None: the row holds none.
    units: int | None = None


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """What one request asks to hold: `amount` against the key's limit, and against the
    organization's credits when `organization_id` is set (billed to credits); against
    the key's period budget when `key_budget` is set, and the project's (`project_id`)
    when `project_budget` is set. The windows come from the gateway's clock: the store
    never reads the wall clock to decide which window a request falls in."""

    key_id: str
    organization_id: str | None
    amount: Decimal
    key_budget: BudgetWindow | None = None
    project_id: str | None = None
    project_budget: BudgetWindow | None = None
    # Rate limits (checked in the same atomic step as the money): the key's and its
    # project's (`project_id`) ceilings as the request path read them, the request's
    # token bound (prompt + completion, proxy/cost_bound.py) and the request time in
    # epoch seconds from the gateway's clock (the store never reads the wall clock for
    # windows, so tests move time without sleeping).
    key_limits: RateLimits = NO_RATE_LIMITS
    project_limits: RateLimits = NO_RATE_LIMITS
    tokens: int = 0
    now: float = 0.0

    @property
    def rated(self) -> bool:
        return self.key_limits.any or (self.project_id is not None and self.project_limits.any)


class Admitted(msgspec.Struct, frozen=True, kw_only=True):
    """The claim is held: forward the request, then settle or release this."""

    reservation: Reservation


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    """The claim does not fit only because of in-flight reservations (or earlier
    waiters): the ticket is in line; ask again with the same ticket after a settlement."""


RateReason = Literal["rate_limit_requests", "rate_limit_tokens", "max_parallel"]


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """The settled figures alone refuse the claim: usage reached the limit (`limit`),
    the organization's credits are used up (`credits`), or the window's settled usage
    reached the key's (`key_budget`) or the project's (`project_budget`) period budget;
    or a rate limit of the key or project is reached (`rate_limit_requests`,
    `rate_limit_tokens`, `max_parallel`: refused at once, never queued), with the
    windows the store saw in `rate`."""

    reason: Literal[
        "limit",
        "credits",
        "key_budget",
        "project_budget",
        "rate_limit_requests",
        "rate_limit_tokens",
        "max_parallel",
    ]
    rate: RateState | None = None


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One administrative change (`proxy.audit`). INVARIANT: no token, hash or secret."""

    time: str  # RFC 3339, UTC
    actor: str  # `cli`, `admin-api` or `dashboard`
    client: str  # the client's address, or `user@host` for the CLI
    action: str  # e.g. `create`, `set_usage_limit`, `rotate`
    object_type: str  # `organization`, `project`, `key` or `rule`
    object_id: str
    before: dict[str, Any] | None  # the fields that changed, as they were (None: created)
    after: dict[str, Any] | None  # ... and as they are now (None: removed)
    seq: int = 0  # the store's order of recording; 0 until recorded


class KeyActivity(msgspec.Struct, frozen=True, kw_only=True):
    """How much a key was used (requests whose key was known, allowed or not)."""

    key_id: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_used_at: str | None = None  # RFC 3339 UTC


class Store(Protocol):
    """The proxy's single view of keys, projects, organizations and usage."""

    async def migrate(self) -> None:
        """Apply every pending schema migration (idempotent) and reclaim expired reservations."""
        ...

    async def close(self) -> None: ...

    async def ensure_defaults(self) -> None:
        """Create organization `default` (credits 10.00) and project `default` (hybrid)
        when absent; never changes them when present."""
        ...

    def hash_token(self, token: str) -> str:
        """The lookup handle of `token` (its SHA-256 hex digest): the proxy hashes the
        presented token with this before `key_context`, which finds the key whether it
        is stored under that digest or, with `GATEWAY_SECRET_KEY`, its keyed form
        (`proxy.secret_box`)."""
        ...

    async def protect_secrets(self) -> tuple[int, int]:
        """With a secret key: convert every plain token hash to its keyed form and encrypt
        every provider key stored by value; returns (hashes converted, keys encrypted).
        Idempotent; a no-op without a secret key."""
        ...

    async def reclaim_expired(self) -> int:
        """Drop reservations past their expiry (their request crashed or was lost);
        returns how many. Also done on reserve and at start-up."""
        ...

    # -- request path --------------------------------------------------------------
    async def key_context(self, token_hash: str) -> KeyContext | None: ...
    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        """Hold `amount` against the key's limit (and the organization's credits when
        `organization_id` is given), atomically across every process sharing the store.

        Admitted iff `usage + in-flight reservations < usage_limit` (no limit: always)
        and, when billed to credits, `credits - in-flight credit reservations > 0`; the
        new amount itself is not part of the check (the documented `usage >= limit`
        rule with in-flight requests counted). None when refused. Raises NotFound for
        an unknown key or organization. Unsettled reservations expire after the
        store's `reservation_ttl` and stop counting."""
        ...

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        """The figures of a key's and a project's budget window, each given as
        (id, window start); a window not given, or never used, reads as zero."""
        ...

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        """Admit `claim` fairly, atomically across every process sharing the store.

        Period budgets (`claim.key_budget`, `claim.project_budget`) are held exactly
        like the usage limit, per window: refused when the window's settled usage
        alone reaches the budget (`key_budget` / `project_budget`), admitted only
        while settled + in-flight reservations of that window < the budget, queued
        otherwise.

        Refused when the settled figures alone decide (`usage >= usage_limit`, or,
        billed to credits, `credits <= 0`); the ticket, if in line, leaves it. Admitted
        when `usage + in-flight reservations < usage_limit` (and, billed to credits,
        `credits - in-flight credit reservations > 0`) and no unexpired ticket of the
        key or organization is ahead of `ticket` (FIFO by a global sequence); the new
        amount itself is not part of the check, so a burst overshoots by at most one
        request's bound. Rate limits (`claim.key_limits`, `claim.project_limits`) are
        checked in the same atomic step, after the settled figures and before the
        line: refused at once (`rate_limit_requests` when the requests admitted in
        the 60 s before `claim.now` reached `rpm`, `rate_limit_tokens` when their
        tokens plus `claim.tokens` would exceed `tpm`, `max_parallel` when the
        requests in flight reached it), with the windows seen; an admission adds the
        request to its key's and project's windows. Otherwise Queued: `ticket` (any
        unique string; the caller keeps it while it waits) joins the line, or keeps its place, for
        `ADMISSION_TICKET_TTL` seconds, so a waiter that died never blocks the line.
        Raises NotFound for an unknown key or organization."""
        ...

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        """Take `ticket` out of the line (its request stopped waiting)."""
        ...

    def subscribe(self, wake: Callable[[str, str | None], None]) -> None:
        """From now on call `wake(key_id, organization_id)` when another process
        sharing the store settles or releases a reservation while requests wait on that
        key or organization (PostgreSQL LISTEN/NOTIFY, Redis pub/sub). Call from the
        event loop; idempotent. SQLite has no notifications: its waiters poll."""
        ...

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        """Replace the reservation by the actual cost (charged to the key, and to the
        organization's credits when the reservation named one); with rate limits, the
        request's tokens in its windows become `tokens` (prompt + completion as the
        provider reported them) and it is no longer in flight."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Drop the reservation without charging anything (upstream failed); with rate
        limits, the request still counts as a request, its tokens become 0 and it is
        no longer in flight."""
        ...

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        """The key's and the project's rate windows at request time `now` (epoch
        seconds), whether or not they have limits (for `keys show`, the admin API)."""
        ...

    # -- administration (CLI, admin HTTP API, dashboard) ---------------------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization: ...
    async def set_credits(self, org_id: str, credits: Decimal) -> Organization: ...
    async def get_organization(self, org_id: str) -> Organization: ...
    async def list_organizations(self) -> list[Organization]: ...
    async def rename_organization(self, org_id: str, name: str) -> Organization: ...
    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project: ...
    async def get_project(self, project_id: str) -> Project: ...
    async def list_projects(self) -> list[Project]: ...
    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project: ...
    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project: ...
    async def archive_project(self, project_id: str) -> Project: ...
    async def rename_project(self, project_id: str, name: str) -> Project: ...
    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        """A rule for every key of the project (the keys' own rules can only narrow it)."""
        ...

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]: ...
    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule: ...
    async def remove_project_rule(self, project_id: str, rule_id: str) -> None: ...
    async def create_key(
        self,
        project_id: str,
        usage_limit: Decimal | None,
        description: str,
        *,
        expires_at: str | None = None,
        rate_limits: RateLimits = NO_RATE_LIMITS,
    ) -> tuple[ApiKey, str]:
        """Returns the key record and the plain token (shown once, never stored).
        `expires_at` is normalised with `common.parse_expiry`."""
        ...

    async def get_key(self, key_id: str) -> ApiKey: ...
    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]: ...
    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey: ...
    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey: ...
    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        """Set or clear (None) the key's period budget; the current window's usage is
        kept (a budget raised mid-window applies to what was already spent)."""
        ...

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        """Set or clear the project's period budget (all its keys together)."""
        ...

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        """Replace the key's rate limits (checked with `common.check_rate_limits`)."""
        ...

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        """Replace the project's rate limits, shared by all its keys."""
        ...

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        """Change the key's description, the name people know it by (deleted keys too)."""

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        """Set (RFC 3339, normalised to UTC seconds) or clear the key's expiry."""
        ...

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        """A new token for the same key record (usage, limits, rules kept). The previous
        token keeps working for `grace_seconds` (0: refused at once); a token rotated out
        earlier stops at once. Raises Conflict for a deleted key."""
        ...

    async def add_rule(
        self, key_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> IamRule: ...
    async def list_rules(self, key_id: str) -> list[IamRule]: ...
    async def remove_rule(self, key_id: str, rule_id: str) -> None: ...
    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        """Turn a rule off (`inactive`: kept, but not applied) or on again."""

    # -- key activity ---------------------------------------------------------------
    async def add_key_activity(self, rows: list[KeyActivity]) -> None:
        """Add each row's counts to the key's totals; `last_used_at` keeps the later."""
        ...

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        """The totals of the keys named (every key with activity when None)."""
        ...

    # -- audit log ------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one entry (its `seq` is assigned by the store)."""
        ...

    async def list_audit(
        self, since: str | None, object_filter: str | None, limit: int
    ) -> list[AuditEntry]:
        """Entries in the order recorded, oldest first: at or after `since` (RFC 3339)
        when given; `object_filter` is an object type (`key`), an id (`key_3f…`) or both
        (`key:key_3f…`). At most `limit`, the newest ones."""
        ...
