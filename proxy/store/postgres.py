"""PostgreSQL key store and usage ledger, for several gateway instances sharing keys.

Money is `NUMERIC` (exact). Each key row carries `reserved` (sum of its in-flight
reservations) and each organization `credits_reserved`, so admitting a request is
one conditional `UPDATE … WHERE usage + reserved < usage_limit`: PostgreSQL
re-checks that condition on the newest row version after waiting for the row lock,
so concurrent reservations from any number of processes never overshoot and no
update is lost. Reserve, settle, release and reclaim are PL/pgSQL functions (one
round trip, one transaction each).

INVARIANT (no deadlocks): every transaction locks rows in the order reservations →
api_keys → organizations, and only one reclaim runs at a time (advisory lock).

There is no cache of key records: `key_context` reads the database on every request,
so a key disabled by any instance is refused by every instance at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from proxy.budgets import Budget
from proxy.secret_box import (
    KEYED_PREFIX,
    SecretBox,
    lookup_forms,
    protected_provider_keys,
    stored_hash,
    stored_source,
)
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
    StoreError,
    WindowUsage,
)
from proxy.store.common import (
    ADMISSION_TICKET_TTL,
    AUDIT_COLUMNS,
    DEFAULT_ORG_CREDITS,
    DEFAULT_ORG_ID,
    DEFAULT_PROJECT_ID,
    DEFAULT_RESERVATION_TTL,
    KEY_COLUMNS,
    InstanceIds,
    activity_from_row,
    admission_outcome,
    audit_entry_from_row,
    audit_filter,
    budget_columns,
    check_budget,
    check_description,
    check_key_status,
    check_mode,
    check_name,
    check_provider_source,
    check_rate_limits,
    check_rotation,
    check_rule_status,
    check_rule_type,
    check_status_change,
    decode_provider_keys,
    encode_json,
    key_from_row,
    new_id,
    now_rfc3339,
    organization_from_row,
    parse_expiry,
    parse_grace,
    parse_money,
    parse_rate_state,
    project_from_row,
    project_rule_from_row,
    reservation_for,
    rfc3339_after,
    rule_from_row,
)
from proxy.store.pg_pool import ConnectionPool
from proxy.tokens import display_token, generate_token, hash_token, hashes_match

__all__ = ["MIGRATIONS", "PostgresStore"]

_log = logging.getLogger("gateway.store")
# Tries of a request-path call that PostgreSQL rolled back to break a deadlock.
_DEADLOCK_ATTEMPTS = 3

_RESERVE = """
CREATE FUNCTION gw_reserve(p_id text, p_key text, p_org text, p_amount numeric, p_ttl float8)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_keys SET reserved = reserved + p_amount
     WHERE id = p_key AND (usage_limit IS NULL OR usage + reserved < usage_limit);
    IF NOT FOUND THEN
        RETURN CASE WHEN EXISTS (SELECT 1 FROM api_keys WHERE id = p_key)
                    THEN 'limit' ELSE 'no_key' END;
    END IF;
    IF p_org IS NOT NULL THEN
        UPDATE organizations SET credits_reserved = credits_reserved + p_amount
         WHERE id = p_org AND credits - credits_reserved > 0;
        IF NOT FOUND THEN
            UPDATE api_keys SET reserved = reserved - p_amount WHERE id = p_key;
            RETURN CASE WHEN EXISTS (SELECT 1 FROM organizations WHERE id = p_org)
                        THEN 'credits' ELSE 'no_org' END;
        END IF;
    END IF;
    INSERT INTO reservations (id, key_id, org_id, amount, expires_at)
    VALUES (p_id, p_key, p_org, p_amount, now() + make_interval(secs => p_ttl));
    RETURN 'ok';
END $$"""

_SETTLE = """
CREATE FUNCTION gw_settle(p_id text, p_key text, p_org text, p_cost numeric)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE held numeric;
BEGIN
    -- Charged even when the reservation already expired: the request did complete.
    DELETE FROM reservations WHERE id = p_id RETURNING amount INTO held;
    UPDATE api_keys SET usage = usage + p_cost, reserved = reserved - coalesce(held, 0)
     WHERE id = p_key;
    IF p_org IS NOT NULL THEN
        UPDATE organizations
           SET credits = credits - p_cost, credits_reserved = credits_reserved - coalesce(held, 0)
         WHERE id = p_org;
    END IF;
END $$"""

_RELEASE = """
CREATE FUNCTION gw_release(p_id text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r reservations%ROWTYPE;
BEGIN
    DELETE FROM reservations WHERE id = p_id RETURNING * INTO r;
    IF FOUND THEN
        UPDATE api_keys SET reserved = reserved - r.amount WHERE id = r.key_id;
        IF r.org_id IS NOT NULL THEN
            UPDATE organizations SET credits_reserved = credits_reserved - r.amount
             WHERE id = r.org_id;
        END IF;
    END IF;
END $$"""

_RECLAIM = """
CREATE FUNCTION gw_reclaim() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM reservations WHERE expires_at <= now()) THEN
        RETURN 0;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext(current_schema() || '.gw_reclaim')) THEN
        RETURN 0;  -- another instance is reclaiming right now
    END IF;
    WITH gone AS (
        DELETE FROM reservations WHERE expires_at <= now() RETURNING key_id, org_id, amount
    ), keys AS (
        UPDATE api_keys a SET reserved = a.reserved - g.total
          FROM (SELECT key_id, sum(amount) AS total FROM gone GROUP BY key_id) g
         WHERE a.id = g.key_id
    ), orgs AS (
        UPDATE organizations a SET credits_reserved = a.credits_reserved - g.total
          FROM (SELECT org_id, sum(amount) AS total FROM gone
                 WHERE org_id IS NOT NULL GROUP BY org_id) g
         WHERE a.id = g.org_id
    )
    SELECT count(*) INTO n FROM gone;
    RETURN n;
END $$"""


def _async_commit(body: str) -> str:
    """`body` as CREATE OR REPLACE, first making its transaction commit asynchronously."""
    replaced = body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    head, sep, rest = replaced.partition("BEGIN\n")
    return f"{head}{sep}    PERFORM set_config('synchronous_commit', 'off', true);\n{rest}"


# Fair admission (Store.admit). The key row (then the organization row) is locked, so
# admissions of one key are serialised across instances; tickets of waiting requests
# are ordered by a global sequence. `queue_until` is the latest expiry of any ticket of
# the key (organization): while it is past, nobody waits and the ticket table is skipped.
_ADMIT = """
CREATE FUNCTION gw_admit(p_ticket text, p_id text, p_key text, p_org text, p_amount numeric,
                         p_ttl float8, p_ticket_ttl float8)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k api_keys%ROWTYPE;
    o organizations%ROWTYPE;
    mine bigint;
    fits boolean;
    ahead boolean := false;
    until timestamptz;
BEGIN
    SELECT * INTO k FROM api_keys WHERE id = p_key FOR UPDATE;
    IF NOT FOUND THEN RETURN 'no_key'; END IF;
    IF p_org IS NOT NULL THEN
        SELECT * INTO o FROM organizations WHERE id = p_org FOR UPDATE;
        IF NOT FOUND THEN RETURN 'no_org'; END IF;
    END IF;
    -- The settled figures alone decide a refusal.
    IF k.usage_limit IS NOT NULL AND k.usage >= k.usage_limit THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'limit';
    END IF;
    IF p_org IS NOT NULL AND o.credits <= 0 THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'credits';
    END IF;
    -- INVARIANT: admitted only while usage + in-flight reservations < limit (and
    -- credits - in-flight credit reservations > 0), in ticket order.
    fits := (k.usage_limit IS NULL OR k.usage + k.reserved < k.usage_limit)
            AND (p_org IS NULL OR o.credits - o.credits_reserved > 0);
    IF fits AND (k.queue_until > now() OR (p_org IS NOT NULL AND o.queue_until > now())) THEN
        SELECT seq INTO mine FROM admission_tickets WHERE id = p_ticket;
        mine := coalesce(mine, 9223372036854775807);
        ahead := EXISTS (SELECT 1 FROM admission_tickets
                          WHERE key_id = p_key AND seq < mine AND expires_at > now())
              OR (p_org IS NOT NULL AND EXISTS (SELECT 1 FROM admission_tickets
                          WHERE org_id = p_org AND seq < mine AND expires_at > now()));
    END IF;
    IF fits AND NOT ahead THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        UPDATE api_keys SET reserved = reserved + p_amount WHERE id = p_key;
        IF p_org IS NOT NULL THEN
            UPDATE organizations SET credits_reserved = credits_reserved + p_amount
             WHERE id = p_org;
        END IF;
        INSERT INTO reservations (id, key_id, org_id, amount, expires_at)
        VALUES (p_id, p_key, p_org, p_amount, now() + make_interval(secs => p_ttl));
        RETURN 'ok';
    END IF;
    until := now() + make_interval(secs => p_ticket_ttl);
    INSERT INTO admission_tickets (id, seq, key_id, org_id, expires_at)
    VALUES (p_ticket, nextval('admission_seq'), p_key, p_org, until)
    ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at;
    UPDATE api_keys SET queue_until = greatest(queue_until, until) WHERE id = p_key;
    IF p_org IS NOT NULL THEN
        UPDATE organizations SET queue_until = greatest(queue_until, until) WHERE id = p_org;
    END IF;
    RETURN 'queued';
