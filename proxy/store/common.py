"""Helpers every backend shares: ids, clock, money parsing, row -> record conversion."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from proxy.budgets import PERIODS, Budget, BudgetError, parse_budget
from proxy.money import plain_digits
from proxy.store.base import (
    Admitted,
    ApiKey,
    AuditEntry,
    Claim,
    Conflict,
    IamRule,
    KeyActivity,
    KeyStatus,
    NotFound,
    Organization,
    Project,
    ProjectMode,
    ProjectRule,
    Queued,
    RateCount,
    RateLimits,
    RateReason,
    RateState,
    Refused,
    Reservation,
    RuleStatus,
    RuleType,
    StoreError,
)

__all__ = [
    "ADMISSION_TICKET_TTL",
    "AUDIT_COLUMNS",
    "DEFAULT_ORG_CREDITS",
    "DEFAULT_ORG_ID",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_RESERVATION_TTL",
    "KEY_COLUMNS",
    "KEY_STATUSES",
    "PROJECT_MODES",
    "RATE_WINDOW_SECONDS",
    "RULE_TYPES",
    "InstanceIds",
    "activity_from_row",
    "admission_outcome",
    "audit_entry_from_row",
    "audit_filter",
    "budget_columns",
    "budget_from_columns",
    "check_budget",
    "check_description",
    "check_key_status",
    "check_mode",
    "check_name",
    "check_provider_source",
    "check_rate_limits",
    "check_rotation",
    "check_rule_status",
    "check_rule_type",
    "check_status_change",
    "decode_provider_keys",
    "decode_values",
    "encode_json",
    "key_from_row",
    "log_failed_release",
    "new_id",
    "now_epoch",
    "now_rfc3339",
    "organization_from_row",
    "parse_expiry",
    "parse_grace",
    "parse_money",
    "parse_rate_state",
    "project_from_row",
    "project_rule_from_row",
    "rate_limits_from_row",
    "rate_refusal",
    "reservation_for",
    "rfc3339_after",
    "rule_from_row",
]

DEFAULT_ORG_ID = "default"
DEFAULT_PROJECT_ID = "default"
DEFAULT_ORG_CREDITS = Decimal("10.00")
# A request that never settles (crash, lost connection) holds its reservation this long.
DEFAULT_RESERVATION_TTL = 600.0
# A request waiting for admission refreshes its place in line at least this often; a
# ticket not refreshed (its gateway died) stops counting after this many seconds.
ADMISSION_TICKET_TTL = 2.0
_MAX_GRACE_SECONDS = 30 * 24 * 3600
# Rate limits count what was admitted in the last minute: a request admitted at time t
# counts in the windows (now - 60, now] with t inside (a sliding log, docs/architecture.md).
RATE_WINDOW_SECONDS = 60.0
# The largest ceiling accepted: the Redis ledger and SQLite count in int64 / doubles.
MAX_RATE_LIMIT = 10**12
# The latest whole second whose nanoseconds since 1970 fit in a signed 64-bit integer.
_LAST_COMPARABLE = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)

PROJECT_MODES: tuple[ProjectMode, ...] = ("api-keys", "credits", "hybrid")
KEY_STATUSES: tuple[KeyStatus, ...] = ("active", "inactive", "deleted")
RULE_TYPES: tuple[RuleType, ...] = (
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "allow_operations",
    "deny_operations",
)


def new_id(prefix: str) -> str:
    """A short random id such as `key_3f9a0c…`; random, so ids reveal no counts or order."""
    return f"{prefix}_{secrets.token_hex(8)}"


class InstanceIds:
    """Ids for records that never leave the gateway (reservations, admission tickets):
    a random prefix drawn once per instance, then a counter. Unique across instances,
    processes and restarts (64 random bits each), at a fifth of `new_id`'s cost, which
    asks the OS for fresh random bytes every time (twice per request)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_{self._prefix}{next(self._count):x}"


