"""Usage ledger in Redis in front of the PostgreSQL key store (`usage_store: redis://…`).

Keys, projects, organizations and rules live in PostgreSQL (`PostgresStore`, read on
every request, so revocations apply at once). The hot path — reserve, settle,
release — is one Lua script each in Redis (`redis_scripts`), so admitting a request
never contends on a PostgreSQL row lock; the calls made in one turn of the event loop
go to Redis as one pipeline (`redis_batch`; a lone call on an idle connection is
written at once).

Durability bound: settled usage and credit changes are written to PostgreSQL by a
flush every `flush_interval` seconds (default 1 s) and on `close()`. Each flush is
applied exactly once (its batch id is recorded in `ledger_batches` in the same
transaction). If Redis loses its data, at most the usage settled during the last
`flush_interval` before the loss is lost; everything flushed is in PostgreSQL and
Redis reloads from there. In-flight reservations lost with Redis are simply gone
(their settlement is still charged).

Keys in Redis live under `redis_prefix`, by default derived from the database URL,
so deployments on different PostgreSQL databases can share one Redis safely.

Resolution: the ledger counts nano-USD (10⁻⁹ USD); a cost finer than that is
rounded up to the next nano-USD. Exact up to about 9 million USD per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any

import msgspec
import redis.asyncio as aioredis

from proxy.budgets import Budget
from proxy.secret_box import SecretBox
from proxy.store import redis_scripts
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
    NotFound,
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
    WindowUsage,
)
from proxy.store.common import (
    ADMISSION_TICKET_TTL,
    DEFAULT_RESERVATION_TTL,
    InstanceIds,
    admission_outcome,
    new_id,
    parse_money,
    parse_rate_state,
    reservation_for,
)
from proxy.store.postgres import PostgresStore
from proxy.store.redis_batch import ScriptBatcher
from proxy.store.resp import endpoint_from_url

__all__ = [
    "RedisLedgerStore",
    "default_prefix",
    "money_from_units",
    "units_from_money",
    "units_text",
]

_log = logging.getLogger("gateway.store")
_UNITS = Decimal(10) ** 9
_CENT = Decimal("0.01")
_LOAD_RETRIES = 200


def default_prefix(database_url: str) -> str:
    """`gw:<hash of the database URL>:`. The ledger flushes into one database, so gateways
    on different databases (or schemas) sharing one Redis must never share its keys."""
    digest = hashlib.sha256(database_url.encode("utf-8")).hexdigest()[:12]
    return f"gw:{digest}:"


def units_from_money(amount: Decimal) -> int:
    """Nano-USD, rounded up (a reservation or charge is never made smaller)."""
    return int((amount * _UNITS).to_integral_value(rounding=ROUND_CEILING))


def units_text(amount: Decimal) -> str:
    """`units_from_money` as the decimal text a script argument is sent as, without the
    int between (turning a Decimal into an int and that into text cost ~4 times as much
    as the Decimal's own text, which is plain digits for an integral value, unless it
    carries a positive exponent, `1E+12`, or is a negative zero, `-0`, which Redis does
    not read as an integer)."""
    units = (amount * _UNITS).to_integral_value(ROUND_CEILING)
    text = str(units)
    return str(int(units)) if "E" in text or text[0] == "-" else text


def money_from_units(units: int | str | bytes) -> Decimal:
    """Exact USD; shown with at least two decimals (`1.00`, `0.123456789`)."""
    value = Decimal(int(units)) / _UNITS
    cents = value.quantize(_CENT)
    return cents if cents == value else value.normalize()


class RedisLedgerStore:
    """The `Store` with keys in PostgreSQL and the usage ledger in Redis."""

    def __init__(
        self,
        database_url: str,
        usage_store_url: str,
        *,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        secrets: SecretBox | None = None,
        pool_size: int = 10,
        flush_interval: float = 1.0,
        redis_prefix: str | None = None,
        redis_connections: int = 32,
    ) -> None:
        self._pg = PostgresStore(
            database_url,
            reservation_ttl=reservation_ttl,
            secrets=secrets,
            pool_size=pool_size,
            holds_ledger=False,
        )
        # Blocking pool: a burst waits for a free connection instead of failing.
        self._redis_pool = aioredis.BlockingConnectionPool.from_url(
            usage_store_url, max_connections=redis_connections, timeout=30
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=self._redis_pool)
        self._prefix = redis_prefix or default_prefix(database_url)
        self._ttl_ms = round(reservation_ttl * 1000)
        self._ticket_ttl_ms = round(ADMISSION_TICKET_TTL * 1000)
        self._ids = InstanceIds()
        # A budget window's ledger outlives any reservation it holds (it is dropped
        # only once no reservation made in it can still be in flight, then reloads).
        self._window_ttl_ms = 2 * self._ttl_ms + 60_000
        # The same three figures as script arguments, formatted once (an int is turned
        # into text on every call otherwise).
        self._ttl_arg = str(self._ttl_ms)
        self._ticket_ttl_arg = str(self._ticket_ttl_ms)
        self._window_ttl_arg = str(self._window_ttl_ms)
        # The latest admitted amount and its units: its settlement sends them again.
        self._admitted_units: tuple[Decimal, str] = (Decimal(0), "0")
        self._flush_interval = flush_interval
        self._scripts = {
            name: self._redis.register_script(getattr(redis_scripts, name))
            for name in redis_scripts.__all__
        }
        self._flusher: asyncio.Task[None] | None = None
        # Set by close(): the flusher returns between flushes. It is told, not cancelled:
        # a cancellation landing inside a redis-py call can come out as a RedisError,
        # which the flusher's retry catches, so it kept looping and close() waited on it
        # forever (seen in CI).
        self._stopping = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._batch = ScriptBatcher(
            self._redis, self._scripts, self._prefix, endpoint_from_url(usage_store_url)
        )
        # Settlements written to Redis whose reply has not arrived (see `settle`), and
        # the callers of `_settled` waiting for there to be none.
        self._unconfirmed = 0
        self._confirmations: list[asyncio.Future[None]] = []

    async def _script(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](args=[self._prefix, *args])

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    # -- lifecycle ------------------------------------------------------------------
    async def migrate(self) -> None:
        await self._pg.migrate()
        await self._reclaim_and_start()

    async def _reclaim_and_start(self) -> None:
        await self._script("RECLAIM")
        self._start_flusher()

    def _start_flusher(self) -> None:
        if self._stopping.is_set():
            return  # closing: close() writes what is left
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._flush_interval)
            if self._stopping.is_set():
                return
            try:
                await self.flush()
            except Exception as exc:
                # A failed flush (PostgreSQL or Redis down) stays pending and is retried.
                _log.warning("usage flush to PostgreSQL failed, will retry: %s", exc)

    async def close(self) -> None:
        self._stopping.set()  # first: a listener whose cancellation is swallowed sees it
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._flusher is not None:
            await self._flusher  # returns after the flush under way, if any
            self._flusher = None
        try:
            await self._batch.aclose()
            await self.flush()
        finally:
            await self._redis.aclose()
            await self._redis_pool.aclose()
            await self._pg.close()

    async def ensure_defaults(self) -> None:
        await self._pg.ensure_defaults()

    def hash_token(self, token: str) -> str:
        return self._pg.hash_token(token)

    # -- flushing to PostgreSQL -------------------------------------------------------
    async def flush(self) -> int:
        """Write the usage settled so far to PostgreSQL; returns the batches written."""
        written = 0
        await self._settled()  # what this process settled is in this flush
        async with self._flush_lock:
            # Loop: a resumed unfinished batch may be followed by fresh pending usage.
            for _ in range(2):
                batch = await self._script("FLUSH_START", new_id("batch"))
                if not batch:
                    break
                batch_id = self._text(batch[0])
                windows = self._pairs(batch[3]) if len(batch) > 3 else []
                await self._apply_batch(
                    batch_id, self._pairs(batch[1]), self._pairs(batch[2]), windows
                )
                await self._script("FLUSH_DONE", batch_id)
                written += 1
        return written

    def _pairs(self, flat: list[Any]) -> list[tuple[str, Decimal]]:
        return [
            (self._text(flat[i]), money_from_units(flat[i + 1])) for i in range(0, len(flat), 2)
        ]

    async def _apply_batch(
        self,
        batch_id: str,
        keys: list[tuple[str, Decimal]],
        orgs: list[tuple[str, Decimal]],
        windows: list[tuple[str, Decimal]],
    ) -> None:
        async with self._pg.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO ledger_batches (id) VALUES (%s) ON CONFLICT (id) DO NOTHING "
                "RETURNING id",
                (batch_id,),
            )
            if await cursor.fetchone() is None:
                return  # this batch was applied already (a previous flush died before DONE)
            async with conn.cursor() as cur:
                # Sorted: rows are locked in the same order by every flusher.
                await cur.executemany(
                    "UPDATE api_keys SET usage = usage + %s WHERE id = %s",
                    [(delta, key) for key, delta in sorted(keys)],
                )
                await cur.executemany(
                    "UPDATE organizations SET credits = credits + %s WHERE id = %s",
                    [(delta, org) for org, delta in sorted(orgs)],
                )
                await cur.executemany(
                    "INSERT INTO budget_usage (subject, window_start, usage) VALUES (%s, %s, %s) "
                    "ON CONFLICT (subject, window_start) "
                    "DO UPDATE SET usage = budget_usage.usage + excluded.usage",
                    [(*_window_parts(name), delta) for name, delta in sorted(windows)],
                )

    # -- loading a ledger entry from PostgreSQL ---------------------------------------
    async def _load(self, key: ApiKey, org: Organization | None) -> None:
        for _ in range(_LOAD_RETRIES):
            gen = self._text(await self._redis.get(self._prefix + "gen") or b"0")
            # Read PostgreSQL after `gen`: the script refuses if a flush ran meanwhile.
            fresh_key = await self._pg.get_key(key.id)
            fresh_org = None if org is None else await self._pg.get_organization(org.id)
            outcome = await self._script(
                "LOAD",
                gen,
                key.id,
                units_from_money(fresh_key.usage),
                "" if fresh_key.usage_limit is None else units_from_money(fresh_key.usage_limit),
                "" if fresh_org is None else fresh_org.id,
                "0" if fresh_org is None else units_from_money(fresh_org.credits),
            )
            if self._text(outcome) == "ok":
                return
            await asyncio.sleep(0.005)
        raise TimeoutError("the Redis ledger could not be loaded: a flush kept running")

    async def _load_windows(self, names: list[str]) -> None:
        """Load budget windows (`k:<key>|<start>`, `p:<project>|<start>`) from PostgreSQL."""
        for _ in range(_LOAD_RETRIES):
            gen = self._text(await self._redis.get(self._prefix + "gen") or b"0")
            args: list[Any] = [gen, self._window_ttl_ms]
            async with self._pg.transaction() as conn:
                for name in names:
                    cursor = await conn.execute(
                        "SELECT usage FROM budget_usage WHERE subject = %s AND window_start = %s",
                        _window_parts(name),
                    )
                    row = await cursor.fetchone()
                    args += [name, units_from_money(Decimal(0) if row is None else row[0])]
            if self._text(await self._script("LOAD_WINDOWS", *args)) == "ok":
                return
            await asyncio.sleep(0.005)
        raise TimeoutError("the Redis ledger could not be loaded: a flush kept running")

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        names = [
            None if key is None else f"k:{key[0]}|{key[1]}",
            None if project is None else f"p:{project[0]}|{project[1]}",
        ]
        figures = [WindowUsage(), WindowUsage()]
        asked = [(i, name) for i, name in enumerate(names) if name is not None]
        await self._settled()
        for attempt in range(2):
            if not asked:
                break
            # Both windows in one call of this turn's pipeline.
            values = await self._batch.call("WINDOWS", *(name for _, name in asked))
            missing = []
            for n, (i, name) in enumerate(asked):
                usage, reserved = values[2 * n], values[2 * n + 1]
                if usage == b"":
                    missing.append(name)
                else:
                    figures[i] = WindowUsage(
                        usage=money_from_units(usage), reserved=money_from_units(reserved)
                    )
            if not missing or attempt:
                break
            await self._load_windows(missing)
        return figures[0], figures[1]

    async def _ledger(self, key_id: str, org_id: str) -> tuple[list[Any], list[Any]]:
        """The key's [usage, reserved] and the org's [credits, reserved], with expired
        reservations reclaimed first so they never hold a key after its TTL."""
        fields = list(await self._batch.call("LEDGER", key_id, org_id))
        fields += [None] * (4 - len(fields))  # defensive: a trailing nil ends a Lua array
        return fields[:2], fields[2:4]

    # -- request path ---------------------------------------------------------------
    async def key_context(self, token_hash: str) -> KeyContext | None:
        await self._settled()
        context = await self._pg.key_context(token_hash)
        if context is None:
            return None
        key_fields, org_fields = await self._ledger(context.key.id, context.organization.id)
        if None in key_fields or None in org_fields:
            await self._load(context.key, context.organization)
            key_fields, org_fields = await self._ledger(context.key.id, context.organization.id)
        return KeyContext(
            key=_with_usage(context.key, money_from_units(key_fields[0])),
            reserved=money_from_units(key_fields[1]),
            rules=context.rules,
            project=context.project,
            organization=msgspec.structs.replace(
                context.organization, credits=money_from_units(org_fields[0])
            ),
            credits_reserved=money_from_units(org_fields[1]),
            project_rules=context.project_rules,
            token_expires_at=context.token_expires_at,
        )

    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        amount = parse_money(amount, "reservation amount")
        self._start_flusher()
        if self._unconfirmed:
            await self._settled()
        reservation = Reservation(
            id=self._ids("res"), key_id=key_id, organization_id=organization_id, amount=amount
        )
        for _ in range(3):
            outcome = self._text(
                await self._batch.call(
                    "RESERVE",
                    reservation.id,
                    key_id,
                    organization_id or "",
                    units_from_money(amount),
                    self._ttl_ms,
                    undo=lambda reply: (
                        ("RELEASE", _release_args(reservation, "", ()))
                        if self._text(reply) == "ok"
                        else None
                    ),
                )
            )
            if outcome == "ok":
                return reservation
            if outcome != "load":
                return None
            org = (
                None
                if organization_id is None
                else await self._pg.get_organization(organization_id)
            )
            await self._load(await self._pg.get_key(key_id), org)
        raise NotFound(f"key `{key_id}` could not be loaded into the Redis ledger")

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        amount = parse_money(claim.amount, "reservation amount")
        self._start_flusher()
        if self._unconfirmed:
            await self._settled()
        reservation = reservation_for(claim, amount, self._ids("res"))
        org = claim.organization_id or ""
        key_limited, project_limited = claim.key_limits.any, claim.project_limits.any
        if (
            claim.key_budget is None
            and claim.project_budget is None
            and not key_limited
            and not project_limited
        ):
            # No window nor rate limit (a plain key): nothing more to name or send.
            key_window = project_window = ""
            subjects: tuple[str, ...] = ()
        else:
            key_window, project_window = _window_names(reservation)
            subjects = _subjects(claim.key_id, claim.project_id, key_limited, project_limited)

        def undo(reply: Any) -> tuple[str, tuple[Any, ...]] | None:
            outcome = self._text(reply)
            if outcome.startswith("ok"):
                return ("RELEASE", _release_args(reservation, "forget", subjects))
            return ("WITHDRAW", (ticket, claim.key_id, org)) if outcome == "queued" else None

        # Without rate limits the script reads nothing after the window ttl, and without
        # windows either nothing after the ticket ttl.
        controls: tuple[str | int, ...] = ()
        if subjects or key_window or project_window:
            key_budget = "" if claim.key_budget is None else units_text(claim.key_budget.amount)
            project_budget = (
                "" if claim.project_budget is None else units_text(claim.project_budget.amount)
            )
            controls = (
                key_budget,
                key_window,
                project_budget,
                project_window,
                self._window_ttl_arg,
            )
            if subjects:
                controls += (
                    claim.project_id or "",
                    repr(claim.now),
                    claim.tokens,
                    *_limit_args(claim.key_limits),
                    *_limit_args(
                        claim.project_limits if claim.project_id is not None else NO_RATE_LIMITS
                    ),
                )
        units = units_text(amount)
        self._admitted_units = (amount, units)
        for _ in range(3):
            outcome = self._text(
                await self._batch.call(
                    "ADMIT",
                    ticket,
                    reservation.id,
                    claim.key_id,
                    org,
                    units,
                    self._ttl_arg,
                    self._ticket_ttl_arg,
                    *controls,
                    undo=undo,
                )
            )
            if outcome != "load":
                return admission_outcome(outcome, claim, reservation)
            owner = None if not org else await self._pg.get_organization(org)
            await self._load(await self._pg.get_key(claim.key_id), owner)
            windows = [name for name in (key_window, project_window) if name]
            if windows:
                await self._load_windows(windows)
        raise NotFound(f"key `{claim.key_id}` could not be loaded into the Redis ledger")

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        await self._batch.call("WITHDRAW", ticket, claim.key_id, claim.organization_id or "")

    def subscribe(self, wake: Callable[[str, str | None], None]) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(wake))

    async def _listen(self, wake: Callable[[str, str | None], None]) -> None:
        """Relay the ledger's `wake` messages (other instances' settlements while someone
        waits) to `wake`, resubscribing after a failure (waiters poll meanwhile)."""
        while not self._stopping.is_set():
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._prefix + "wake")
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            key, _, org = data.decode("utf-8").partition("\t")
                            wake(key, org or None)
            except (aioredis.RedisError, OSError) as exc:
                if self._stopping.is_set():
                    return  # closing: the error may be close()'s cancellation in disguise
                _log.warning("admission notifications from Redis stopped: %s", exc)
                await asyncio.sleep(1.0)

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        cost = parse_money(actual_cost, "actual cost")
        self._start_flusher()
        # A reservation with no window nor rate limit: the script reads nothing more.
        rest: tuple[str | int, ...] = ()
        if (
            reservation.key_window is not None
            or reservation.project_window is not None
            or reservation.rate is not None
        ):
            key_window, project_window = _window_names(reservation)
            subjects = _reservation_subjects(reservation)
            if key_window or project_window or subjects:
                rest = (key_window, project_window, self._window_ttl_arg, tokens, *subjects)
        # The reservation of the latest admission (one request at a time: this one)
        # has its units already.
        admitted, units = self._admitted_units
        args = (
            reservation.id,
            reservation.key_id,
            reservation.organization_id or "",
            units_text(cost),
            units if reservation.amount is admitted else units_text(reservation.amount),
            *rest,
        )
        self._unconfirmed += 1  # before the write: a failed write replies at once
        if not self._batch.write_now("SETTLE", self._settle_confirmed, *args):
            self._unconfirmed -= 1
            await self._batch.call("SETTLE", *args)
            return
        # Written at once on an idle connection (one request at a time): its reply is
        # not awaited, which takes a Redis round trip off the request's latency (at one
        # request at a time the reply is in long before the next request comes). This
        # process's next ledger call waits for it (`_settled`: also when Redis lost
        # the script and it runs again through redis-py, out of the connection's order).
        # Another client's command, written after this request's answer, reaches
        # Redis after this call, which was written before the answer; even if it were
        # read first, it would see the reservation still held, which only ever refuses
        # more, never admits past a limit. A failure after the write is logged: its
        # outcome is unknown either way, as it was when the caller got the error.
        # The reply goes to `_settle_confirmed` as it is read, with no future: a
        # future's done callbacks would take the loop one more turn a request.

    def _settle_confirmed(self, reply: Any) -> None:
        """A settlement written at once was answered (or failed: logged)."""
        self._unconfirmed -= 1
        if isinstance(reply, BaseException):
            _log.warning("a settlement written to Redis may not have been applied: %s", reply)
        if not self._unconfirmed and self._confirmations:
            waiting, self._confirmations = self._confirmations, []
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    async def _settled(self) -> None:
        """Wait for the replies of the settlements not awaited by their callers (a
        failed one was logged by `_settle_confirmed`)."""
        while self._unconfirmed:
            future = asyncio.get_running_loop().create_future()
            self._confirmations.append(future)
            await future

    async def release(self, reservation: Reservation) -> None:
        await self._batch.call(
            "RELEASE", *_release_args(reservation, "", _reservation_subjects(reservation))
        )

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        await self._settled()
        text = await self._batch.call("RATE_WINDOWS", repr(now), f"k:{key_id}", f"p:{project_id}")
        return parse_rate_state(self._text(text))

    async def reclaim_expired(self) -> int:
        return int(await self._script("RECLAIM"))

    # -- organizations (credits live in the ledger) -----------------------------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization:
        return await self._pg.create_organization(org_id, credits)

    async def set_credits(self, org_id: str, credits: Decimal) -> Organization:
        amount = parse_money(credits, "credits", allow_negative=True)
        for _ in range(3):
            org = await self._pg.get_organization(org_id)
            outcome = self._text(
                await self._script("SET_CREDITS", org_id, units_from_money(amount))
            )
            if outcome == "ok":
                await self.flush()  # an admin change is durable when the command returns
                return msgspec.structs.replace(org, credits=amount)
            await self._load_org(org)
        raise NotFound(f"organization `{org_id}` could not be loaded into the Redis ledger")

    async def _load_org(self, org: Organization) -> None:
        for _ in range(_LOAD_RETRIES):
            gen = self._text(await self._redis.get(self._prefix + "gen") or b"0")
            fresh = await self._pg.get_organization(org.id)
            outcome = await self._script(
                "LOAD", gen, "", "0", "", fresh.id, units_from_money(fresh.credits)
            )
            if self._text(outcome) == "ok":
                return
            await asyncio.sleep(0.005)
        raise TimeoutError("the Redis ledger could not be loaded: a flush kept running")

    async def _overlay_org(self, org: Organization) -> Organization:
        await self._settled()
        credits = await self._redis.hget(f"{self._prefix}o:{org.id}", "credits")
        if credits is None:
            pending = await self._redis.hget(f"{self._prefix}pend:o", org.id)
            if pending is None:
                return org
            return msgspec.structs.replace(org, credits=org.credits + money_from_units(pending))
        return msgspec.structs.replace(org, credits=money_from_units(credits))

    async def get_organization(self, org_id: str) -> Organization:
        return await self._overlay_org(await self._pg.get_organization(org_id))

    async def list_organizations(self) -> list[Organization]:
        return [await self._overlay_org(o) for o in await self._pg.list_organizations()]

    async def rename_organization(self, org_id: str, name: str) -> Organization:
        return await self._overlay_org(await self._pg.rename_organization(org_id, name))

    # -- projects: PostgreSQL only ----------------------------------------------------
    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project:
        return await self._pg.create_project(project_id, org_id, mode)

    async def get_project(self, project_id: str) -> Project:
        return await self._pg.get_project(project_id)

    async def list_projects(self) -> list[Project]:
        return await self._pg.list_projects()

    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project:
        return await self._pg.set_project_mode(project_id, mode)

    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project:
        return await self._pg.set_provider_key(project_id, provider, source)

    async def protect_secrets(self) -> tuple[int, int]:
        return await self._pg.protect_secrets()

    async def archive_project(self, project_id: str) -> Project:
        return await self._pg.archive_project(project_id)

    async def rename_project(self, project_id: str, name: str) -> Project:
        return await self._pg.rename_project(project_id, name)

    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        return await self._pg.add_project_rule(project_id, rule_type, values)

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]:
        return await self._pg.list_project_rules(project_id)

    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule:
        return await self._pg.set_project_rule_status(project_id, rule_id, status)

    async def remove_project_rule(self, project_id: str, rule_id: str) -> None:
        await self._pg.remove_project_rule(project_id, rule_id)

    # -- keys (usage lives in the ledger) ---------------------------------------------
    async def _overlay_key(self, key: ApiKey) -> ApiKey:
        await self._settled()
        usage = await self._redis.hget(f"{self._prefix}k:{key.id}", "usage")
        if usage is None:
            pending = await self._redis.hget(f"{self._prefix}pend:k", key.id)
            if pending is None:
                return key
            return _with_usage(key, key.usage + money_from_units(pending))
        return _with_usage(key, money_from_units(usage))

    async def create_key(
        self,
        project_id: str,
        usage_limit: Decimal | None,
        description: str,
        *,
        expires_at: str | None = None,
        rate_limits: RateLimits = NO_RATE_LIMITS,
    ) -> tuple[ApiKey, str]:
        return await self._pg.create_key(
            project_id, usage_limit, description, expires_at=expires_at, rate_limits=rate_limits
        )

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        # The request path passes the limits in each claim: nothing to load into Redis.
        return await self._overlay_key(await self._pg.set_key_rate_limits(key_id, limits))

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        return await self._pg.set_project_rate_limits(project_id, limits)

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        return await self._overlay_key(await self._pg.set_key_expiry(key_id, expires_at))

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        key, token = await self._pg.rotate_key(key_id, grace_seconds)
        return await self._overlay_key(key), token

    async def get_key(self, key_id: str) -> ApiKey:
        return await self._overlay_key(await self._pg.get_key(key_id))

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        return [await self._overlay_key(k) for k in await self._pg.list_keys(project_id)]

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        return await self._overlay_key(await self._pg.set_key_status(key_id, status))

    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey:
        key = await self._pg.set_usage_limit(key_id, usage_limit)
        limit = "" if key.usage_limit is None else str(units_from_money(key.usage_limit))
        # Only an already loaded ledger entry needs the new limit; a missing one loads it.
        await self._redis.eval(
            "if redis.call('EXISTS', KEYS[1]) == 1 then "
            "redis.call('HSET', KEYS[1], 'limit', ARGV[1]) end return 1",
            1,
            f"{self._prefix}k:{key_id}",
            limit,
        )
        return await self._overlay_key(key)

    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        # The budget itself lives in PostgreSQL: each request's claim carries it.
        return await self._overlay_key(await self._pg.set_key_budget(key_id, budget))

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        return await self._pg.set_project_budget(project_id, budget)

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        return await self._overlay_key(await self._pg.rename_key(key_id, description))

    # -- IAM rules: PostgreSQL only ---------------------------------------------------
    async def add_rule(self, key_id: str, rule_type: RuleType, values: tuple[str, ...]) -> IamRule:
        return await self._pg.add_rule(key_id, rule_type, values)

    async def list_rules(self, key_id: str) -> list[IamRule]:
        return await self._pg.list_rules(key_id)

    async def remove_rule(self, key_id: str, rule_id: str) -> None:
        await self._pg.remove_rule(key_id, rule_id)

    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        return await self._pg.set_rule_status(key_id, rule_id, status)

    # -- audit log: PostgreSQL only ---------------------------------------------------
    async def add_key_activity(self, rows: list[KeyActivity]) -> None:
        await self._pg.add_key_activity(rows)

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        return await self._pg.key_activity(key_ids)

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._pg.record_audit(entry)

    async def list_audit(
        self, since: str | None, object_filter: str | None, limit: int
    ) -> list[AuditEntry]:
        return await self._pg.list_audit(since, object_filter, limit)


def _window_names(reservation: Reservation) -> tuple[str, str]:
    """The ledger names of the reservation's budget windows ('' for none)."""
    key = (
        "" if reservation.key_window is None else f"k:{reservation.key_id}|{reservation.key_window}"
    )
    project = (
        ""
        if reservation.project_window is None
        else f"p:{reservation.project_id}|{reservation.project_window}"
    )
    return key, project