END $$"""

# Rate windows (issue 13 point 2): one row per admitted request of a key (`k:<id>`) or
# project (`p:<id>`) with rate limits, kept while in the last minute of the gateway's
# request clock (`at`, epoch seconds: never the database clock, so tests move time) or
# in flight (`open_until`, the reservation's expiry; -infinity once settled/released).
_RATE_WINDOW = """
CREATE FUNCTION gw_rate_window(p_subject text, p_now float8, OUT w_requests bigint,
                               OUT w_tokens bigint, OUT w_parallel bigint,
                               OUT w_oldest float8, OUT w_newest float8)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rate_events e
     WHERE e.subject = p_subject AND e.at <= p_now - 60 AND e.open_until <= now();
    SELECT count(*), coalesce(sum(e.tokens), 0), min(e.at), max(e.at)
      INTO w_requests, w_tokens, w_oldest, w_newest
      FROM rate_events e WHERE e.subject = p_subject AND e.at > p_now - 60;
    SELECT count(*) INTO w_parallel
      FROM rate_events e WHERE e.subject = p_subject AND e.open_until > now();
END $$"""

# Running totals per window (rate_totals), kept by a trigger on rate_events, so an
# admission reads its window's requests and tokens in O(1) rather than summing a
# minute of traffic; `counted` is true while a row is in its window's totals.
_RATE_TOTALS = """
CREATE FUNCTION gw_rate_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.counted THEN
            INSERT INTO rate_totals AS t (subject, requests, tokens)
            VALUES (NEW.subject, 1, NEW.tokens)
            ON CONFLICT (subject) DO UPDATE
               SET requests = t.requests + 1, tokens = t.tokens + NEW.tokens;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.counted OR NEW.counted THEN
            UPDATE rate_totals
               SET requests = requests + NEW.counted::int - OLD.counted::int,
                   tokens = tokens + CASE WHEN NEW.counted THEN NEW.tokens ELSE 0 END
                                   - CASE WHEN OLD.counted THEN OLD.tokens ELSE 0 END
             WHERE subject = NEW.subject;
        END IF;
    ELSIF OLD.counted THEN
        UPDATE rate_totals SET requests = requests - 1, tokens = tokens - OLD.tokens
         WHERE subject = OLD.subject;
    END IF;
    RETURN NULL;
END $$"""

# gw_rate_window on the totals: rows older than the window leave them, rows no longer in
# flight go; the cost is that of the rows leaving, not of the window.
_RATE_WINDOW_TOTALS = """
CREATE OR REPLACE FUNCTION gw_rate_window(p_subject text, p_now float8, OUT w_requests bigint,
                                          OUT w_tokens bigint, OUT w_parallel bigint,
                                          OUT w_oldest float8, OUT w_newest float8)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rate_events e SET counted = false
     WHERE e.subject = p_subject AND e.counted AND e.at <= p_now - 60;
    DELETE FROM rate_events e
     WHERE e.subject = p_subject AND NOT e.counted AND e.open_until <= now();
    SELECT coalesce(max(t.requests), 0), coalesce(max(t.tokens), 0)
      INTO w_requests, w_tokens
      FROM rate_totals t WHERE t.subject = p_subject;
    SELECT min(e.at), max(e.at) INTO w_oldest, w_newest
      FROM rate_events e WHERE e.subject = p_subject AND e.counted;
    SELECT count(*) INTO w_parallel
      FROM rate_events e WHERE e.subject = p_subject AND e.open_until > now();
END $$"""

# How the windows travel back to Python (common.parse_rate_state): `-` when not counted.
_RATE_TEXT = """
CREATE FUNCTION gw_rate_text(p_counted boolean, p_requests bigint, p_tokens bigint,
                             p_parallel bigint, p_oldest float8, p_newest float8)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN NOT p_counted THEN '-'
                ELSE concat_ws(',', p_requests, p_tokens, p_parallel,
                               coalesce(p_oldest::text, ''), coalesce(p_newest::text, ''))
           END