def now_epoch() -> float:
    return time.time()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_money(value: str | Decimal, what: str, *, allow_negative: bool = False) -> Decimal:
    """An exact, finite decimal amount of USD; raises StoreError naming `what` otherwise."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise StoreError(
            f"{what}: `{value}` is not a decimal amount; write it like `10.00`"
        ) from None
    if not amount.is_finite():
        raise StoreError(f"{what}: `{value}` is not a finite amount; write it like `10.00`")
    if amount < 0 and not allow_negative:
        raise StoreError(f"{what}: `{value}` is negative; use zero or a positive amount")
    # Below 1 (most costs and reservations) the exponent is negative: `plain_digits`
    # would return it as it is, after reading the exponent from `as_tuple` (a tuple of
    # every digit), which costs more than the rest of this check.
    return amount if amount.adjusted() < 0 else plain_digits(amount)


def check_mode(mode: str) -> ProjectMode:
    if mode not in PROJECT_MODES:
        raise StoreError(f"project mode `{mode}` is unknown; use one of {', '.join(PROJECT_MODES)}")
    return mode


def check_key_status(status: str) -> KeyStatus:
    if status not in KEY_STATUSES:
        raise StoreError(f"key status `{status}` is unknown; use one of {', '.join(KEY_STATUSES)}")
    return status


def check_status_change(key_id: str, current: KeyStatus, new: KeyStatus) -> None:
    """Deletion is permanent (contract: "Key has been permanently removed")."""
    if current == "deleted" and new != "deleted":
        raise Conflict(f"key `{key_id}` is deleted and cannot be re-enabled; create a new key")


def parse_expiry(value: str | None, what: str = "expires_at") -> str | None:
    """An RFC 3339 time (`2027-01-01T00:00:00Z`, or with an offset) as UTC seconds
    `YYYY-MM-DDTHH:MM:SSZ`, the one form the store, the input document and the policy
    compare; None or an empty string means "never expires"."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise StoreError(
            f"{what}: `{value}` is not an RFC 3339 time; write it like `2027-01-01T00:00:00Z`"
        ) from None
    if parsed.tzinfo is None:
        raise StoreError(
            f"{what}: `{value}` has no time zone; add `Z` for UTC, e.g. `2027-01-01T00:00:00Z`"
        )
    if parsed > _LAST_COMPARABLE:
        # The policy compares times as nanoseconds since 1970 in 64 bits
        # (time.parse_rfc3339_ns): a later expiry fails to parse there, and an
        # unreadable expiry counts as expired, so the key would be refused at once.
        raise StoreError(
            f"{what}: `{value}` is after {_LAST_COMPARABLE:%Y-%m-%d}, the last day the "
            "policy can compare; give an earlier time, or none for a key that never expires"
        )
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_grace(seconds: float | int | str) -> float:
    """A rotation's grace period in seconds: zero or more, at most 30 days."""
    try:
        grace = float(seconds)
    except (TypeError, ValueError):
        raise StoreError(f"grace: `{seconds}` is not a number of seconds, e.g. `3600`") from None
    if not 0 <= grace <= _MAX_GRACE_SECONDS:
        raise StoreError(
            f"grace: `{seconds}` is outside 0..{_MAX_GRACE_SECONDS} seconds (30 days); "
            "the old token must stop working eventually"
        )
    return grace


def rfc3339_after(seconds: float) -> str:
    """Now plus `seconds`, as UTC seconds (rounded up: a grace period is never shorter)."""
    moment = math.ceil(now_epoch() + seconds)
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_rotation(key_id: str, status: KeyStatus) -> None:
    if status == "deleted":
        raise Conflict(f"key `{key_id}` is deleted; a deleted key cannot get a new token")


def check_rule_type(rule_type: str) -> RuleType:
    if rule_type not in RULE_TYPES:
        raise StoreError(f"rule type `{rule_type}` is unknown; use one of {', '.join(RULE_TYPES)}")
    return rule_type


MAX_DESCRIPTION = 200


