"""The request path: credentials -> key context -> input document -> decision -> forward.

Framework-free (the Litestar routes only translate a `Reply`), so every step can be
exercised with small fakes. No authorization decision is made here: allow/deny and
every documented message come from the policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import msgspec

from proxy.admission import Admission, TimedOut
from proxy.api_families import (
    ANTHROPIC_OPERATIONS,
    asks_stream_usage,
    auth_header,
    max_tokens_field,
    stream_error_event,
    stream_text_reader,
    stream_usage_reader,
    upstream_headers,
    whole_usage,
)
from proxy.budget_facts import (
    NO_BUDGETS,
    BudgetFacts,
    KnownFacts,
    RequestWindows,
    WindowSubjects,
    WindowTimes,
    budget_facts,
    facts_of,
    request_windows,
    window_subjects,
    with_budgets,
)
from proxy.budgets import Budget, time_zone
from proxy.cancel_scopes import Shield, shielded
from proxy.catalog import Catalog, ModelPrice
from proxy.config import GatewayConfig
from proxy.cost_bound import CostBound, Unbounded, cost_bound
from proxy.credentials import read_token
from proxy.decision_log import DecisionRecord
from proxy.documents import (
    Decision,
    Operation,
    RateLimitValues,
    RequestDocument,
    engine_input,
)
from proxy.errors import anthropic_error_body, error_body
from proxy.input_document import build_input, engine_document, gateway_info
from proxy.key_activity import ActivityRecorder
from proxy.key_cache import KeyCachingStore
from proxy.metrics import Metrics
from proxy.mock_provider import MockProvider
from proxy.policy import LoadedPolicy, PolicyHolder
from proxy.providers import ProviderDirectory, ProviderProblem, Route
from proxy.rate_headers import rate_lines
from proxy.request_body import ParsedBody, parse_body
from proxy.sse import SseRelay, TokenUsage
from proxy.store.base import (
    NO_RATE_LIMITS,
    Claim,
    KeyContext,
    RateLimits,
    RateReason,
    RateState,
    Refused,
    Reservation,
)
from proxy.upstream import (
    UpstreamCall,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeout,
)

__all__ = ["Gateway", "Reply", "SecondClock", "utc_now"]

logger = logging.getLogger("gateway")
_encoder = msgspec.json.Encoder()
# Admissions tried while the store refuses on settled figures the policy accepts (only
# when a limit or the credits change during the request).
_ADMIT_ATTEMPTS = 3
# The metrics' reason for a denial whose decision names no reason code (checks 1-6 and
# 8 of the contract answer with a documented message only), by its status.
_DENIAL_CLASSES = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "not_found",
    410: "project_archived",
    429: "too_many_requests",
    500: "policy_error",
    502: "bad_gateway",
}
_BUSY_MESSAGE = "Too many requests in flight for this key's usage limit; retry after 1 second"


class SecondClock:
    """RFC 3339 UTC time to the second, formatted once per second rather than per request."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._second = second
        return self._text


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What to answer: a whole body, or a stream of byte chunks."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    # Run after the response, sent or not: closes a stream that was never iterated.
    cleanup: Callable[[], Awaitable[None]] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # OpenAI's rate-limit lines (`proxy.rate_headers.rate_lines`), already rendered as
    # HTTP header lines; sent after `headers`.
    rate_lines: bytes = b""


class _Allowed(msgspec.Struct, frozen=True, kw_only=True):
    """A request the policy allowed, with everything needed to forward and settle it."""

    operation: Operation
    decision: Decision
    context: KeyContext
    body: ParsedBody
    price: ModelPrice | None
    bound: CostBound
    reservation: Reservation
    route: Route
    headers: tuple[tuple[str, str], ...]  # the client's headers that go upstream
    # OpenAI's rate-limit lines of the admission (`Reply.rate_lines`), b"" for none.
    rate_lines: bytes = b""