$$"""

_RATE_CLOSE = """
CREATE FUNCTION gw_rate_close(p_id text, p_tokens bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE rate_events SET tokens = p_tokens, open_until = '-infinity' WHERE res_id = p_id
$$"""

# gw_admit with rate limits as well (an overload: the older ones stay for instances not
# upgraded yet): checked in the same transaction as the money, after the settled
# figures (usage limit, budgets, credits) and before the line, since a rate refusal is
# immediate. The project row is locked when the project has limits or a budget, so the
# admissions of all its keys are serialised (lock order api_keys -> projects ->
# organizations).
_ADMIT_RATED = """
CREATE FUNCTION gw_admit(p_ticket text, p_id text, p_key text, p_org text, p_amount numeric,
                         p_ttl float8, p_ticket_ttl float8,
                         p_key_budget numeric, p_key_window text,
                         p_project text, p_project_budget numeric, p_project_window text,
                         p_now float8, p_tokens bigint,
                         p_krated boolean, p_krpm bigint, p_ktpm bigint, p_kpar bigint,
                         p_prated boolean, p_prpm bigint, p_ptpm bigint, p_ppar bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k api_keys%ROWTYPE;
    o organizations%ROWTYPE;
    mine bigint;
    fits boolean;
    ahead boolean := false;
    until timestamptz;
    ku numeric := 0;
    kh numeric := 0;
    pu numeric := 0;
    ph numeric := 0;
    -- the key's and the project's rate windows: requests, tokens, parallel, oldest, newest
    kr bigint; kt bigint; kp bigint; ko float8; kn float8;
    pr bigint; pt bigint; pp bigint; po float8; pn float8;
    reason text;
    windows text := '';
BEGIN
    SELECT * INTO k FROM api_keys WHERE id = p_key FOR UPDATE;
    IF NOT FOUND THEN RETURN 'no_key'; END IF;
    IF p_project_window IS NOT NULL OR p_prated THEN
        -- NO KEY UPDATE: creating a key in the project (a foreign-key check) never waits.
        PERFORM 1 FROM projects WHERE id = p_project FOR NO KEY UPDATE;
    END IF;
    IF p_org IS NOT NULL THEN
        SELECT * INTO o FROM organizations WHERE id = p_org FOR UPDATE;
        IF NOT FOUND THEN RETURN 'no_org'; END IF;
    END IF;
    -- The settled figures alone decide a refusal, in the policy's order.
    IF k.usage_limit IS NOT NULL AND k.usage >= k.usage_limit THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'limit';
    END IF;
    IF p_key_window IS NOT NULL THEN
        SELECT coalesce((SELECT usage FROM budget_usage
                          WHERE subject = 'k:' || p_key AND window_start = p_key_window), 0),
               coalesce((SELECT sum(amount) FROM reservations
                          WHERE key_id = p_key AND key_window = p_key_window
                            AND expires_at > now()), 0)
          INTO ku, kh;
        IF ku >= p_key_budget THEN
            DELETE FROM admission_tickets WHERE id = p_ticket;
            RETURN 'key_budget';
        END IF;
    END IF;
    IF p_project_window IS NOT NULL THEN
        SELECT coalesce((SELECT usage FROM budget_usage
                          WHERE subject = 'p:' || p_project
                            AND window_start = p_project_window), 0),
               coalesce((SELECT sum(amount) FROM reservations
                          WHERE project_id = p_project AND project_window = p_project_window
                            AND expires_at > now()), 0)
          INTO pu, ph;
        IF pu >= p_project_budget THEN
            DELETE FROM admission_tickets WHERE id = p_ticket;
            RETURN 'project_budget';
        END IF;
    END IF;
    IF p_org IS NOT NULL AND o.credits <= 0 THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'credits';
    END IF;
    -- Rate limits refuse at once, never queue.
    IF p_krated THEN
        SELECT * INTO kr, kt, kp, ko, kn FROM gw_rate_window('k:' || p_key, p_now);
    END IF;
    IF p_prated THEN
        SELECT * INTO pr, pt, pp, po, pn FROM gw_rate_window('p:' || p_project, p_now);
    END IF;
    IF p_krated OR p_prated THEN
        -- INVARIANT: the same rule as common.rate_refusal and policies/gateway.rego.
        reason := CASE
            WHEN p_krated AND p_krpm IS NOT NULL AND kr >= p_krpm THEN 'rate_limit_requests'
            WHEN p_krated AND p_ktpm IS NOT NULL AND kt + p_tokens > p_ktpm
                THEN 'rate_limit_tokens'
            WHEN p_krated AND p_kpar IS NOT NULL AND kp >= p_kpar THEN 'max_parallel'
            WHEN p_prated AND p_prpm IS NOT NULL AND pr >= p_prpm THEN 'rate_limit_requests'
            WHEN p_prated AND p_ptpm IS NOT NULL AND pt + p_tokens > p_ptpm
                THEN 'rate_limit_tokens'
            WHEN p_prated AND p_ppar IS NOT NULL AND pp >= p_ppar THEN 'max_parallel'
        END;
        IF reason IS NOT NULL THEN
            DELETE FROM admission_tickets WHERE id = p_ticket;
            RETURN reason || chr(9) || gw_rate_text(p_krated, kr, kt, kp, ko, kn)
                || chr(9) || gw_rate_text(p_prated, pr, pt, pp, po, pn);
        END IF;
    END IF;
    -- INVARIANT: admitted only while usage + in-flight reservations < limit (each
    -- budget window's settled + in-flight usage < its budget, credits - in-flight
    -- credit reservations > 0), in ticket order.
    fits := (k.usage_limit IS NULL OR k.usage + k.reserved < k.usage_limit)
            AND (p_key_window IS NULL OR ku + kh < p_key_budget)
            AND (p_project_window IS NULL OR pu + ph < p_project_budget)
            AND (p_org IS NULL OR o.credits - o.credits_reserved > 0);
    IF fits AND (k.queue_until > now() OR (p_org IS NOT NULL AND o.queue_until > now())) THEN
        SELECT seq INTO mine FROM admission_tickets WHERE id = p_ticket;
        mine := coalesce(mine, 9223372036854775807);
        ahead := EXISTS (SELECT 1 FROM admission_tickets
                          WHERE key_id = p_key AND seq < mine AND expires_at > now())
              OR (p_org IS NOT NULL AND EXISTS (SELECT 1 FROM admission_tickets
                          WHERE org_id = p_org AND seq < mine AND expires_at > now()));
    END IF;
    IF fits AND NOT ahead THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        UPDATE api_keys SET reserved = reserved + p_amount WHERE id = p_key;
        IF p_org IS NOT NULL THEN
            UPDATE organizations SET credits_reserved = credits_reserved + p_amount
             WHERE id = p_org;
        END IF;
        INSERT INTO reservations (id, key_id, org_id, amount, expires_at,
                                  key_window, project_id, project_window)
        VALUES (p_id, p_key, p_org, p_amount, now() + make_interval(secs => p_ttl),
                p_key_window, CASE WHEN p_project_window IS NULL THEN NULL ELSE p_project END,
                p_project_window);
        IF p_krated OR p_prated THEN
            INSERT INTO rate_events (res_id, subject, at, tokens, open_until)
            SELECT p_id, s, p_now, p_tokens, now() + make_interval(secs => p_ttl)
              FROM unnest(ARRAY[CASE WHEN p_krated THEN 'k:' || p_key END,
                                CASE WHEN p_prated THEN 'p:' || p_project END]) s
             WHERE s IS NOT NULL;
            windows := chr(9)
                || gw_rate_text(p_krated, kr + 1, kt + p_tokens, kp + 1, least(ko, p_now),
                                greatest(kn, p_now))
                || chr(9)
                || gw_rate_text(p_prated, pr + 1, pt + p_tokens, pp + 1, least(po, p_now),
                                greatest(pn, p_now));
        END IF;
        RETURN 'ok' || windows;
    END IF;
    until := now() + make_interval(secs => p_ticket_ttl);
    INSERT INTO admission_tickets (id, seq, key_id, org_id, expires_at)
    VALUES (p_ticket, nextval('admission_seq'), p_key, p_org, until)
    ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at;
    UPDATE api_keys SET queue_until = greatest(queue_until, until) WHERE id = p_key;
    IF p_org IS NOT NULL THEN
        UPDATE organizations SET queue_until = greatest(queue_until, until) WHERE id = p_org;
    END IF;
    RETURN 'queued';
END $$"""

# Tell waiting requests of every instance that room may have been freed (only when
# someone waits: otherwise a notification per request would be pure overhead).
_WAKE = """
CREATE FUNCTION gw_wake(p_key text, p_org text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM api_keys WHERE id = p_key AND queue_until > now())
       OR (p_org IS NOT NULL
           AND EXISTS (SELECT 1 FROM organizations WHERE id = p_org AND queue_until > now()))
    THEN
        PERFORM pg_notify('gw_admission',
                          concat_ws(chr(9), current_schema(), p_key, coalesce(p_org, '')));
    END IF;
END $$"""

_SETTLE_WAKING = _SETTLE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1).replace(
    "         WHERE id = p_org;\n    END IF;\nEND $$",
    "         WHERE id = p_org;\n    END IF;\n    PERFORM gw_wake(p_key, p_org);\nEND $$",
)

_RELEASE_WAKING = _async_commit(
    _RELEASE.replace(
        "             WHERE id = r.org_id;\n        END IF;\n    END IF;",
        "             WHERE id = r.org_id;\n        END IF;\n"
        "        PERFORM gw_wake(r.key_id, r.org_id);\n    END IF;",
    )
)

# Period budgets (Store.admit with `key_budget` / `project_budget`): an overload of
# gw_admit (the 7-argument one stays for instances not upgraded yet). A budget
# window's settled usage and its in-flight reservations are read in ONE statement,
# so a settlement committing meanwhile is seen whole or not at all; the key row lock
# (and, for a project budget, the project row's) serialises the admissions that
# share the window. Lock order: api_keys -> projects -> organizations.
_ADMIT_BUDGETS = """
CREATE FUNCTION gw_admit(p_ticket text, p_id text, p_key text, p_org text, p_amount numeric,
                         p_ttl float8, p_ticket_ttl float8,
                         p_key_budget numeric, p_key_window text,
                         p_project text, p_project_budget numeric, p_project_window text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k api_keys%ROWTYPE;
    o organizations%ROWTYPE;
    mine bigint;
    fits boolean;
    ahead boolean := false;
    until timestamptz;
    ku numeric := 0;
    kh numeric := 0;
    pu numeric := 0;
    ph numeric := 0;
BEGIN
    SELECT * INTO k FROM api_keys WHERE id = p_key FOR UPDATE;
    IF NOT FOUND THEN RETURN 'no_key'; END IF;
    IF p_project_window IS NOT NULL THEN
        -- NO KEY UPDATE: creating a key in the project (a foreign-key check) never waits.
        PERFORM 1 FROM projects WHERE id = p_project FOR NO KEY UPDATE;
    END IF;
    IF p_org IS NOT NULL THEN
        SELECT * INTO o FROM organizations WHERE id = p_org FOR UPDATE;
        IF NOT FOUND THEN RETURN 'no_org'; END IF;
    END IF;
    -- The settled figures alone decide a refusal, in the policy's order.
    IF k.usage_limit IS NOT NULL AND k.usage >= k.usage_limit THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'limit';
    END IF;
    IF p_key_window IS NOT NULL THEN
        SELECT coalesce((SELECT usage FROM budget_usage
                          WHERE subject = 'k:' || p_key AND window_start = p_key_window), 0),
               coalesce((SELECT sum(amount) FROM reservations
                          WHERE key_id = p_key AND key_window = p_key_window
                            AND expires_at > now()), 0)
          INTO ku, kh;
        IF ku >= p_key_budget THEN
            DELETE FROM admission_tickets WHERE id = p_ticket;
            RETURN 'key_budget';
        END IF;
    END IF;
    IF p_project_window IS NOT NULL THEN
        SELECT coalesce((SELECT usage FROM budget_usage
                          WHERE subject = 'p:' || p_project
                            AND window_start = p_project_window), 0),
               coalesce((SELECT sum(amount) FROM reservations
                          WHERE project_id = p_project AND project_window = p_project_window
                            AND expires_at > now()), 0)
          INTO pu, ph;
        IF pu >= p_project_budget THEN
            DELETE FROM admission_tickets WHERE id = p_ticket;
            RETURN 'project_budget';
        END IF;
    END IF;
    IF p_org IS NOT NULL AND o.credits <= 0 THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        RETURN 'credits';
    END IF;
    -- INVARIANT: admitted only while usage + in-flight reservations < limit (each
    -- budget window's settled + in-flight usage < its budget, credits - in-flight
    -- credit reservations > 0), in ticket order.
    fits := (k.usage_limit IS NULL OR k.usage + k.reserved < k.usage_limit)
            AND (p_key_window IS NULL OR ku + kh < p_key_budget)
            AND (p_project_window IS NULL OR pu + ph < p_project_budget)
            AND (p_org IS NULL OR o.credits - o.credits_reserved > 0);
    IF fits AND (k.queue_until > now() OR (p_org IS NOT NULL AND o.queue_until > now())) THEN
        SELECT seq INTO mine FROM admission_tickets WHERE id = p_ticket;
        mine := coalesce(mine, 9223372036854775807);
        ahead := EXISTS (SELECT 1 FROM admission_tickets
                          WHERE key_id = p_key AND seq < mine AND expires_at > now())
              OR (p_org IS NOT NULL AND EXISTS (SELECT 1 FROM admission_tickets
                          WHERE org_id = p_org AND seq < mine AND expires_at > now()));
    END IF;
    IF fits AND NOT ahead THEN
        DELETE FROM admission_tickets WHERE id = p_ticket;
        UPDATE api_keys SET reserved = reserved + p_amount WHERE id = p_key;
        IF p_org IS NOT NULL THEN
            UPDATE organizations SET credits_reserved = credits_reserved + p_amount
             WHERE id = p_org;
        END IF;
        INSERT INTO reservations (id, key_id, org_id, amount, expires_at,
                                  key_window, project_id, project_window)
        VALUES (p_id, p_key, p_org, p_amount, now() + make_interval(secs => p_ttl),
                p_key_window, CASE WHEN p_project_window IS NULL THEN NULL ELSE p_project END,
                p_project_window);
        RETURN 'ok';
    END IF;
    until := now() + make_interval(secs => p_ticket_ttl);
    INSERT INTO admission_tickets (id, seq, key_id, org_id, expires_at)
    VALUES (p_ticket, nextval('admission_seq'), p_key, p_org, until)
    ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at;
    UPDATE api_keys SET queue_until = greatest(queue_until, until) WHERE id = p_key;
    IF p_org IS NOT NULL THEN
        UPDATE organizations SET queue_until = greatest(queue_until, until) WHERE id = p_org;
    END IF;
    RETURN 'queued';
END $$"""

# Settling a reservation that holds budget windows also adds the cost to each window's
# settled usage (the window it was admitted in), in the same transaction.
_SETTLE_BUDGETS = """
CREATE FUNCTION gw_settle(p_id text, p_key text, p_org text, p_cost numeric,
                          p_key_window text, p_project text, p_project_window text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gw_settle(p_id, p_key, p_org, p_cost);
    IF p_key_window IS NOT NULL THEN
        INSERT INTO budget_usage (subject, window_start, usage)
        VALUES ('k:' || p_key, p_key_window, p_cost)
        ON CONFLICT (subject, window_start) DO UPDATE SET usage = budget_usage.usage + p_cost;
    END IF;
    IF p_project_window IS NOT NULL THEN
        INSERT INTO budget_usage (subject, window_start, usage)
        VALUES ('p:' || p_project, p_project_window, p_cost)
        ON CONFLICT (subject, window_start) DO UPDATE SET usage = budget_usage.usage + p_cost;
    END IF;
END $$"""

_RECLAIM_TICKETS = """
CREATE FUNCTION gw_reclaim_tickets() RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM admission_tickets WHERE expires_at <= now() RETURNING 1)
    SELECT count(*)::integer FROM gone
$$"""


# Ordered; migration N (1-based) brings the schema from version N-1 to N.
# INVARIANT: never edit a shipped migration, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE organizations (
            id text PRIMARY KEY,
            credits numeric NOT NULL,
            credits_reserved numeric NOT NULL DEFAULT 0,
            created_at text NOT NULL)""",
        """CREATE TABLE projects (
            id text PRIMARY KEY,
            organization text NOT NULL REFERENCES organizations(id),
            mode text NOT NULL DEFAULT 'hybrid' CHECK (mode IN ('api-keys', 'credits', 'hybrid')),
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
            provider_keys text NOT NULL DEFAULT '{}',
            created_at text NOT NULL)""",
        """CREATE TABLE api_keys (
            id text PRIMARY KEY,
            token_hash text NOT NULL UNIQUE,
            display text NOT NULL,
            project text NOT NULL REFERENCES projects(id),
            status text NOT NULL CHECK (status IN ('active', 'inactive', 'deleted')),
            usage_limit numeric,
            usage numeric NOT NULL DEFAULT 0,
            reserved numeric NOT NULL DEFAULT 0,
            description text NOT NULL DEFAULT '',
            created_at text NOT NULL)""",
        "CREATE INDEX api_keys_project ON api_keys(project)",
        """CREATE TABLE iam_rules (
            seq bigserial,
            id text PRIMARY KEY,
            key_id text NOT NULL REFERENCES api_keys(id),
            type text NOT NULL,
            "values" text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')))""",
        "CREATE INDEX iam_rules_key ON iam_rules(key_id, seq)",
        """CREATE TABLE reservations (
            id text PRIMARY KEY,
            key_id text NOT NULL,
            org_id text,
            amount numeric NOT NULL,
            expires_at timestamptz NOT NULL)""",
        "CREATE INDEX reservations_expiry ON reservations(expires_at)",
        _RESERVE,
        _SETTLE,
        _RELEASE,
        _RECLAIM,
    ),
    (
        # Flushes of the Redis ledger applied so far (each exactly once).
        """CREATE TABLE ledger_batches (
            id text PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now())""",
    ),
    (
        # Reservations are transient: losing the last few to a database crash only
        # forgets in-flight holds (consistently with the key's `reserved`), so their
        # commits need not wait for the disk. Settlements stay synchronous.
        _async_commit(_RESERVE),
        _async_commit(_RELEASE),
        _async_commit(_RECLAIM),
    ),
    (
        # Display names people can change (ids never change), and project-wide IAM rules.
        "ALTER TABLE organizations ADD COLUMN name text NOT NULL DEFAULT ''",
        "ALTER TABLE projects ADD COLUMN name text NOT NULL DEFAULT ''",
        """CREATE TABLE project_rules (
            seq bigserial,
            id text PRIMARY KEY,
            project_id text NOT NULL REFERENCES projects(id),
            type text NOT NULL,
            "values" text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')))""",
        "CREATE INDEX project_rules_project ON project_rules(project_id, seq)",
    ),
    (
        # Fair admission (Store.admit, gw_admit above): tickets of waiting requests and
        # the latest expiry of any ticket per key and organization.
        "CREATE SEQUENCE admission_seq",
        """CREATE TABLE admission_tickets (
            id text PRIMARY KEY,
            seq bigint NOT NULL,
            key_id text NOT NULL,
            org_id text,
            expires_at timestamptz NOT NULL)""",
        "CREATE INDEX admission_tickets_key ON admission_tickets(key_id, seq)",
        "CREATE INDEX admission_tickets_org ON admission_tickets(org_id, seq)",
        "ALTER TABLE api_keys ADD COLUMN queue_until timestamptz NOT NULL DEFAULT '-infinity'",
        "ALTER TABLE organizations ADD COLUMN queue_until timestamptz NOT NULL DEFAULT '-infinity'",
        _async_commit(_ADMIT),
        _WAKE,
        _SETTLE_WAKING,
        _RELEASE_WAKING,
        _RECLAIM_TICKETS,
    ),
    (
        # Key expiry, and the previous token a rotation keeps for its grace period.
        "ALTER TABLE api_keys ADD COLUMN expires_at text",
        "ALTER TABLE api_keys ADD COLUMN previous_token_hash text UNIQUE",
        "ALTER TABLE api_keys ADD COLUMN previous_token_until text",
    ),
    (
        # The audit log of administrative changes (proxy.audit); never a token or secret.
        """CREATE TABLE audit_log (
            seq bigserial PRIMARY KEY,
            time text NOT NULL,
            actor text NOT NULL,
            client text NOT NULL,
            action text NOT NULL,
            object_type text NOT NULL,
            object_id text NOT NULL,
            before text,
            after text)""",
        "CREATE INDEX audit_log_time ON audit_log(time)",
        "CREATE INDEX audit_log_object ON audit_log(object_id)",
    ),
    (
        # Per-key totals added by each instance's activity flush (proxy.key_activity).
        """CREATE TABLE key_activity (
            key_id text PRIMARY KEY,
            requests bigint NOT NULL DEFAULT 0,
            prompt_tokens bigint NOT NULL DEFAULT 0,
            completion_tokens bigint NOT NULL DEFAULT 0,
            last_used_at text)""",
    ),
    (
        # Period budgets (proxy.budgets) on keys and projects; reservations name the
        # budget windows they hold, `budget_usage` counts each window's settled usage
        # per subject (`k:<key>` / `p:<project>`) and window start.
        "ALTER TABLE api_keys ADD COLUMN budget_amount numeric",
        "ALTER TABLE api_keys ADD COLUMN budget_period text",
        "ALTER TABLE projects ADD COLUMN budget_amount numeric",
        "ALTER TABLE projects ADD COLUMN budget_period text",
        "ALTER TABLE reservations ADD COLUMN key_window text",
        "ALTER TABLE reservations ADD COLUMN project_id text",
        "ALTER TABLE reservations ADD COLUMN project_window text",
        "CREATE INDEX reservations_key_window ON reservations(key_id, key_window) "
        "WHERE key_window IS NOT NULL",
        "CREATE INDEX reservations_project_window ON reservations(project_id, project_window) "
        "WHERE project_window IS NOT NULL",
        """CREATE TABLE budget_usage (
            subject text NOT NULL,
            window_start text NOT NULL,
            usage numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (subject, window_start))""",
        _async_commit(_ADMIT_BUDGETS),
        _SETTLE_BUDGETS,
    ),
    (
        # Rate limits (issue 13 point 2): ceilings on keys and projects, their windows,
        # and gw_admit checking them with the money (a new overload).
        "ALTER TABLE api_keys ADD COLUMN rpm bigint",
        "ALTER TABLE api_keys ADD COLUMN tpm bigint",
        "ALTER TABLE api_keys ADD COLUMN max_parallel bigint",
        "ALTER TABLE projects ADD COLUMN rpm bigint",
        "ALTER TABLE projects ADD COLUMN tpm bigint",
        "ALTER TABLE projects ADD COLUMN max_parallel bigint",
        """CREATE TABLE rate_events (
            res_id text NOT NULL,
            subject text NOT NULL,
            at float8 NOT NULL,
            tokens bigint NOT NULL,
            open_until timestamptz NOT NULL,
            PRIMARY KEY (res_id, subject))""",
        "CREATE INDEX rate_events_window ON rate_events(subject, at)",
        # Requests in flight are counted without reading the whole window.
        "CREATE INDEX rate_events_open ON rate_events(subject, open_until)",
        _RATE_WINDOW,
        _RATE_TEXT,
        _RATE_CLOSE,
        _async_commit(_ADMIT_RATED),
    ),
    (
        # Rate windows keep running totals (gw_rate_totals, gw_rate_window above).
        "ALTER TABLE rate_events ADD COLUMN counted boolean NOT NULL DEFAULT true",
        """CREATE TABLE rate_totals (
            subject text PRIMARY KEY,
            requests bigint NOT NULL DEFAULT 0,
            tokens bigint NOT NULL DEFAULT 0)""",
        "INSERT INTO rate_totals (subject, requests, tokens) "
        "SELECT subject, count(*), sum(tokens) FROM rate_events GROUP BY subject",
        "DROP INDEX rate_events_window",
        "CREATE INDEX rate_events_counted ON rate_events(subject, counted, at)",
        _RATE_TOTALS,
        "CREATE TRIGGER rate_events_totals AFTER INSERT OR UPDATE OF tokens, counted OR DELETE "
        "ON rate_events FOR EACH ROW EXECUTE FUNCTION gw_rate_totals()",
        _RATE_WINDOW_TOTALS,
    ),
)


def _context_query(token_column: str) -> str:
    """The key's whole context in one round trip, found by `token_column`; the last two
    columns are that column's hash and the previous token's grace end."""
    return f"""
SELECT {", ".join("k." + c.strip() for c in KEY_COLUMNS.split(","))},
       k.reserved, p.id, p.organization, p.mode, p.status, p.provider_keys, p.name,
       p.budget_amount, p.budget_period, p.rpm, p.tpm, p.max_parallel,
       o.id, o.credits, o.credits_reserved,
       coalesce((SELECT json_agg(json_build_array(r.id, r.key_id, r.type, r."values", r.status)
                                 ORDER BY r.seq)
                   FROM iam_rules r WHERE r.key_id = k.id), '[]'),
       coalesce((SELECT json_agg(json_build_array(pr.id, pr.project_id, pr.type, pr."values",
                                                  pr.status) ORDER BY pr.seq)
                   FROM project_rules pr WHERE pr.project_id = p.id), '[]'),
       k.{token_column}, k.previous_token_until
  FROM api_keys k
  JOIN projects p ON p.id = k.project
  JOIN organizations o ON o.id = p.organization
 WHERE k.{token_column} IN (%s, %s)"""  # noqa: S608 - constant column names


_CONTEXT_QUERY = _context_query("token_hash")
# A token rotated out and still in its grace period (asked only when the first misses).
_PREVIOUS_CONTEXT_QUERY = _context_query("previous_token_hash")

_PROJECT_COLUMNS = (
    "id, organization, mode, status, provider_keys, name, budget_amount, budget_period, "
    "rpm, tpm, max_parallel"
)
_ORG_COLUMNS = "id, credits, name"
_PROJECT_RULE_COLUMNS = 'id, project_id, type, "values", status'


class PostgresStore:
    """The `Store` on PostgreSQL; safe to share between any number of gateway processes."""

    def __init__(
        self,
        url: str,
        *,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        secrets: SecretBox | None = None,
        pool_size: int = 10,
        holds_ledger: bool = True,
    ) -> None:
        """`holds_ledger=False`: the usage ledger is elsewhere (`RedisLedgerStore`), so
        reading a key never reclaims this database's (unused) reservations."""
        self._url = url
        self._ttl = reservation_ttl
        self._ids = InstanceIds()
        self._secrets = secrets
        self._pool = ConnectionPool(url, pool_size)
        # Expired reservations are reclaimed by the first reserve after this many seconds.
        self._reclaim_every = min(1.0, reservation_ttl / 4) if holds_ledger else math.inf
        self._last_reclaim = 0.0
        self._listener: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._pool.close()

    def hash_token(self, token: str) -> str:
        return hash_token(token)

    async def protect_secrets(self) -> tuple[int, int]:
        box = self._secrets
        if box is None:
            return 0, 0
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id, token_hash FROM api_keys WHERE token_hash NOT LIKE %s FOR UPDATE",
                (KEYED_PREFIX + "%",),
            )
            plain = await cursor.fetchall()
            for key_id, token_hash in plain:
                await conn.execute(
                    "UPDATE api_keys SET token_hash = %s WHERE id = %s",
                    (box.keyed(str(token_hash)), key_id),
                )
            cursor = await conn.execute("SELECT id, provider_keys FROM projects FOR UPDATE")
            sealed = 0
            for project_id, text in await cursor.fetchall():
                protected, count = protected_provider_keys(decode_provider_keys(str(text)), box)
                if count:
                    sealed += count
                    await conn.execute(
                        "UPDATE projects SET provider_keys = %s WHERE id = %s",
                        (encode_json(protected), project_id),
                    )
        return len(plain), sealed

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        """A pooled connection inside one transaction (committed on normal exit)."""
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    async def _fetchone(
        self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> tuple[Any, ...] | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def _ledger_call(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """A request-path function call (one transaction), tried again when PostgreSQL
        broke a deadlock by rolling it back: a settlement of a request older than its
        rate window can meet the admission that moves that row out of the window (both
        lock the row, then the window's totals), rarely, and then nothing was done."""
        for attempt in range(_DEADLOCK_ATTEMPTS):
            try:
                return await self._fetchone(query, params)
            except psycopg.errors.DeadlockDetected:
                if attempt == _DEADLOCK_ATTEMPTS - 1:
                    raise
        return None

    async def _fetchall(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    # -- schema ---------------------------------------------------------------------
    async def migrate(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            # Several instances may start at once: one migrates, the others wait.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.m'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
            )
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            if row is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(str(row[0]))
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"database schema version {version} is newer than this gateway knows "
                    f"({len(MIGRATIONS)}); upgrade the gateway"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await conn.execute(statement.encode("utf-8"))
            await conn.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS),))
        await self.reclaim_expired()

    async def ensure_defaults(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO organizations (id, credits, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (DEFAULT_ORG_ID, DEFAULT_ORG_CREDITS, now_rfc3339()),
            )
            await conn.execute(
                "INSERT INTO projects (id, organization, mode, created_at) "
                "VALUES (%s, %s, 'hybrid', %s) ON CONFLICT (id) DO NOTHING",
                (DEFAULT_PROJECT_ID, DEFAULT_ORG_ID, now_rfc3339()),
            )

    # -- request path ---------------------------------------------------------------
    async def key_context(self, token_hash: str) -> KeyContext | None:
        # `reserved` counts expired reservations until reclaimed; a key the policy
        # refuses on that figure never reaches `reserve`, so reclaim here too.
        if time.monotonic() - self._last_reclaim >= self._reclaim_every:
            await self.reclaim_expired()
        keyed, plain = lookup_forms(token_hash, self._secrets)
        row = await self._fetchone(_CONTEXT_QUERY, (keyed, plain))
        previous = row is None
        if previous:
            row = await self._fetchone(_PREVIOUS_CONTEXT_QUERY, (keyed, plain))
        if row is None or not (hashes_match(row[-2], keyed) or hashes_match(row[-2], plain)):
            return None
        n = len(KEY_COLUMNS.split(","))
        key = key_from_row(row[:n])
        if not previous and key.token_hash != keyed:
            # Stored by a process without the secret: converted on first use.
            async with self.transaction() as conn:
                await conn.execute(
                    "UPDATE api_keys SET token_hash = %s WHERE id = %s AND token_hash = %s",
                    (keyed, key.id, key.token_hash),
                )
            key = msgspec.structs.replace(key, token_hash=keyed)
        return KeyContext(
            key=key,
            reserved=row[n],
            project=project_from_row(row[n + 1 : n + 12]),
            organization=organization_from_row(row[n + 12 : n + 14]),
            credits_reserved=row[n + 14],
            rules=tuple(rule_from_row(r) for r in row[n + 15]),
            project_rules=tuple(project_rule_from_row(r) for r in row[n + 16]),
            token_expires_at=row[-1] if previous else None,
        )

    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        amount = parse_money(amount, "reservation amount")
        if time.monotonic() - self._last_reclaim >= self._reclaim_every:
            await self.reclaim_expired()
        reservation = Reservation(
            id=self._ids("res"), key_id=key_id, organization_id=organization_id, amount=amount
        )
        row = await self._fetchone(
            "SELECT gw_reserve(%s, %s, %s, %s, %s)",
            (reservation.id, key_id, organization_id, amount, self._ttl),
        )
        outcome = row[0] if row else "no_key"
        if outcome == "no_key":
            raise NotFound(f"key `{key_id}` does not exist")
        if outcome == "no_org":
            raise NotFound(f"organization `{organization_id}` does not exist")
        return reservation if outcome == "ok" else None

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        amount = parse_money(claim.amount, "reservation amount")
        if time.monotonic() - self._last_reclaim >= self._reclaim_every:
            await self.reclaim_expired()
        reservation = reservation_for(claim, amount, self._ids("res"))
        key_budget, project_budget = claim.key_budget, claim.project_budget
        kl, pl = claim.key_limits, claim.project_limits
        row = await self._ledger_call(
            "SELECT gw_admit(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s)",
            (
                ticket,
                reservation.id,
                claim.key_id,
                claim.organization_id,
                amount,
                self._ttl,
                ADMISSION_TICKET_TTL,
                None if key_budget is None else key_budget.amount,
                reservation.key_window,
                claim.project_id,
                None if project_budget is None else project_budget.amount,
                reservation.project_window,
                claim.now,
                claim.tokens,
                kl.any,
                kl.rpm,
                kl.tpm,
                kl.max_parallel,
                claim.project_id is not None and pl.any,
                pl.rpm,
                pl.tpm,
                pl.max_parallel,
            ),
        )
        return admission_outcome(row[0] if row else "no_key", claim, reservation)

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        if key is None and project is None:
            return WindowUsage(), WindowUsage()
        # One statement: one snapshot for both windows' usage and in-flight sums.
        row = await self._fetchone(
            """SELECT
                 coalesce((SELECT usage FROM budget_usage
                            WHERE subject = 'k:' || %(key)s AND window_start = %(kw)s), 0),
                 coalesce((SELECT sum(amount) FROM reservations
                            WHERE key_id = %(key)s AND key_window = %(kw)s
                              AND expires_at > now()), 0),
                 coalesce((SELECT usage FROM budget_usage
                            WHERE subject = 'p:' || %(project)s AND window_start = %(pw)s), 0),
                 coalesce((SELECT sum(amount) FROM reservations
                            WHERE project_id = %(project)s AND project_window = %(pw)s
                              AND expires_at > now()), 0)""",
            {
                "key": None if key is None else key[0],
                "kw": None if key is None else key[1],
                "project": None if project is None else project[0],
                "pw": None if project is None else project[1],
            },
        )
        assert row is not None
        return (
            WindowUsage(usage=Decimal(row[0]), reserved=Decimal(row[1])),
            WindowUsage(usage=Decimal(row[2]), reserved=Decimal(row[3])),
        )

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        await self._fetchone("DELETE FROM admission_tickets WHERE id = %s RETURNING id", (ticket,))

    def subscribe(self, wake: Callable[[str, str | None], None]) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(wake))

    async def _listen(self, wake: Callable[[str, str | None], None]) -> None:
        """Relay `gw_admission` notifications of this schema to `wake`, reconnecting
        after a failure (waiters poll meanwhile, so nothing is lost but latency)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    cursor = await conn.execute("SELECT current_schema()")
                    row = await cursor.fetchone()
                    schema = str(row[0]) if row else ""
                    await conn.execute("LISTEN gw_admission")
                    async for notice in conn.notifies():
                        parts = notice.payload.split("\t")
                        if len(parts) == 3 and parts[0] == schema:
                            wake(parts[1], parts[2] or None)
            except (psycopg.Error, OSError) as exc:
                _log.warning("admission notifications from PostgreSQL stopped: %s", exc)
                await asyncio.sleep(1.0)

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        cost = parse_money(actual_cost, "actual cost")
        params: list[Any] = [reservation.id, reservation.key_id, reservation.organization_id, cost]
        if reservation.key_window is None and reservation.project_window is None:
            query = "SELECT gw_settle(%s, %s, %s, %s)"
        else:
            query = "SELECT gw_settle(%s, %s, %s, %s, %s, %s, %s)"
            params += [reservation.key_window, reservation.project_id, reservation.project_window]
        if reservation.rate is not None:
            # One statement, one transaction: the charge and the rate windows' correction.
            query += ", gw_rate_close(%s, %s)"
            params += [reservation.id, tokens]
        await self._ledger_call(query, tuple(params))

    async def release(self, reservation: Reservation) -> None:
        if reservation.rate is None:
            await self._fetchone("SELECT gw_release(%s)", (reservation.id,))
        else:
            await self._ledger_call(
                "SELECT gw_release(%s), gw_rate_close(%s, 0)", (reservation.id, reservation.id)
            )

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        row = await self._fetchone(
            "SELECT concat_ws(chr(9), "
            "gw_rate_text(true, k.w_requests, k.w_tokens, k.w_parallel, k.w_oldest, k.w_newest), "
            "gw_rate_text(true, p.w_requests, p.w_tokens, p.w_parallel, p.w_oldest, p.w_newest)) "
            "FROM gw_rate_window(%s, %s) k, gw_rate_window(%s, %s) p",
            (f"k:{key_id}", now, f"p:{project_id}", now),
        )
        return parse_rate_state(str(row[0]) if row else "")

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        checked = check_rate_limits(limits)
        row = await self._fetchone(
            "UPDATE api_keys SET rpm = %s, tpm = %s, max_parallel = %s WHERE id = %s "  # noqa: S608
            f"RETURNING {KEY_COLUMNS}",
            (checked.rpm, checked.tpm, checked.max_parallel, key_id),
        )
        if row is None:
            raise NotFound(f"key `{key_id}` does not exist; list keys with `keys list`")
        return key_from_row(row)

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        checked = check_rate_limits(limits)
        row = await self._fetchone(
            "UPDATE projects SET rpm = %s, tpm = %s, max_parallel = %s WHERE id = %s "  # noqa: S608
            f"RETURNING {_PROJECT_COLUMNS}",
            (checked.rpm, checked.tpm, checked.max_parallel, project_id),
        )
        return self._project_or_raise(row, project_id)

    async def reclaim_expired(self) -> int:
        self._last_reclaim = time.monotonic()
        row = await self._fetchone("SELECT gw_reclaim(), gw_reclaim_tickets()")
        return int(row[0]) if row else 0

    # -- organizations --------------------------------------------------------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization:
        amount = parse_money(credits, "credits", allow_negative=True)
        if not org_id:
            raise StoreError("organization id is empty")
        row = await self._fetchone(
            "INSERT INTO organizations (id, credits, created_at) VALUES (%s, %s, %s) "  # noqa: S608 - constant column list
            f"ON CONFLICT (id) DO NOTHING RETURNING {_ORG_COLUMNS}",
            (org_id, amount, now_rfc3339()),
        )
        if row is None:
            raise StoreError(f"organization `{org_id}` already exists")
        return organization_from_row(row)

    async def set_credits(self, org_id: str, credits: Decimal) -> Organization:
        amount = parse_money(credits, "credits", allow_negative=True)
        row = await self._fetchone(
            f"UPDATE organizations SET credits = %s WHERE id = %s RETURNING {_ORG_COLUMNS}",  # noqa: S608
            (amount, org_id),
        )
        return self._org_or_raise(row, org_id)

    @staticmethod
    def _org_or_raise(row: tuple[Any, ...] | None, org_id: str) -> Organization:
        if row is None:
            raise NotFound(f"organization `{org_id}` does not exist; create it with `orgs create`")
        return organization_from_row(row)

    async def get_organization(self, org_id: str) -> Organization:
        row = await self._fetchone(
            f"SELECT {_ORG_COLUMNS} FROM organizations WHERE id = %s",  # noqa: S608
            (org_id,),
        )
        return self._org_or_raise(row, org_id)

    async def list_organizations(self) -> list[Organization]:
        rows = await self._fetchall(f"SELECT {_ORG_COLUMNS} FROM organizations ORDER BY id")  # noqa: S608
        return [organization_from_row(r) for r in rows]

    async def rename_organization(self, org_id: str, name: str) -> Organization:
        row = await self._fetchone(
            f"UPDATE organizations SET name = %s WHERE id = %s RETURNING {_ORG_COLUMNS}",  # noqa: S608
            (check_name(name, "organization"), org_id),
        )
        return self._org_or_raise(row, org_id)

    # -- projects -------------------------------------------------------------------
    @staticmethod
    def _project_or_raise(row: tuple[Any, ...] | None, project_id: str) -> Project:
        if row is None:
            raise NotFound(
                f"project `{project_id}` does not exist; create it with `projects create`"
            )
        return project_from_row(row)

    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project:
        checked = check_mode(mode)
        if not project_id:
            raise StoreError("project id is empty")
        await self.get_organization(org_id)
        row = await self._fetchone(
            "INSERT INTO projects (id, organization, mode, created_at) VALUES (%s, %s, %s, %s) "  # noqa: S608 - constant column list
            f"ON CONFLICT (id) DO NOTHING RETURNING {_PROJECT_COLUMNS}",
            (project_id, org_id, checked, now_rfc3339()),
        )
        if row is None:
            raise StoreError(f"project `{project_id}` already exists")
        return project_from_row(row)

    async def get_project(self, project_id: str) -> Project:
        row = await self._fetchone(
            f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = %s",  # noqa: S608
            (project_id,),
        )
        return self._project_or_raise(row, project_id)

    async def list_projects(self) -> list[Project]:
        rows = await self._fetchall(f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY id")  # noqa: S608
        return [project_from_row(r) for r in rows]

    async def _update_project(self, project_id: str, assignment: str, value: str) -> Project:
        row = await self._fetchone(
            f"UPDATE projects SET {assignment} = %s WHERE id = %s RETURNING {_PROJECT_COLUMNS}",  # noqa: S608
            (value, project_id),
        )
        return self._project_or_raise(row, project_id)

    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project:
        return await self._update_project(project_id, "mode", check_mode(mode))

    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project:
        check_provider_source(provider, source)
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT provider_keys FROM projects WHERE id = %s FOR UPDATE", (project_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                raise NotFound(f"project `{project_id}` does not exist")
            keys = decode_provider_keys(str(row[0]))
            if source is None:
                keys.pop(provider, None)
            else:
                keys[provider] = stored_source(source, self._secrets)
            cursor = await conn.execute(
                "UPDATE projects SET provider_keys = %s WHERE id = %s "  # noqa: S608 - constant column list
                f"RETURNING {_PROJECT_COLUMNS}",
                (encode_json(keys), project_id),
            )
            return self._project_or_raise(await cursor.fetchone(), project_id)

    async def archive_project(self, project_id: str) -> Project:
        return await self._update_project(project_id, "status", "deleted")

    async def rename_project(self, project_id: str, name: str) -> Project:
        return await self._update_project(project_id, "name", check_name(name, "project"))

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        amount, period = budget_columns(check_budget(budget))
        row = await self._fetchone(
            "UPDATE projects SET budget_amount = %s, budget_period = %s WHERE id = %s "  # noqa: S608
            f"RETURNING {_PROJECT_COLUMNS}",
            (amount, period, project_id),
        )
        return self._project_or_raise(row, project_id)

    # -- project IAM rules ------------------------------------------------------------
    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        checked = check_rule_type(rule_type)
        if not values or any(not v for v in values):
            raise StoreError(f"rule `{rule_type}` needs at least one non-empty value")
        await self.get_project(project_id)
        rule = ProjectRule(
            id=new_id("prule"), project_id=project_id, type=checked, values=tuple(values)
        )
        await self._fetchone(
            'INSERT INTO project_rules (id, project_id, type, "values", status) '
            "VALUES (%s, %s, %s, %s, 'active') RETURNING id",
            (rule.id, project_id, checked, encode_json(list(rule.values))),
        )
        return rule

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]:
        await self.get_project(project_id)
        rows = await self._fetchall(
            f"SELECT {_PROJECT_RULE_COLUMNS} FROM project_rules "  # noqa: S608
            "WHERE project_id = %s ORDER BY seq",
            (project_id,),
        )
        return [project_rule_from_row(r) for r in rows]

    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule:
        row = await self._fetchone(
            "UPDATE project_rules SET status = %s WHERE id = %s AND project_id = %s "  # noqa: S608
            f"RETURNING {_PROJECT_RULE_COLUMNS}",
            (check_rule_status(status), rule_id, project_id),
        )
        if row is None:
            raise NotFound(f"rule `{rule_id}` does not exist on project `{project_id}`")
        return project_rule_from_row(row)

    async def remove_project_rule(self, project_id: str, rule_id: str) -> None:
        row = await self._fetchone(
            "DELETE FROM project_rules WHERE id = %s AND project_id = %s RETURNING id",
            (rule_id, project_id),
        )
        if row is None:
            raise NotFound(f"rule `{rule_id}` does not exist on project `{project_id}`")

    # -- keys -----------------------------------------------------------------------
    @staticmethod
    def _key_or_raise(row: tuple[Any, ...] | None, key_id: str) -> ApiKey:
        if row is None:
            raise NotFound(f"key `{key_id}` does not exist; list keys with `keys list`")
        return key_from_row(row)

    async def create_key(
        self,
        project_id: str,
        usage_limit: Decimal | None,
        description: str,
        *,
        expires_at: str | None = None,
        rate_limits: RateLimits = NO_RATE_LIMITS,
    ) -> tuple[ApiKey, str]:
        limit = None if usage_limit is None else parse_money(usage_limit, "usage limit")
        expiry = parse_expiry(expires_at)
        rates = check_rate_limits(rate_limits)
        await self.get_project(project_id)
        token = generate_token()
        row = await self._fetchone(
            f"INSERT INTO api_keys ({KEY_COLUMNS}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, 0.00, %s, %s, %s, NULL, NULL, %s, %s, %s) "
            f"RETURNING {KEY_COLUMNS}",
            (
                new_id("key"),
                stored_hash(hash_token(token), self._secrets),
                display_token(token),
                project_id,
                "active",
                limit,
                description,
                now_rfc3339(),
                expiry,
                rates.rpm,
                rates.tpm,
                rates.max_parallel,
            ),
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        return key_from_row(row), token

    async def get_key(self, key_id: str) -> ApiKey:
        row = await self._fetchone(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s",  # noqa: S608
            (key_id,),
        )
        return self._key_or_raise(row, key_id)

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        if project_id is None:
            rows = await self._fetchall(
                f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"  # noqa: S608
            )
        else:
            rows = await self._fetchall(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE project = %s "  # noqa: S608
                "ORDER BY created_at, id",
                (project_id,),
            )
        return [key_from_row(r) for r in rows]

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        checked = check_key_status(status)
        # The guard sits in the UPDATE so a concurrent delete cannot be undone by a re-enable.
        row = await self._fetchone(
            f"UPDATE api_keys SET status = %s WHERE id = %s "  # noqa: S608
            f"AND (status <> 'deleted' OR %s = 'deleted') RETURNING {KEY_COLUMNS}",
            (checked, key_id, checked),
        )
        if row is None:
            current = await self.get_key(key_id)  # raises NotFound for an unknown key
            check_status_change(key_id, current.status, checked)
        return self._key_or_raise(row, key_id)

    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey:
        limit = None if usage_limit is None else parse_money(usage_limit, "usage limit")
        row = await self._fetchone(
            f"UPDATE api_keys SET usage_limit = %s WHERE id = %s RETURNING {KEY_COLUMNS}",  # noqa: S608
            (limit, key_id),
        )
        return self._key_or_raise(row, key_id)

    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        amount, period = budget_columns(check_budget(budget))
        row = await self._fetchone(
            "UPDATE api_keys SET budget_amount = %s, budget_period = %s WHERE id = %s "  # noqa: S608
            f"RETURNING {KEY_COLUMNS}",
            (amount, period, key_id),
        )
        return self._key_or_raise(row, key_id)

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        row = await self._fetchone(
            f"UPDATE api_keys SET description = %s WHERE id = %s RETURNING {KEY_COLUMNS}",  # noqa: S608
            (check_description(description), key_id),
        )
        return self._key_or_raise(row, key_id)

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        expiry = parse_expiry(expires_at)
        row = await self._fetchone(
            f"UPDATE api_keys SET expires_at = %s WHERE id = %s RETURNING {KEY_COLUMNS}",  # noqa: S608
            (expiry, key_id),
        )
        return self._key_or_raise(row, key_id)

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        grace = parse_grace(grace_seconds)
        token = generate_token()
        keep = grace > 0
        # One statement: the old hash moves to previous_token_hash as the new one lands,
        # and a deleted key is left alone (its status is checked in the same row lock).
        row = await self._fetchone(
            "UPDATE api_keys SET previous_token_hash = CASE WHEN %s THEN token_hash END, "  # noqa: S608
            "previous_token_until = %s, token_hash = %s, display = %s "
            f"WHERE id = %s AND status <> 'deleted' RETURNING {KEY_COLUMNS}",
            (
                keep,
                rfc3339_after(grace) if keep else None,
                stored_hash(hash_token(token), self._secrets),
                display_token(token),
                key_id,
            ),
        )
        if row is None:
            check_rotation(key_id, (await self.get_key(key_id)).status)  # NotFound or Conflict
        return self._key_or_raise(row, key_id), token

    # -- IAM rules ------------------------------------------------------------------
    async def add_rule(self, key_id: str, rule_type: RuleType, values: tuple[str, ...]) -> IamRule:
        checked = check_rule_type(rule_type)
        if not values or any(not v for v in values):
            raise StoreError(f"rule `{rule_type}` needs at least one non-empty value")
        await self.get_key(key_id)
        rule = IamRule(id=new_id("rule"), key_id=key_id, type=checked, values=tuple(values))
        await self._fetchone(
            'INSERT INTO iam_rules (id, key_id, type, "values", status) '
            "VALUES (%s, %s, %s, %s, 'active') RETURNING id",
            (rule.id, key_id, checked, encode_json(list(rule.values))),
        )
        return rule

    async def list_rules(self, key_id: str) -> list[IamRule]:
        await self.get_key(key_id)
        rows = await self._fetchall(
            'SELECT id, key_id, type, "values", status FROM iam_rules '
            "WHERE key_id = %s ORDER BY seq",
            (key_id,),
        )
        return [rule_from_row(r) for r in rows]

    async def remove_rule(self, key_id: str, rule_id: str) -> None:
        row = await self._fetchone(
            "DELETE FROM iam_rules WHERE id = %s AND key_id = %s RETURNING id", (rule_id, key_id)
        )
        if row is None:
            raise NotFound(f"rule `{rule_id}` does not exist on key `{key_id}`")

    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        row = await self._fetchone(
            "UPDATE iam_rules SET status = %s WHERE id = %s AND key_id = %s "
            'RETURNING id, key_id, type, "values", status',
            (check_rule_status(status), rule_id, key_id),
        )
        if row is None:
            raise NotFound(f"rule `{rule_id}` does not exist on key `{key_id}`")
        return rule_from_row(row)

    # -- key activity ---------------------------------------------------------------
    async def add_key_activity(self, rows: list[KeyActivity]) -> None:
        async with self.transaction() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO key_activity AS a (key_id, requests, prompt_tokens, "
                "completion_tokens, last_used_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (key_id) DO UPDATE SET "
                "requests = a.requests + excluded.requests, "
                "prompt_tokens = a.prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = a.completion_tokens + excluded.completion_tokens, "
                "last_used_at = greatest(a.last_used_at, excluded.last_used_at)",
                [
                    (r.key_id, r.requests, r.prompt_tokens, r.completion_tokens, r.last_used_at)
                    for r in sorted(rows, key=lambda row: row.key_id)  # one lock order
                ],
            )

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        query = (
            "SELECT key_id, requests, prompt_tokens, completion_tokens, last_used_at "
            "FROM key_activity"
        )
        if key_ids is None:
            rows = await self._fetchall(query)
        else:
            rows = await self._fetchall(query + " WHERE key_id = ANY(%s)", (key_ids,))
        return {row[0]: activity_from_row(row) for row in rows}

    # -- audit log ------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        await self._fetchone(
            "INSERT INTO audit_log (time, actor, client, action, object_type, object_id, "
            "before, after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
            (
                entry.time,
                entry.actor,
                entry.client,
                entry.action,
                entry.object_type,
                entry.object_id,
                None if entry.before is None else encode_json(entry.before),
                None if entry.after is None else encode_json(entry.after),
            ),
        )

    async def list_audit(
        self, since: str | None, object_filter: str | None, limit: int
    ) -> list[AuditEntry]:
        kind, ident = audit_filter(object_filter)
        rows = await self._fetchall(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log "  # noqa: S608 - constant column list
            "WHERE (%s::text IS NULL OR time >= %s) AND (%s::text IS NULL OR object_type = %s) "
            "AND (%s::text IS NULL OR object_id = %s) ORDER BY seq DESC LIMIT %s",
            (since, since, kind, kind, ident, ident, limit),
        )
        return [audit_entry_from_row(row) for row in reversed(rows)]