def check_description(description: str) -> str:
    """A key's description, trimmed; at most MAX_DESCRIPTION characters."""
    text = description.strip()
    if len(text) > MAX_DESCRIPTION:
        raise StoreError(
            f"the description has {len(text)} characters; shorten it to {MAX_DESCRIPTION}"
        )
    return text


def check_rule_status(status: str) -> RuleStatus:
    if status not in ("active", "inactive"):
        raise StoreError(f"rule status `{status}` is unknown; use `active` or `inactive`")
    return "active" if status == "active" else "inactive"


def check_provider_source(provider: str, source: dict[str, str] | None) -> None:
    if not provider:
        raise StoreError("provider id is empty; name the provider, e.g. `openai`")
    if source is None:
        return
    if len(source) != 1 or not ({"env", "value"} & source.keys()):
        raise StoreError(
            f"provider key for `{provider}`: give exactly one of `env` (a variable name) "
            "or `value` (the secret)"
        )
    if not next(iter(source.values())):
        raise StoreError(f"provider key for `{provider}` is empty")


def encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def decode_provider_keys(text: str) -> dict[str, dict[str, str]]:
    return msgspec.json.decode(text, type=dict[str, dict[str, str]])


def decode_values(text: str) -> tuple[str, ...]:
    return msgspec.json.decode(text, type=tuple[str, ...])


def organization_from_row(row: Sequence[Any]) -> Organization:
    """Row order: id, credits[, name]."""
    name = row[2] if len(row) > 2 else ""
    return Organization(id=row[0], credits=Decimal(str(row[1])), name=name)


def project_from_row(row: Sequence[Any]) -> Project:
    """Row order: id, organization, mode, status, provider_keys (JSON text)[, name[,
    budget_amount, budget_period[, rpm, tpm, max_parallel]]]."""
    return Project(
        id=row[0],
        organization_id=row[1],
        mode=check_mode(row[2]),
        status="deleted" if row[3] == "deleted" else "active",
        provider_keys=decode_provider_keys(row[4]),
        name=row[5] if len(row) > 5 else "",
        budget=budget_from_columns(row[6], row[7]) if len(row) > 7 else None,
        rate_limits=rate_limits_from_row(row[8:11]) if len(row) > 10 else RateLimits(),
    )


def budget_from_columns(amount: Any, period: Any) -> Budget | None:
    """A budget stored as two columns (amount as decimal text or NUMERIC, period)."""
    if amount is None or period not in PERIODS:
        return None
    return Budget(amount=Decimal(str(amount)), period=period)


def budget_columns(budget: Budget | None) -> tuple[str | None, str | None]:
    """The two columns a budget is stored in (both NULL: no budget)."""
    return (None, None) if budget is None else (str(budget.amount), budget.period)


def check_budget(budget: Budget | str | None, what: str = "budget") -> Budget | None:
    """A budget given as a Budget or as text (`5.00/day`, `none`), checked."""
    try:
        if isinstance(budget, str):
            return parse_budget(budget, what)
        if budget is not None:
            parse_budget(f"{budget.amount}/{budget.period}", what)
        return budget
    except BudgetError as exc:
        raise StoreError(str(exc)) from None


def project_rule_from_row(row: Sequence[Any]) -> ProjectRule:
    """Row order: id, project_id, type, values (JSON text), status."""
    rule = rule_from_row(row)
    return ProjectRule(
        id=rule.id, project_id=rule.key_id, type=rule.type, values=rule.values, status=rule.status
    )


MAX_NAME = 100


def check_name(name: str, what: str) -> str:
    """A display name, trimmed; at most MAX_NAME characters."""
    text = name.strip()
    if len(text) > MAX_NAME:
        raise StoreError(f"the {what} name has {len(text)} characters; shorten it to {MAX_NAME}")
    return text


KEY_COLUMNS = (
    "id, token_hash, display, project, status, usage_limit, usage, description, created_at, "
    "expires_at, budget_amount, budget_period, rpm, tpm, max_parallel"
)