class _Asked(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the client asked it, and the policy generation that judges it."""

    operation: Operation
    request: RequestDocument
    parsed: ParsedBody
    body_size: int
    headers: tuple[tuple[str, str], ...]  # the client's headers that go upstream
    token_hash: str  # of the token presented ("" for none)
    policy: LoadedPolicy
    record: DecisionRecord  # mutable on purpose: filled in as the request goes


class _Iteration:
    """Whether a relayed stream was ever iterated (its generator's cleanup ran only then)."""

    __slots__ = ("began",)

    def __init__(self) -> None:
        self.began = False


class Gateway:
    """App-wide request handling; one instance per app, built in the lifespan."""

    def __init__(
        self,
        *,
        config: GatewayConfig,
        store: KeyCachingStore,
        policy: PolicyHolder,
        upstream: UpstreamClient,
        providers: ProviderDirectory,
        metrics: Metrics,
        clock: Callable[[], str] | None = None,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._admission = Admission(store, wait_seconds=config.admission_wait_seconds)
        self._policy = policy
        self._upstream = upstream
        self._providers = providers
        self._metrics = metrics
        self._mock = MockProvider()
        self._clock = clock or SecondClock()
        self._activity = activity
        self._gateway = gateway_info(providers.credentialed)
        self._gateway_value: dict[str, Any] = msgspec.to_builtins(self._gateway)
        self._windows = WindowTimes(time_zone(config.budget_time_zone))
        self._known_facts = KnownFacts()
        self._epoch = _EpochOf()

    def request_epoch(self) -> float:
        """Now on the request clock (epoch seconds): the rate windows' clock."""
        return self._epoch(self._clock())

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted (413 above)."""
        return self._config.max_body_bytes

    # -- replies -------------------------------------------------------------------

    def error(self, status: int, message: str, operation: Operation | None = None) -> Reply:
        """A gateway rejection in the configured error format; on the Messages API in
        Anthropic's (proxy/errors.py says why)."""
        if operation in ANTHROPIC_OPERATIONS:
            return Reply(status=status, body=anthropic_error_body(status, message))
        return Reply(status=status, body=error_body(status, message, self._config.error_format))

    def _finish(self, record: DecisionRecord, reply: Reply) -> Reply:
        if reply.stream is None:
            record.emit(reply.status)
            self._metrics.request(record.operation, reply.status)
            if not record.allowed and reply.status >= 400:
                self._metrics.denial(
                    record.reason_code or _DENIAL_CLASSES.get(reply.status, "other")
                )
        return reply

    # -- entry point -----------------------------------------------------------------

    async def handle(
        self, operation: Operation, headers: Mapping[str, str], client_ip: str, body: bytes
    ) -> Reply:
        """Answer one API request (`body` is empty for `models.list`)."""
        record = DecisionRecord(operation, self._note_activity)
        record.client = client_ip
        try:
            return await self._handle(operation, headers, client_ip, body, record)
        except asyncio.CancelledError:
            # The client left and the work was cancelled: still one decision line.
            self._abandoned(record, 499, "client disconnected")
            raise
        except Exception:
            self._abandoned(record, 500, "gateway error (see the traceback)")
            raise

    def _note_activity(self, record: DecisionRecord) -> None:
        if record.key_id is not None and self._activity is not None:
            self._activity.note(record.key_id, record.prompt_tokens, record.completion_tokens)

    def _abandoned(self, record: DecisionRecord, status: int, reason: str) -> None:
        record.reason = record.reason or reason
        record.emit(status)
        self._metrics.request(record.operation, status)

    async def _handle(
        self,
        operation: Operation,
        headers: Mapping[str, str],
        client_ip: str,
        body: bytes,
        record: DecisionRecord,
    ) -> Reply:
        asked, context, facts, decision = await self._judge(
            operation, headers, client_ip, body, record
        )
        record.key_id = context.key.id if context else None
        if decision is None:
            return self._finish(record, self._no_decision(operation))
        if not decision.allow:
            record.reason = decision.message
            record.reason_code = decision.reasons[0].code if decision.reasons else None
            reply = self.error(decision.status, decision.message, operation)
            reply = _with_headers(reply, _budget_reset(record.reason_code, facts))
            return self._finish(record, await self._with_rate_windows(reply, context, asked))
        if context is None:  # a policy that allows an unknown key is broken
            return self._finish(record, self._no_decision(operation))
        record.allowed = True
        record.provider = decision.provider
        if operation == "models.list":
            reply = self._models(decision, asked.policy.catalog)
            return self._finish(record, await self._with_rate_windows(reply, context, asked))
        return self._finish(
            record, await self._reserve_and_forward(asked, context, facts, decision)
        )

    async def _judge(
        self,
        operation: Operation,
        headers: Mapping[str, str],
        client_ip: str,
        body: bytes,
        record: DecisionRecord,
    ) -> tuple[_Asked, KeyContext | None, BudgetFacts, Decision | None]:
        """The policy's decision, with credentials checked before the body is read: a
        request without a known key is judged with no body at all, so it always gets the
        documented 401 and an anonymous caller cannot make the gateway parse anything."""
        token = read_token(headers)
        context = None
        # INVARIANT: every re-read uses the hash of the token presented, not the key's
        # current hash: after a rotation they differ, and only the former carries the
        # presented token's own expiry (`token_expires_at`).
        token_hash = "" if token is None else self._store.hash_token(token)
        if token is not None:
            # The key cache serves only calls that reserve usage: there the atomic
            # reservation re-checks the live figures. A models list reserves nothing, so
            # it reads the live record.
            context = await self._store.key_context(token_hash, fresh=operation == "models.list")
        readable = context is not None and operation != "models.list"
        forwarded = upstream_headers(operation, headers) if readable else None
        asked = self._asked(operation, token_hash, client_ip, body, forwarded, record)
        first = self._first_budget_facts(asked, context)
        facts = first if isinstance(first, BudgetFacts) else await first
        decision = self._decide(asked, context, facts)
        if context is not None and decision is not None and not decision.allow:
            # The record may come from the key cache: a refusal is always judged on the
            # live one, so a limit raised or a key re-enabled elsewhere counts at once.
            context = await self._store.key_context(token_hash, fresh=True)
            facts = await self._budget_facts(asked, context)
            decision = self._decide(asked, context, facts)
        return asked, context, facts, decision

    async def _budget_facts(self, asked: _Asked, context: KeyContext | None) -> BudgetFacts:
        """The period budgets' current windows at the request's own time (one clock
        reading per request: the policy and the admission see the same windows), with
        the windows' live figures."""
        chosen = self._policy_budgets(asked, context)
        return await budget_facts(self._store, context, asked.request.time, self._windows, chosen)

    def _first_budget_facts(
        self, asked: _Asked, context: KeyContext | None
    ) -> BudgetFacts | Coroutine[Any, Any, BudgetFacts]:
        """The first decision's budget facts: the windows' figures may come from the key
        cache (admission holds the live figures, and a refusal re-reads). Served from
        memory without a coroutine when no figures are needed or the cache holds them
        (the facts themselves kept per key for the record and second they were made
        for); else the coroutine that reads them, for the caller to await."""
        if context is None:
            return NO_BUDGETS
        time = asked.request.time
        if asked.policy.sets_budgets:
            chosen = self._policy_budgets(asked, context)
        elif context.key.budget is None and context.project.budget is None:
            return NO_BUDGETS  # `request_windows`' answer: no windows, no figures
        else:
            chosen = None
        if chosen is None:
            known = self._known_facts.last(context, time)
            if (
                known is not None
                and self._store.cached_budget_usage(known.subjects) is known.figures
            ):
                return known.facts
        current = request_windows(context, time, self._windows, chosen)
        if current is None:
            return NO_BUDGETS
        subjects = window_subjects(context, current)
        figures = self._store.cached_budget_usage(subjects)
        if figures is None:
            return self._recent_budget_facts(current, subjects)
        facts = facts_of(current, figures)
        if chosen is None:
            self._known_facts.keep(context, time, subjects, figures, facts)
        return facts

    async def _recent_budget_facts(
        self, current: RequestWindows, subjects: WindowSubjects
    ) -> BudgetFacts:
        return facts_of(current, await self._store.recent_budget_usage(*subjects))

    def _policy_budgets(
        self, asked: _Asked, context: KeyContext | None
    ) -> tuple[Budget | None, Budget | None] | None:
        """The budgets the policy files apply to this key and project (None: they set
        none, the key store's apply)."""
        policy = asked.policy
        if context is None or not policy.sets_budgets:
            return None
        return policy.policy_budgets(engine_document(asked.request, context, self._gateway_value))

    def _asked(
        self,
        operation: Operation,
        token_hash: str,
        client_ip: str,
        body: bytes,
        forwarded: tuple[tuple[str, str], ...] | None,
        record: DecisionRecord,
    ) -> _Asked:
        """`forwarded` is None when the body must not be read (no known key, or nothing
        to read), else the client headers that go upstream with it."""
        parsed = (
            parse_body(operation, body, self._config.max_json_depth)
            if forwarded is not None
            else ParsedBody(payload=None)
        )
        record.model = parsed.model
        request = RequestDocument(
            operation=operation,
            token_present=bool(token_hash),
            model=parsed.model,
            body_error=parsed.error,
            max_tokens=parsed.max_tokens,
            stream=parsed.stream,
            time=self._clock(),
            client_ip=client_ip,
        )
        # INVARIANT: one policy generation judges the whole request, even across a reload.
        return _Asked(
            operation=operation,
            request=request,
            parsed=parsed,
            body_size=len(body),
            headers=forwarded or (),
            token_hash=token_hash,
            policy=self._policy.current,
            record=record,
        )

    def _decide(
        self,
        asked: _Asked,
        context: KeyContext | None,
        facts: BudgetFacts,
        rate: RateState | None = None,
        now: float | None = None,
        limits: tuple[RateLimits, RateLimits] | None = None,
    ) -> Decision | None:
        """`rate`: the windows the store saw at request time `now` when it refused a
        rate limit under `limits` (the request's token bound is then in `asked.request`);
        `facts`: the period budgets' current windows."""
        started = time.perf_counter()
        if rate is None and limits is None:
            # Facts kept for the record and second come with its members (budgeted keys).
            members = (
                None
                if context is None or facts is NO_BUDGETS
                else self._known_facts.members(context, facts)
            )
            document = engine_document(
                asked.request, context, self._gateway_value, facts.key, facts.project, members
            )
        else:
            document = engine_input(
                build_input(
                    asked.request,
                    context,
                    self._gateway,
                    rate,
                    now,
                    limits,
                    facts.key,
                    facts.project,
                )
            )
        decision = asked.policy.decide_input(document)
        elapsed = time.perf_counter() - started
        record = asked.record
        record.policy_seconds = (record.policy_seconds or 0.0) + elapsed
        self._metrics.decision_latency(elapsed)
        return decision

    async def _with_rate_windows(
        self, reply: Reply, context: KeyContext | None, asked: _Asked
    ) -> Reply:
        """A key or project with rate limits gets OpenAI's x-ratelimit-* headers on
        every answer, also those that never reach admission (a denial, the models
        list): its windows are read for them (only then, and only for such keys)."""
        if context is None or context.key.status != "active":
            return reply
        key_limits, project_limits = context.key.rate_limits, context.project.rate_limits
        if not (key_limits.any or project_limits.any):
            return reply
        now = self._epoch(asked.request.time)
        windows = await self._store.rate_windows(context.key.id, context.project.id, now)
        state = RateState(
            key=windows.key if key_limits.any else None,
            project=windows.project if project_limits.any else None,
        )
        return _with_rate_lines(reply, rate_lines(key_limits, project_limits, state, now))

    def _no_decision(self, operation: Operation) -> Reply:
        message = "Internal error: the policy gave no decision; see the gateway log"
        return self.error(500, message, operation)

    def _models(self, decision: Decision, catalog: Catalog) -> Reply:
        data = []
        for model_id in decision.models or ():
            entry = catalog.models.get(model_id)
            data.append(
                {
                    "id": model_id,
                    "object": "model",
                    "created": entry.created if entry else 0,
                    "owned_by": entry.owned_by if entry else "system",
                }
            )
        return Reply(status=200, body=_encoder.encode({"object": "list", "data": data}))

    # -- allowed requests ------------------------------------------------------------

    async def _reserve_and_forward(
        self, asked: _Asked, context: KeyContext, facts: BudgetFacts, decision: Decision
    ) -> Reply:
        price = asked.policy.catalog.price(decision.model, decision.provider)
        try:
            bound = self._bound(asked, price)
        except Unbounded as exc:
            asked.record.allowed = False
            asked.record.reason = str(exc)
            return self.error(400, str(exc), asked.operation)
        org_id = context.organization.id if decision.billing == "credits" else None
        key_limits, project_limits = _admitted_limits(decision, context)
        claim = Claim(
            key_id=context.key.id,
            organization_id=org_id,
            amount=bound.amount,
            project_id=context.project.id,
            # The period budgets' windows as the policy saw them (`with_budgets`).
            key_budget=facts.key_window,
            project_budget=facts.project_window,
            key_limits=key_limits,
            project_limits=project_limits,
            tokens=bound.prompt_tokens + bound.completion_tokens,
            now=self._epoch(asked.request.time),
        )
        reservation = await self._reserve(asked, context, facts, claim)
        if not isinstance(reservation, Reservation):
            asked.record.allowed = False
            return reservation
        lines = b""
        if reservation.rate is not None:
            # OpenAI's x-ratelimit-* headers on every answer of a rate-limited key.
            lines = rate_lines(claim.key_limits, claim.project_limits, reservation.rate, claim.now)
        try:
            route = self._providers.route(
                decision, context.project, asked.operation, asked.policy.catalog
            )
        except ProviderProblem as exc:
            await self._admission.release(reservation)
            asked.record.reason = str(exc)
            return _with_rate_lines(self.error(502, str(exc), asked.operation), lines)
        allowed = _Allowed(
            operation=asked.operation,
            decision=decision,
            context=context,
            body=asked.parsed,
            price=price,
            bound=bound,
            reservation=reservation,
            route=route,
            headers=asked.headers,
            rate_lines=lines,
        )
        reply = await self._forward(allowed, asked.record)
        # An answer made with the lines already has them (`_whole`, `_forward`).
        return reply if reply.rate_lines is lines else _with_rate_lines(reply, lines)

    def _bound(self, asked: _Asked, price: ModelPrice | None) -> CostBound:
        """The most this request may cost (proxy/cost_bound.py); nothing for an offer
        without a price."""
        if price is None or asked.parsed.payload is None:
            return CostBound(prompt_tokens=0, completion_tokens=0, amount=Decimal(0))
        return cost_bound(
            asked.operation, asked.parsed.payload, price, self._config.default_max_tokens
        )

    async def _reserve(
        self, asked: _Asked, context: KeyContext, facts: BudgetFacts, claim: Claim
    ) -> Reservation | Reply:
        """Hold `claim`, waiting while only in-flight reservations stand in the way
        (proxy/admission.py). A refusal comes from the settled figures alone, or from
        a rate limit (refused at once, never waited for), and the policy, given the
        fresh figures or the windows the store saw, answers it with the documented
        message."""
        for _ in range(_ADMIT_ATTEMPTS):
            # The period budgets' windows as the policy saw them: same instant, same budget.
            outcome = await self._admission.reserve(with_budgets(claim, context, facts))
            if isinstance(outcome, Reservation):
                return outcome
            if isinstance(outcome, TimedOut):
                break
            if outcome.rate is not None:
                refusal = self._rate_refusal(asked, context, facts, claim, outcome)
                if refusal is not None:
                    return refusal
                continue  # a policy that lets this rate through: the store decides again
            context = await self._store.key_context(asked.token_hash, fresh=True) or context
            facts = await self._budget_facts(asked, context)
            decision = self._decide(asked, context, facts)
            if decision is None:
                return self._no_decision(asked.operation)
            if not decision.allow:
                asked.record.reason = decision.message
                asked.record.reason_code = decision.reasons[0].code if decision.reasons else None
                reply = self.error(decision.status, decision.message, asked.operation)
                return _with_headers(reply, _budget_reset(asked.record.reason_code, facts))
            # The store refused on figures the policy, a moment later, accepts (a limit
            # or budget raised or credits added meanwhile): ask the store again.
        asked.record.reason = "admission wait ran out"
        asked.record.reason_code = "admission_wait"
        reply = self.error(429, _BUSY_MESSAGE, asked.operation)
        return msgspec.structs.replace(reply, headers=(("retry-after", "1"),))

    def _rate_refusal(
        self,
        asked: _Asked,
        context: KeyContext,
        facts: BudgetFacts,
        claim: Claim,
        refused: Refused,
    ) -> Reply | None:
        """The store refused a rate limit: the policy decides again with the windows it
        saw and the request's token bound (check 3r); None if the policy allows."""
        assert refused.rate is not None
        asked = msgspec.structs.replace(
            asked, request=msgspec.structs.replace(asked.request, token_bound=claim.tokens)
        )
        limits = (claim.key_limits, claim.project_limits)
        decision = self._decide(asked, context, facts, refused.rate, claim.now, limits)
        if decision is None:
            return self._no_decision(asked.operation)
        if decision.allow:
            return None
        record = asked.record
        record.reason = decision.message
        record.reason_code = decision.reasons[0].code if decision.reasons else None
        # A refusal with windows is a rate refusal (Refused's invariant).
        reason = cast(RateReason, refused.reason)
        lines = rate_lines(
            claim.key_limits, claim.project_limits, refused.rate, claim.now, reason, claim.tokens
        )
        return _with_rate_lines(
            self.error(decision.status, decision.message, asked.operation), lines
        )

    async def _forward(self, allowed: _Allowed, record: DecisionRecord) -> Reply:
        operation = allowed.operation
        payload = dict(allowed.body.payload or {})
        payload["model"] = allowed.decision.provider_model_id or allowed.decision.model
        if allowed.bound.default_max_tokens is not None and allowed.price is not None:
            # The reservation assumed this many completion tokens: the provider must
            # not generate more than the gateway holds.
            field = max_tokens_field(operation, allowed.price)
            payload[field] = allowed.bound.default_max_tokens
        if allowed.body.stream and asks_stream_usage(operation):
            options = payload.get("stream_options")
            payload["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        started = time.perf_counter()
        try:
            response = await self._send(allowed, payload)
        except UpstreamConnectError:
            await self._admission.release(allowed.reservation)
            return self._upstream_failed(record, 502, allowed, "could not connect")
        except UpstreamTimeout:
            await self._admission.release(allowed.reservation)
            return self._upstream_failed(record, 504, allowed, "timed out")
        except BaseException:
            with Shield():
                await self._admission.release(allowed.reservation)
            raise
        record.upstream_seconds = time.perf_counter() - started
        self._metrics.upstream_latency(allowed.route.provider, record.upstream_seconds)
        if allowed.body.stream and response.status == 200:
            iteration = _Iteration()
            stream = self._relay(allowed, response, record, iteration)

            async def cleanup() -> None:
                if not iteration.began:  # the client left before the first chunk was asked for
                    await self._abandon_stream(allowed, response, record)

            return Reply(
                status=200,
                content_type=response.content_type,
                stream=stream,
                cleanup=cleanup,
                rate_lines=allowed.rate_lines,
            )
        return await self._whole(allowed, response, record)

    def _upstream_failed(
        self, record: DecisionRecord, status: int, allowed: _Allowed, what: str
    ) -> Reply:
        message = f"Upstream provider {allowed.route.provider} {what}"
        record.reason = message
        return self.error(status, message, allowed.operation)

    async def _send(self, allowed: _Allowed, payload: dict[str, Any]) -> UpstreamResponse:
        if allowed.route.url is None:
            return await self._mock.send(allowed.operation, payload)
        call = UpstreamCall(
            url=allowed.route.url,
            body=_encoder.encode(payload),
            api_key=allowed.route.api_key,
            auth=auth_header(allowed.operation),
            headers=allowed.headers,
        )
        return await self._upstream.send(call)

    async def _whole(
        self, allowed: _Allowed, response: UpstreamResponse, record: DecisionRecord
    ) -> Reply:
        try:
            content = await response.read()
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            with Shield():
                await response.close()
                await self._admission.release(allowed.reservation)
            status = 504 if isinstance(exc, UpstreamTimeout) else 502
            what = "timed out" if status == 504 else "dropped the connection"
            return self._upstream_failed(record, status, allowed, what)
        except BaseException:
            with Shield():
                await response.close()
                await self._admission.release(allowed.reservation)
            raise
        answer = None if response.status >= 400 else _whole_answer(content)
        # Shielded: a held reservation must always be closed, and so must the upstream
        # response (`shielded`: a scope only if the closing has to wait).
        await shielded(self._close_whole(allowed, response, answer, record))
        if answer is None and response.status < 400:
            return self._upstream_failed(record, 502, allowed, "did not return a JSON object")
        return Reply(
            status=response.status,
            body=content,
            content_type=response.content_type,
            rate_lines=allowed.rate_lines,
        )

    async def _close_whole(
        self,
        allowed: _Allowed,
        response: UpstreamResponse,
        answer: _WholeAnswer | None,
        record: DecisionRecord,
    ) -> None:
        """The upstream response closed and the reservation settled, or released for a
        call that failed: the provider's own error (it passes through), or an answer
        that is not a JSON object (none a client can use)."""
        await response.close()
        if response.status >= 400:
            await self._admission.release(allowed.reservation)
            record.reason = f"upstream status {response.status}"
        elif answer is None:
            await self._admission.release(allowed.reservation)
        else:
            await self._settle(allowed, whole_usage(allowed.operation, answer.usage), record)

    async def _abandon_stream(
        self, allowed: _Allowed, response: UpstreamResponse, record: DecisionRecord
    ) -> None:
        with Shield():
            await response.close()
            await self._admission.release(allowed.reservation)
        self._abandoned(record, 499, "client disconnected before the stream started")

    async def _relay(
        self,
        allowed: _Allowed,
        response: UpstreamResponse,
        record: DecisionRecord,
        iteration: _Iteration,
    ) -> AsyncIterator[bytes]:
        iteration.began = True
        operation = allowed.operation
        relay = SseRelay(
            keep_usage_chunk=allowed.body.include_usage or not asks_stream_usage(operation),
            reader=stream_usage_reader(operation),
            text_reader=stream_text_reader(operation),
        )
        failed = finished = False
        try:
            async for chunk in response.chunks():
                out = relay.feed(chunk)
                if out:
                    yield out
            rest = relay.flush()
            if rest:
                yield rest
            finished = True
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            # Headers are sent: tell the client in the stream, as OpenAI does, and end it.
            failed = True
            record.reason = f"upstream stream failed: {exc}"
            message = f"Upstream provider {allowed.route.provider} failed mid-stream"
            yield stream_error_event(operation, message, relay.events)
        finally:
            if not finished and not failed:
                record.reason = "client disconnected mid-stream"
            # Shielded (`shielded`: a scope only if the closing has to wait).
            await shielded(self._end_stream(allowed, response, relay, record))

    async def _end_stream(
        self, allowed: _Allowed, response: UpstreamResponse, relay: SseRelay, record: DecisionRecord
    ) -> None:
        """A relayed stream's end, however it came: the upstream response closed, the
        usage settled, the decision line."""
        await response.close()
        await self._settle_stream(allowed, relay, record)
        record.emit(200)
        self._metrics.request(record.operation, 200)

    async def _settle_stream(
        self, allowed: _Allowed, relay: SseRelay, record: DecisionRecord
    ) -> None:
        """The one stream charging rule (README "Streams"): the provider's final usage
        when it reported one; else, once content was relayed (the provider bills what it
        generated, whether the upstream or the client cut the stream), the prompt's
        bound plus one token per UTF-8 byte of generated text relayed, never more than
        the reservation; a stream that ended before any content costs nothing."""
        if relay.usage is not None and relay.final:
            await self._settle(allowed, relay.usage, record)
        elif relay.text_bytes == 0:
            await self._admission.release(allowed.reservation)
        else:
            await self._settle(allowed, _cut_stream_usage(relay, allowed.bound), record, cap=True)

    async def _settle(
        self,
        allowed: _Allowed,
        usage: TokenUsage | None,
        record: DecisionRecord,
        *,
        cap: bool = False,
    ) -> None:
        if usage is None or allowed.price is None:
            cost = Decimal(0)
            prompt = completion = 0
        else:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            cost = allowed.price.usage_cost(usage)
            if cap:  # an estimate is never charged past what was reserved
                cost = min(cost, allowed.reservation.amount)
        await self._admission.settle(allowed.reservation, cost, tokens=prompt + completion)
        record.prompt_tokens, record.completion_tokens, record.cost = prompt, completion, cost
        model = allowed.decision.model or ""
        self._metrics.usage(allowed.route.provider, model, prompt, completion, cost)


def _cut_stream_usage(relay: SseRelay, bound: CostBound) -> TokenUsage:
    """A stream cut before its final usage: prompt tokens as far as the provider reported
    them (Messages reports them first), else the prompt's bound; completion tokens as
    reported, or one per UTF-8 byte of generated text relayed if that is more (a
    byte-level tokenizer never makes more tokens than bytes)."""
    reported = relay.usage or TokenUsage()
    if reported.prompt_tokens == 0:
        reported = msgspec.structs.replace(reported, prompt_tokens=bound.prompt_tokens)
    completion = max(reported.completion_tokens, relay.text_bytes)
    return msgspec.structs.replace(reported, completion_tokens=completion)


def _admitted_limits(decision: Decision, context: KeyContext) -> tuple[RateLimits, RateLimits]:
    """The key's and the project's rate limits the admission enforces: the policy's
    (the store's own lowered by policy files, check 3r), or, from a policy that does
    not say, the store's own."""
    said = decision.rate_limits
    if said is None:
        return context.key.rate_limits, context.project.rate_limits
    return (
        _rate_limits(said.key, context.key.rate_limits),
        _rate_limits(said.project, context.project.rate_limits),
    )


def _rate_limits(values: RateLimitValues | None, own: RateLimits) -> RateLimits:
    """The policy's ceilings as `RateLimits`: the record's `own` when they are its values
    (the usual answer; no new object a request), else new ones."""
    if values is None:
        return NO_RATE_LIMITS
    rpm, tpm, max_parallel = values.rpm, values.tpm, values.max_parallel
    if rpm == own.rpm and tpm == own.tpm and max_parallel == own.max_parallel:
        return own
    return RateLimits(rpm=rpm, tpm=tpm, max_parallel=max_parallel)


def _epoch(moment: str) -> float:
    """The request time (RFC 3339 UTC, from the gateway's clock) as epoch seconds: the
    rate windows' clock, so tests that move the clock move the windows."""
    return datetime.fromisoformat(moment).timestamp()


class _EpochOf:
    """`_epoch`, remembering the last answer: the clock reads whole seconds, so every
    request of a second asks for the same moment (one parse per second, not three per
    request)."""

    __slots__ = ("_moment", "_seconds")

    def __init__(self) -> None:
        self._moment = ""
        self._seconds = 0.0

    def __call__(self, moment: str) -> float:
        if moment != self._moment:
            self._seconds = _epoch(moment)
            self._moment = moment
        return self._seconds


def _budget_reset(reason_code: str | None, facts: BudgetFacts) -> tuple[tuple[str, str], ...]:
    """A period-budget refusal's `x-budget-reset`: when the refused window ends (RFC 3339
    UTC), the only moment a retry can succeed. A header, so the documented message stays
    exact; no Retry-After, which clients read as "retry soon" and the window may be a month."""
    if reason_code == "period_budget" and facts.key is not None:
        return (("x-budget-reset", facts.key.resets_at),)
    if reason_code == "project_period_budget" and facts.project is not None:
        return (("x-budget-reset", facts.project.resets_at),)
    return ()


def _with_headers(reply: Reply, headers: tuple[tuple[str, str], ...]) -> Reply:
    if not headers:
        return reply
    return msgspec.structs.replace(reply, headers=reply.headers + headers)


def _with_rate_lines(reply: Reply, lines: bytes) -> Reply:
    if not lines:
        return reply
    return msgspec.structs.replace(reply, rate_lines=reply.rate_lines + lines)


class _WholeAnswer(msgspec.Struct, frozen=True):
    """A provider's whole answer as far as the gateway reads it: the client gets the
    bytes as they came, so only `usage` is built; the other members are checked as JSON
    and skipped (building every choice's text was most of the decoding, issue 15)."""

    usage: Any = None


_answer_decoder = msgspec.json.Decoder(_WholeAnswer)


def _whole_answer(content: bytes) -> _WholeAnswer | None:
    """The provider's answer when it is a JSON object, else None. Members skipped are
    checked for JSON syntax, not for what only building them finds (a number out of
    float range, invalid UTF-8 in a string)."""
    try:
        return _answer_decoder.decode(content)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError: not an object
        return None