def _release_args(
    reservation: Reservation, forget: str, subjects: tuple[str, ...]
) -> tuple[str | int, ...]:
    """RELEASE's arguments: what names the reservation's member in `held` (as ADMIT,
    RESERVE and SETTLE are given it), then its rate subjects."""
    return (
        reservation.id,
        forget,
        reservation.key_id,
        reservation.organization_id or "",
        units_from_money(reservation.amount),
        *_window_names(reservation),
        *subjects,
    )


def _window_parts(name: str) -> tuple[str, str]:
    """`k:key_1|2026-01-01T00:00:00Z` -> (`k:key_1`, `2026-01-01T00:00:00Z`)."""
    subject, _, start = name.rpartition("|")
    return subject, start


def _limit_args(limits: RateLimits) -> tuple[str, str, str, str]:
    """A subject's rated flag and ceilings as the ADMIT script reads them ('' = none)."""

    def text(value: int | None) -> str:
        return "" if value is None else str(value)

    return (
        "1" if limits.any else "",
        text(limits.rpm),
        text(limits.tpm),
        text(limits.max_parallel),
    )


def _subjects(key_id: str, project_id: str | None, key: bool, project: bool) -> tuple[str, ...]:
    rated_project = project and project_id is not None
    return (
        *((f"k:{key_id}",) if key else ()),
        *((f"p:{project_id}",) if rated_project else ()),
    )


def _reservation_subjects(reservation: Reservation) -> tuple[str, ...]:
    rate = reservation.rate
    if rate is None:
        return ()
    return _subjects(
        reservation.key_id, reservation.project_id, rate.key is not None, rate.project is not None
    )


def _with_usage(key: ApiKey, usage: Decimal) -> ApiKey:
    return msgspec.structs.replace(key, usage=usage)