def check_rate_limits(limits: RateLimits) -> RateLimits:
    """Each ceiling a whole number from 1 (0 would refuse everything: disable the key
    instead) up to 10^12, or None for no ceiling."""
    for name in ("rpm", "tpm", "max_parallel"):
        value = getattr(limits, name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_RATE_LIMIT
        ):
            raise StoreError(
                f"{name}: `{value}` is not a whole number from 1 to {MAX_RATE_LIMIT}; "
                "give e.g. 60, or none (null in JSON) for no limit (to block a key, disable it)"
            )
    return limits


def rate_limits_from_row(row: Sequence[Any]) -> RateLimits:
    """Row order: rpm, tpm, max_parallel (each NULL for no ceiling)."""
    return RateLimits(
        rpm=None if row[0] is None else int(row[0]),
        tpm=None if row[1] is None else int(row[1]),
        max_parallel=None if row[2] is None else int(row[2]),
    )


def rate_refusal(claim: Claim, state: RateState) -> RateReason | None:
    """Which rate limit refuses `claim` given the windows before it, if any: the key's
    limits first, then the project's; per subject requests, tokens, then parallel.
    INVARIANT: the same rule as policies/gateway.rego's rate checks and every backend's
    admission script."""
    key = state.key
    if key is not None:
        reason = _subject_rate_refusal(claim.key_limits, key, claim.tokens)
        if reason is not None:
            return reason
    project = state.project
    return (
        None
        if project is None
        else _subject_rate_refusal(claim.project_limits, project, claim.tokens)
    )


def _subject_rate_refusal(limits: RateLimits, count: RateCount, tokens: int) -> RateReason | None:
    """`rate_refusal` for one subject: requests, tokens, then parallel."""
    if limits.rpm is not None and count.requests >= limits.rpm:
        return "rate_limit_requests"
    if limits.tpm is not None and count.tokens + tokens > limits.tpm:
        return "rate_limit_tokens"
    if limits.max_parallel is not None and count.parallel >= limits.max_parallel:
        return "max_parallel"
    return None


def key_from_row(row: Sequence[Any]) -> ApiKey:
    """Row order: KEY_COLUMNS."""
    return ApiKey(
        id=row[0],
        token_hash=row[1],
        display=row[2],
        project_id=row[3],
        status=check_key_status(row[4]),
        usage_limit=None if row[5] is None else Decimal(str(row[5])),
        usage=Decimal(str(row[6])),
        description=row[7],
        created_at=str(row[8]),
        expires_at=row[9],
        budget=budget_from_columns(row[10], row[11]),
        rate_limits=rate_limits_from_row(row[12:15]),
    )


def rule_from_row(row: Sequence[Any]) -> IamRule:
    """Row order: id, key_id, type, values (JSON text), status."""
    status: RuleStatus = "inactive" if row[4] == "inactive" else "active"
    return IamRule(
        id=row[0],
        key_id=row[1],
        type=check_rule_type(row[2]),
        values=decode_values(row[3]),
        status=status,
    )


def admission_outcome(
    outcome: str, claim: Claim, reservation: Reservation
) -> Admitted | Queued | Refused:
    """A backend's admission answer (`ok`, `queued`, `limit`, `credits`, `key_budget`,
    `project_budget`, `no_key`, `no_org`, or a rate reason), for a rated claim followed
    by the key's and the project's windows (`parse_rate_state`), as the Store interface
    gives it."""
    outcome, _, windows = outcome.partition("\t")
    state = parse_rate_state(windows) if claim.rated else None
    if outcome == "ok":
        if state is not None:
            reservation = msgspec.structs.replace(
                reservation, rate=state, project_id=claim.project_id
            )
        return Admitted(reservation=reservation)
    if outcome == "queued":
        return Queued()
    if outcome == "limit":
        return Refused(reason="limit")
    if outcome == "credits":
        return Refused(reason="credits")
    if outcome == "key_budget":
        return Refused(reason="key_budget")
    if outcome == "project_budget":
        return Refused(reason="project_budget")
    if outcome in ("rate_limit_requests", "rate_limit_tokens", "max_parallel"):
        reason: RateReason = (
            "rate_limit_requests"
            if outcome == "rate_limit_requests"
            else "rate_limit_tokens"
            if outcome == "rate_limit_tokens"
            else "max_parallel"
        )
        return Refused(reason=reason, rate=state)
    if outcome == "no_org":
        raise NotFound(f"organization `{claim.organization_id}` does not exist")
    raise NotFound(f"key `{claim.key_id}` does not exist")


def reservation_for(claim: Claim, amount: Decimal, reservation_id: str) -> Reservation:
    """A new reservation of `amount` for `claim`, naming the budget windows it holds
    (`reservation_id`: from the store's `InstanceIds`)."""
    project_budget = claim.project_budget if claim.project_id is not None else None
    return Reservation(
        id=reservation_id,
        key_id=claim.key_id,
        organization_id=claim.organization_id,
        amount=amount,
        key_window=None if claim.key_budget is None else claim.key_budget.start,
        project_id=None if project_budget is None else claim.project_id,
        project_window=None if project_budget is None else project_budget.start,
    )


def parse_rate_state(text: str) -> RateState:
    """`<key window>\t<project window>`, each `-` (no limits, not counted) or
    `requests,tokens,parallel,oldest,newest` (oldest/newest empty when the window is
    empty): how the PostgreSQL and Redis admission scripts report the windows."""
    key, _, project = text.partition("\t")
    return RateState(key=_rate_count(key), project=_rate_count(project))


def _rate_count(text: str) -> RateCount | None:
    if not text or text == "-":
        return None
    requests, tokens, parallel, oldest, newest = text.split(",")
    return RateCount(
        requests=int(requests),
        tokens=int(float(tokens)),
        parallel=int(parallel),
        oldest=float(oldest) if oldest else None,
        newest=float(newest) if newest else None,
    )


AUDIT_COLUMNS = "seq, time, actor, client, action, object_type, object_id, before, after"


def audit_entry_from_row(row: Sequence[Any]) -> AuditEntry:
    """Row order: AUDIT_COLUMNS (before/after as JSON text or null)."""
    return AuditEntry(
        seq=int(row[0]),
        time=str(row[1]),
        actor=row[2],
        client=row[3],
        action=row[4],
        object_type=row[5],
        object_id=row[6],
        before=None if row[7] is None else msgspec.json.decode(row[7]),
        after=None if row[8] is None else msgspec.json.decode(row[8]),
    )


def activity_from_row(row: Sequence[Any]) -> KeyActivity:
    """Row order: key_id, requests, prompt_tokens, completion_tokens, last_used_at."""
    return KeyActivity(
        key_id=row[0],
        requests=int(row[1]),
        prompt_tokens=int(row[2]),
        completion_tokens=int(row[3]),
        last_used_at=row[4] or None,
    )


def audit_filter(object_filter: str | None) -> tuple[str | None, str | None]:
    """`key` -> (type, None); `key:key_3f…` -> (type, id); anything else is an id."""
    if not object_filter:
        return None, None
    kind, sep, ident = object_filter.partition(":")
    if sep:
        return kind, ident
    if object_filter in AUDIT_OBJECT_TYPES:
        return object_filter, None
    return None, object_filter


AUDIT_OBJECT_TYPES = ("organization", "project", "project_rule", "key", "rule", "gateway")


def log_failed_release(future: asyncio.Future[Any]) -> None:
    """Done-callback for the release of a reservation whose caller left: nobody awaits
    it, so a failure is logged here rather than lost (the reservation then expires)."""
    if not future.cancelled() and (error := future.exception()) is not None:
        logging.getLogger("gateway.store").warning(
            "could not release an abandoned reservation (it expires on its own): %s", error
        )
