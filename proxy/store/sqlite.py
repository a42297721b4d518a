"""SQLite key store and usage ledger (the default, for one gateway instance).

Administrative calls run on one dedicated worker thread that owns its connection.
The four request-path calls (`key_context`, `reserve`, `settle`, `release`) run
inline on the event loop on a second connection instead: each is a few indexed
statements and, in WAL mode with `synchronous=NORMAL`, a commit is a write into the
OS page cache with no fsync, so tens of microseconds. Handing them to a thread cost
more than that (a wake-up each way and GIL hand-overs that stretch to the 5 ms switch
interval under load).

The writes (`reserve`, `settle`, `release`) that reach the store in the same turn of
the event loop commit together in one transaction, each in its own savepoint (group
commit, see `sqlite_batch`): under load that writes each hot page once per turn
instead of once per request (and a run of admissions and settlements of one key with
rate limits updates the key's row once, `sqlite_folds`). A write with nothing to group it with (no
other request of this process in flight: one request at a time) commits at once, in
its caller's turn, instead of a turn later. The inline connection never waits for a lock
(`busy_timeout=0`): when another connection holds the write lock (the admin CLI, a
second process, this store's own worker) the batch goes to the worker thread, which
waits its turn there. WAL checkpoints (fsyncs of the WAL and the database file, tens
of milliseconds on a busy disk) run on the worker every `_CHECKPOINT_EVERY` inline
writes of the group commit or `_CHECKPOINT_ALONE_EVERY` committed alone, PASSIVE and
off the request path: writes go on inline meanwhile, so no request waits for those
fsyncs. Such a checkpoint copies the frames present when it started, but the writes
committed during its fsyncs keep the WAL from starting over; so at one request at a
time one that copied all it saw is followed at once by a short blocking one (a
catch-up of those few frames, ~1 ms: writes queue behind it on the worker), after
which the next write starts the WAL over. A WAL that starts over often stays small,
and so does SQLite's WAL-index hash table, which every commit and page lookup probes
past each earlier copy of the same page (at one request at a time the same few pages
are appended on every commit). Under load (no catch-up: it would stall every request
in flight), or after a checkpoint that could not copy everything (another connection
reading an old snapshot), the WAL grows, so once it holds `_WAL_BOUND_FRAMES` frames
the next checkpoint is a blocking one, whatever it copies, and the WAL starts over (and is cut
back to `_WAL_KEEP_BYTES`). With `synchronous="FULL"` (an fsync per commit) or `:memory:`
every call runs on the worker, writes still grouped. Writes use `BEGIN IMMEDIATE`,
which serialises them against every connection and process sharing the file.

Money is stored as decimal text and added up in Python with `Decimal`: exact. The
database runs in WAL mode and a call that writes returns only once its transaction
has committed. With the default `synchronous="NORMAL"` a commit is in the WAL (the
OS) before `settle` returns, so recorded usage survives a restart and `kill -9`; an
OS crash or power loss may undo the last commits. `synchronous="FULL"` also survives
those, at the cost of an fsync per commit (see docs/benchmarks.md).

Reserved amounts are the sum of the unexpired rows of `reservations`, so an expired
reservation stops counting the moment it expires, and reclaiming it is only garbage
collection. A key with controls also keeps running figures of its rows (exact integer
units, `_key_flight`): its admission reads them with the key's row instead of summing
its reservations, and counts its rows again only when one may have expired.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    InvalidOperation,
)
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

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
    RateCount,
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
    RATE_WINDOW_SECONDS,
    InstanceIds,
    activity_from_row,
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
    log_failed_release,
    new_id,
    now_epoch,
    now_rfc3339,
    organization_from_row,
    parse_expiry,
    parse_grace,
    parse_money,
    project_from_row,
    project_rule_from_row,
    rate_refusal,
    rfc3339_after,
    rule_from_row,
)
from proxy.store.sqlite_batch import Outcome, PendingWrite, run_in_transaction
from proxy.store.sqlite_folds import KeyFolds
from proxy.store.sqlite_folds import decimal_add as _decimal_add
from proxy.tokens import display_token, generate_token, hash_token, hashes_match

__all__ = ["MIGRATIONS", "SqliteStore", "sqlite_path_from_url"]

T = TypeVar("T")

logger = logging.getLogger("gateway.store")
# Inline writes of the group commit between two WAL checkpoints on the worker thread.
_CHECKPOINT_EVERY = 1000
# Writes committed alone (`SqliteStore._commit_alone`: one request at a time) between two
# checkpoints. Such a write appends about four pages (a plain admission 3, its settlement
# 5: 4 KB at the 1 KB pages of `_PAGE_SIZE`, bench.wal_pages), so with the catch-up after
# each checkpoint the WAL starts over every ~1,600 frames (~2,000 before reservations were
# clustered by key): within the WAL index's first 4,096-frame hash table, whose probes
# walk past every earlier copy of a page (issue 15, store alone at c=1: ~336k
# instructions a request at 400, ~386k at 1,000, ~401k when only the blocking checkpoint
# at `_WAL_BOUND_FRAMES` started the WAL over; with 8 pages a request, 200 or 300 saved
# nothing more than 400: docs/benchmarks.md, 2026-12-08).
_CHECKPOINT_ALONE_EVERY = 400
# What a request-path write returns when it admits a request (`SqliteStore._open`).
_OPENS: frozenset[type] = frozenset((Admitted, Reservation))
# Pages of a new database. Every commit appends each page it changed to the WAL whole: a
# plain request changes about twelve (its key's and organization's rows, a reservation
# in the table and four indexes, added then deleted), 49 KB of WAL per request at
# SQLite's default 4 KB, 12 KB at 1 KB. The WAL is synced at every checkpoint, so that
# is what the checkpoint waits for (bench/checkpoint_stall.py: largest WAL 74 -> 20 MB,
# p50 0.30 -> 0.25 ms, worst iteration 180 -> 110 ms under load). An existing database
# keeps its page size (in WAL mode it cannot change).
_PAGE_SIZE = 1024
# The WAL size (frames: 16 MB at 1 KB pages, 64 MB at 4 KB) at which the next checkpoint
# makes writes wait for it to complete, so that the WAL starts over, whatever the one
# before copied; below it, only the catch-up after a checkpoint that copied every frame it
# saw, one request at a time, blocks (see the module doc).
_WAL_BOUND_FRAMES = 16_384
# What is kept of the WAL file once it starts over (SQLite reuses the file).
_WAL_KEEP_BYTES = 16 * 1024 * 1024

# Ordered; migration N (1-based) brings the schema from version N-1 to N.
# INVARIANT: never edit a shipped migration, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE organizations (
            id TEXT PRIMARY KEY,
            credits TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE projects (
            id TEXT PRIMARY KEY,
            organization TEXT NOT NULL REFERENCES organizations(id),
            mode TEXT NOT NULL DEFAULT 'hybrid' CHECK (mode IN ('api-keys', 'credits', 'hybrid')),
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
            provider_keys TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL)""",
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            display TEXT NOT NULL,
            project TEXT NOT NULL REFERENCES projects(id),
            status TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'deleted')),
            usage_limit TEXT,
            usage TEXT NOT NULL DEFAULT '0',
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL)""",
        "CREATE INDEX api_keys_project ON api_keys(project)",
        """CREATE TABLE iam_rules (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL REFERENCES api_keys(id),
            type TEXT NOT NULL,
            "values" TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')))""",
        "CREATE INDEX iam_rules_key ON iam_rules(key_id)",
        """CREATE TABLE reservations (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            org_id TEXT,
            amount TEXT NOT NULL,
            expires_at REAL NOT NULL)""",
        "CREATE INDEX reservations_key ON reservations(key_id, expires_at)",
        "CREATE INDEX reservations_org ON reservations(org_id, expires_at)",
        "CREATE INDEX reservations_expiry ON reservations(expires_at)",
    ),
    (
        # Display names people can change (ids never change), and project-wide IAM rules.
        "ALTER TABLE organizations ADD COLUMN name TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE projects ADD COLUMN name TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE project_rules (
            id TEXT PRIMARY KEY,
            project_id TEXT NOT NULL REFERENCES projects(id),
            type TEXT NOT NULL,
            "values" TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')))""",
        "CREATE INDEX project_rules_project ON project_rules(project_id)",
    ),
    (
        # Fair admission (Store.admit): requests waiting for in-flight reservations to
        # settle hold a ticket; `seq` orders them (FIFO), `queue_until` on the key and
        # organization is the latest expiry of any of their tickets, so while it is in
        # the past nobody waits and admission skips the ticket table altogether.
        """CREATE TABLE admission_tickets (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            key_id TEXT NOT NULL,
            org_id TEXT,
            expires_at REAL NOT NULL)""",
        "CREATE INDEX admission_tickets_key ON admission_tickets(key_id, seq)",
        "CREATE INDEX admission_tickets_org ON admission_tickets(org_id, seq)",
        "ALTER TABLE api_keys ADD COLUMN queue_until REAL NOT NULL DEFAULT 0",
        "ALTER TABLE organizations ADD COLUMN queue_until REAL NOT NULL DEFAULT 0",
    ),
    (
        # Key expiry, and the previous token a rotation keeps for its grace period.
        "ALTER TABLE api_keys ADD COLUMN expires_at TEXT",
        "ALTER TABLE api_keys ADD COLUMN previous_token_hash TEXT",
        "ALTER TABLE api_keys ADD COLUMN previous_token_until TEXT",
        "CREATE UNIQUE INDEX api_keys_previous_token ON api_keys(previous_token_hash)",
    ),
    (
        # The audit log of administrative changes (proxy.audit); never a token or secret.
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            actor TEXT NOT NULL,
            client TEXT NOT NULL,
            action TEXT NOT NULL,
            object_type TEXT NOT NULL,
            object_id TEXT NOT NULL,
            before TEXT,
            after TEXT)""",
        "CREATE INDEX audit_log_time ON audit_log(time)",
        "CREATE INDEX audit_log_object ON audit_log(object_id)",
    ),
    (
        # Per-key totals added by each instance's activity flush (proxy.key_activity).
        """CREATE TABLE key_activity (
            key_id TEXT PRIMARY KEY,
            requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            last_used_at TEXT)""",
    ),
    (
        # Period budgets (proxy.budgets) on keys and projects; each reservation names the
        # budget windows it holds room in, and `budget_usage` counts each window's
        # settled usage per subject (`k:<key>` / `p:<project>`) and window start.
        "ALTER TABLE api_keys ADD COLUMN budget_amount TEXT",
        "ALTER TABLE api_keys ADD COLUMN budget_period TEXT",
        "ALTER TABLE projects ADD COLUMN budget_amount TEXT",
        "ALTER TABLE projects ADD COLUMN budget_period TEXT",
        "ALTER TABLE reservations ADD COLUMN key_window TEXT",
        "ALTER TABLE reservations ADD COLUMN project_id TEXT",
        "ALTER TABLE reservations ADD COLUMN project_window TEXT",
        "CREATE INDEX reservations_project ON reservations(project_id, project_window)",
        """CREATE TABLE budget_usage (
            subject TEXT NOT NULL,
            window_start TEXT NOT NULL,
            usage TEXT NOT NULL DEFAULT '0',
            PRIMARY KEY (subject, window_start)) WITHOUT ROWID""",
    ),
    (
        # Rate limits (issue 13 point 2): ceilings on keys and projects, and each
        # subject's sliding window: one row per admitted request of a key (`k:<id>`) or
        # project (`p:<id>`) with limits, kept while it is in the last minute (`at`, the
        # gateway's request clock) or in flight (`open_until`, the reservation's expiry;
        # 0 once settled or released).
        "ALTER TABLE api_keys ADD COLUMN rpm INTEGER",
        "ALTER TABLE api_keys ADD COLUMN tpm INTEGER",
        "ALTER TABLE api_keys ADD COLUMN max_parallel INTEGER",
        "ALTER TABLE projects ADD COLUMN rpm INTEGER",
        "ALTER TABLE projects ADD COLUMN tpm INTEGER",
        "ALTER TABLE projects ADD COLUMN max_parallel INTEGER",
        """CREATE TABLE rate_events (
            res_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            at REAL NOT NULL,
            tokens INTEGER NOT NULL,
            open_until REAL NOT NULL,
            PRIMARY KEY (res_id, subject))""",
        "CREATE INDEX rate_events_window ON rate_events(subject, at)",
        # Requests in flight are counted without reading the whole window.
        "CREATE INDEX rate_events_open ON rate_events(subject, open_until)",
    ),
    (
        # Running totals of each rate window (rate_totals), kept by triggers on
        # rate_events: an admission reads its window's requests and tokens in O(1)
        # instead of summing it (a key with a high rpm holds a minute of traffic).
        # `counted` is 1 while the row is in its window's totals; it leaves them once
        # it is older than the window, and the row goes once it is no longer in flight.
        "ALTER TABLE rate_events ADD COLUMN counted INTEGER NOT NULL DEFAULT 1",
        """CREATE TABLE rate_totals (
            subject TEXT PRIMARY KEY,
            requests INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
        "INSERT INTO rate_totals (subject, requests, tokens) "
        "SELECT subject, count(*), sum(tokens) FROM rate_events GROUP BY subject",
        "DROP INDEX rate_events_window",
        "CREATE INDEX rate_events_counted ON rate_events(subject, counted, at)",
        """CREATE TRIGGER rate_events_added AFTER INSERT ON rate_events WHEN NEW.counted = 1
        BEGIN
            INSERT OR IGNORE INTO rate_totals (subject) VALUES (NEW.subject);
            UPDATE rate_totals SET requests = requests + 1, tokens = tokens + NEW.tokens
             WHERE subject = NEW.subject;
        END""",
        """CREATE TRIGGER rate_events_changed AFTER UPDATE OF tokens, counted ON rate_events
        WHEN OLD.counted = 1 OR NEW.counted = 1
        BEGIN
            UPDATE rate_totals
               SET requests = requests + NEW.counted - OLD.counted,
                   tokens = tokens + NEW.counted * NEW.tokens - OLD.counted * OLD.tokens
             WHERE subject = NEW.subject;
        END""",
        """CREATE TRIGGER rate_events_removed AFTER DELETE ON rate_events WHEN OLD.counted = 1
        BEGIN
            UPDATE rate_totals SET requests = requests - 1, tokens = tokens - OLD.tokens
             WHERE subject = OLD.subject;
        END""",
    ),
    (
        # Rate windows by request second: request times are whole seconds of the
        # gateway's clock, so one row per subject and second (`rate_buckets`: how many
        # requests and their tokens) keeps the sliding window exact, where a row per
        # request (rate_events) cost an insert into three indexes, two triggers and a
        # settlement update on every request: two thirds of what a rate-limited key
        # cost (bench.profile_gateway --controls). `rate_totals` keeps each window's
        # sums and its oldest second, maintained by the admission itself; requests in
        # flight are the subject's live reservations (the project's are those naming
        # it in `project_id`, which an admission now always sets).
        """CREATE TABLE rate_buckets (
            subject TEXT NOT NULL,
            at REAL NOT NULL,
            requests INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            PRIMARY KEY (subject, at)) WITHOUT ROWID""",
        "INSERT INTO rate_buckets (subject, at, requests, tokens) "
        "SELECT subject, at, count(*), sum(tokens) FROM rate_events WHERE counted = 1 "
        "GROUP BY subject, at",
        "ALTER TABLE rate_totals ADD COLUMN oldest REAL",
        "UPDATE rate_totals SET oldest = "
        "(SELECT min(at) FROM rate_buckets b WHERE b.subject = rate_totals.subject)",
        "DROP TRIGGER rate_events_added",
        "DROP TRIGGER rate_events_changed",
        "DROP TRIGGER rate_events_removed",
        "DROP TABLE rate_events",
    ),
    (
        # Expired reservations are deleted once per group commit, not once per
        # admission, and that delete reads the whole table (only the requests in flight,
        # plus what expired since the last commit): the index on the expiry cost an
        # entry written and deleted per request, which nothing else reads.
        "DROP INDEX reservations_expiry",
        # Admission sums the organization's live reservations (every request billed to
        # credits, one row per request in flight): with the amount in the index that
        # is a scan of the index alone, not a lookup of each row in the table.
        "DROP INDEX reservations_org",
        "CREATE INDEX reservations_org ON reservations(org_id, expires_at, amount)",
    ),
    (
        # A key's live reservations (the sum its usage limit and budget window are held
        # against, and its rate window's requests in flight) read from the index alone:
        # with (key_id, expires_at) each reservation in flight cost a lookup of its row
        # for `amount`, on every admission of a key with controls.
        "CREATE INDEX reservations_key_flight "
        "ON reservations(key_id, expires_at, key_window, amount)",
        "DROP INDEX reservations_key",
        # A rate window's running totals follow its seconds' rows by trigger: the
        # admission's count and the settlement's token correction are one statement
        # each instead of two (a statement from Python costs more than the trigger's
        # update). Seconds leaving the window are taken out of the totals explicitly
        # (`_rate_count`), so a delete has no trigger.
        """CREATE TRIGGER rate_buckets_added AFTER INSERT ON rate_buckets
        BEGIN
            INSERT INTO rate_totals (subject, requests, tokens, oldest)
            VALUES (NEW.subject, NEW.requests, NEW.tokens, NEW.at)
            ON CONFLICT (subject) DO UPDATE SET requests = requests + excluded.requests,
                tokens = tokens + excluded.tokens,
                oldest = min(coalesce(oldest, excluded.oldest), excluded.oldest);
        END""",
        """CREATE TRIGGER rate_buckets_changed AFTER UPDATE OF requests, tokens ON rate_buckets
        BEGIN
            UPDATE rate_totals SET requests = requests + NEW.requests - OLD.requests,
                tokens = tokens + NEW.tokens - OLD.tokens
             WHERE subject = NEW.subject;
        END""",
    ),
    (
        # Reservations keyed by their id alone (WITHOUT ROWID): an admission inserts,
        # and a settlement deletes, one b-tree entry fewer (the table was a rowid b-tree
        # plus an index on the id), so a plain request changes two pages fewer (12 -> 10),
        # each a WAL frame (two writes, and a checksum of the page) at one request at a
        # time: the store alone -5% instructions per request at c=1, the same at c=64
        # (docs/benchmarks.md, 2026-12-07). The live rows are copied.
        """CREATE TABLE reservations_by_id (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            org_id TEXT,
            amount TEXT NOT NULL,
            expires_at REAL NOT NULL,
            key_window TEXT,
            project_id TEXT,
            project_window TEXT) WITHOUT ROWID""",
        "INSERT INTO reservations_by_id (id, key_id, org_id, amount, expires_at, key_window, "
        "project_id, project_window) SELECT id, key_id, org_id, amount, expires_at, "
        "key_window, project_id, project_window FROM reservations",
        "DROP TABLE reservations",
        "ALTER TABLE reservations_by_id RENAME TO reservations",
        "CREATE INDEX reservations_project ON reservations(project_id, project_window)",
        "CREATE INDEX reservations_org ON reservations(org_id, expires_at, amount)",
        "CREATE INDEX reservations_key_flight "
        "ON reservations(key_id, expires_at, key_window, amount)",
    ),
    (
        # A key's reserved figures (`_key_flight`): the sum of its rows' `units` (the
        # amount in whole 10**-12 USD, exact integers) and their count, added by each
        # admission and taken out by each settlement, release or undo that deletes a
        # row; `flight_until` is at most the earliest expiry of the key's rows, so
        # while it is in the future none has expired (no sweep has deleted one without
        # taking it out) and the figures are exactly the key's live reservations. The
        # admission of a key with controls reads them with the key's row instead of
        # summing its reservations (~1k instructions per reservation in flight). NULL:
        # not kept (keys without controls, existing databases, amounts of finer
        # scale): counted when needed.
        "ALTER TABLE api_keys ADD COLUMN flight_units INTEGER",
        "ALTER TABLE api_keys ADD COLUMN flight_count INTEGER",
        "ALTER TABLE api_keys ADD COLUMN flight_until REAL",
        "ALTER TABLE reservations ADD COLUMN units INTEGER",
    ),
    (
        # A key's current rate second and budget window kept in its own row (`_KeySlot`),
        # so that the admission's and the settlement's UPDATE of the key (its reserved
        # figures, its usage) count them: three statements fewer per request of a key
        # with rate limits and a budget (the rate bucket's upsert with its trigger, the
        # token correction with its trigger, the budget window's charge). `slot_at`'s
        # requests and tokens, and `slot_window`'s settled usage (decimal text, added
        # with `decimal_add` as every balance), come on top of what `rate_buckets`,
        # `rate_totals` and `budget_usage` hold for the same second and window; an
        # admission at another second (window) first adds them there (once per second,
        # once per window). Empty in an existing database: its figures stay where they
        # are, and count as before.
        "ALTER TABLE api_keys ADD COLUMN slot_at REAL",
        "ALTER TABLE api_keys ADD COLUMN slot_requests INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE api_keys ADD COLUMN slot_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE api_keys ADD COLUMN slot_window TEXT",
        "ALTER TABLE api_keys ADD COLUMN slot_usage TEXT NOT NULL DEFAULT '0'",
    ),
    (
        # Reservations clustered by their key (WITHOUT ROWID, PRIMARY KEY (key_id, id)):
        # the table is its own index by key, so `reservations_key_flight` goes, and an
        # admission inserts, and a settlement deletes, one b-tree entry fewer. At one
        # request at a time each b-tree touched is a page appended to the WAL by each of
        # the two commits: a plain request writes 8 pages instead of 10 (two writes and
        # a checksum each, bench.wal_pages). Settlements, releases and undos delete by
        # (key_id, id), which their `Reservation` carries; a key's reads (its live sum,
        # its rows) search the primary key. The live rows are copied.
        """CREATE TABLE reservations_by_key (
            id TEXT NOT NULL,
            key_id TEXT NOT NULL,
            org_id TEXT,
            amount TEXT NOT NULL,
            expires_at REAL NOT NULL,
            key_window TEXT,
            project_id TEXT,
            project_window TEXT,
            units INTEGER,
            PRIMARY KEY (key_id, id)) WITHOUT ROWID""",
        "INSERT INTO reservations_by_key (id, key_id, org_id, amount, expires_at, key_window, "
        "project_id, project_window, units) SELECT id, key_id, org_id, amount, expires_at, "
        "key_window, project_id, project_window, units FROM reservations",
        "DROP TABLE reservations",
        "ALTER TABLE reservations_by_key RENAME TO reservations",
        "CREATE INDEX reservations_project ON reservations(project_id, project_window)",
        "CREATE INDEX reservations_org ON reservations(org_id, expires_at, amount)",
    ),
)

_PROJECT_COLUMNS = (
    "id, organization, mode, status, provider_keys, name, budget_amount, budget_period, "
    "rpm, tpm, max_parallel"
)
_PROJECT_RULE_COLUMNS = 'id, project_id, type, "values", status'


# `rate_windows` counts every subject, limits or not.
_COUNT_ALL = RateLimits(max_parallel=1)


def sqlite_path_from_url(url: str) -> str:
    """`sqlite:///./gateway.db` -> `./gateway.db`; `sqlite:////abs/x.db` -> `/abs/x.db`;
    `sqlite://:memory:` -> `:memory:`."""
    if not url.startswith("sqlite://"):
        raise StoreError(f"database `{url}` is not a SQLite URL; write `sqlite:///./gateway.db`")
    rest = url.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/") or rest == "/":
        raise StoreError(
            f"database `{url}` has no file path; write `sqlite:///./gateway.db` (relative) "
            "or `sqlite:////var/lib/gateway.db` (absolute)"
        )
    return rest[1:]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
    return "locked" in str(exc) or "busy" in str(exc)


def _decimal_subtract(total: str, amount: str) -> str:
    return str(Decimal(total) - Decimal(amount))


def _add_money_functions(conn: sqlite3.Connection) -> None:
    """Exact money arithmetic on the stored decimal text inside a statement: a
    settlement updates a balance in one statement instead of a read and a write
    (SQLite's own arithmetic is floating point)."""
    conn.create_function("decimal_add", 2, _decimal_add, deterministic=True)
    conn.create_function("decimal_subtract", 2, _decimal_subtract, deterministic=True)


def _sum(rows: list[tuple[Any, ...]]) -> Decimal:
    # map over a flat list: a generator of Decimal(row[0]) was a visible share of `reserve`
    # with dozens of requests in flight.
    return sum(map(Decimal, [row[0] for row in rows]), Decimal(0))


# How far SQLite's floating-point total of non-negative amounts may be from their exact
# sum: each text-to-double conversion and each addition is off by at most a few units
# in the 16th digit, so a millionth of the total (plus the smallest double, for amounts
# that underflow) is a bound no realistic count of reservations comes near.
_TOTAL_RELATIVE_SLACK = 1e-6
_TOTAL_ABSOLUTE_SLACK = 1e-300
# `_below` compares in floating point first, for rooms well inside the normal range
# (where rounding errors are relative), with this relative margin.
_NORMAL_FLOATS = 1e-250
_FLOAT_MARGIN = 1e-12


_KEY = "key_id = ?"
_ORG = "org_id = ?"
_KEY_WINDOW = "key_id = ? AND key_window = ?"
_PROJECT_WINDOW = "project_id = ? AND project_window = ?"


def _in_flight_below(
    conn: sqlite3.Connection,
    owner: str,  # one of the constant conditions above, never a value
    params: tuple[str, ...],
    now: float,
    room: Decimal,
) -> bool:
    """Whether the live reservations matching `owner` (a key, an organization, a budget
    window) sum to less than `room`, exactly.

    Summing every row as a Decimal in Python was a visible share of each admission
    with dozens of requests in flight (bench.profile_gateway --self). SQLite sums in C,
    but in floating point, so its total decides only when it is clearly on one side of
    `room`; near the boundary (a key about to reach its limit) the exact sum does."""
    where = f"{owner} AND expires_at > ?"
    total, count = conn.execute(
        f"SELECT total(amount), count(*) FROM reservations WHERE {where}",  # noqa: S608 - constant
        (*params, now),
    ).fetchone()
    return _below(conn, where, (*params, now), total, count, room)


def _below(
    conn: sqlite3.Connection,
    where: str,  # a constant condition, never a value
    params: tuple[Any, ...],
    total: float,
    count: int,
    room: Decimal,
) -> bool:
    """`_in_flight_below` from SQLite's floating-point `total` of the `count` rows
    matching `where`: exact, reading the rows only near the boundary."""
    if count == 0:
        return room > 0
    if math.isfinite(total):
        # First in floating point: Decimal(float) is exact and slow (a power of two per
        # conversion), twice per check of a key with a limit and a budget. `float(room)`
        # is within 2**-53 of `room` and each operation below within 2**-53 of its
        # exact result; a margin of 1e-12 of `room` covers them many times over, for
        # `room` in the normal range (smaller or negative: the exact figures decide).
        room_float = float(room)
        if room_float > _NORMAL_FLOATS:
            slack_float = total * _TOTAL_RELATIVE_SLACK + _TOTAL_ABSOLUTE_SLACK
            if total + slack_float < room_float * (1 - _FLOAT_MARGIN):
                return True
            if total - slack_float >= room_float * (1 + _FLOAT_MARGIN):
                return False
        slack = Decimal(total * _TOTAL_RELATIVE_SLACK + _TOTAL_ABSOLUTE_SLACK)
        estimate = Decimal(total)
        if estimate + slack < room:
            return True
        if estimate - slack >= room:
            return False
    rows = conn.execute(
        f"SELECT amount FROM reservations WHERE {where}",  # noqa: S608 - constant
        params,
    ).fetchall()
    return _sum(rows) < room


# A key's reserved figures as read with its row: `flight_units`, `flight_count`,
# `flight_until` (see the migration that added them).
_Figures = tuple[Any, Any, Any]

# The key's live reservations at one instant, exactly: their decimal total, their count,
# and its `flight_units` from then on (None: not kept).
_KeyFlight = tuple[Decimal, int, int | None]

# A subject's `rate_totals` row: requests, tokens, oldest second (all None: no row).
_Totals = tuple[Any, Any, Any]

# Reserved figures count money in whole units of 10**-12 USD (integers: SQLite adds them
# exactly in a trigger), up to `_MAX_UNITS` (SQLite's integers are 64-bit and would
# overflow into floating point). An amount of finer scale, or a sum that large, is not
# kept: the key's figures go NULL and its admissions count its reservations again.
_UNIT_EXPONENT = 12
_MAX_UNITS = 1 << 62
_UNITS = Context(prec=1000, Emin=MIN_EMIN, Emax=MAX_EMAX, traps=[Inexact, InvalidOperation])


def _units(amount: Decimal) -> int | None:
    """`amount` in units when it is a whole number of them below `_MAX_UNITS`."""
    try:
        scaled = amount.scaleb(_UNIT_EXPONENT, context=_UNITS)
        units = int(scaled)
    except (DecimalException, OverflowError, ValueError):
        return None
    return units if units == scaled and 0 <= units < _MAX_UNITS else None


_NO_UNITS = object()
_UNITS_MEMO = 256
# Keys whose rate slot's second a store remembers (`SqliteStore._slot_seconds`).
_SLOT_SECONDS_MEMO = 4096


def _money(units: int) -> Decimal:
    """Units back to USD, exactly (a 64-bit integer has at most 19 digits)."""
    return Decimal(units).scaleb(-_UNIT_EXPONENT)


def _key_flight(conn: sqlite3.Connection, key_id: str, now: float, figures: _Figures) -> _KeyFlight:
    """The key's live reservations at `now`: its figures while they are exact (kept,
    and none of its rows has expired), else counted again: the key's expired rows
    are deleted (garbage, as the group commit's sweep; a settlement that comes later
    finds nothing to delete and charges the key as it does after a sweep), the rest
    summed, and the figures kept from there when every row has its units.

    INVARIANT: while `flight_units` is not NULL, every row of the key in
    `reservations` has `units`; `flight_units` and `flight_count` are the sum and count
    of its rows plus those a sweep deleted since they were last counted (every insert
    adds its row, `_ADD_FLIGHT`; every settlement, release or undo that deletes one
    takes it out, `_LEAVE_FLIGHT`; a sweep takes nothing out), so never below the
    key's live reservations; and `flight_until` is at most the earliest expiry of the
    rows added since, so while `flight_until` > now no sweep has deleted one of them
    (a sweep deletes expired rows only) and none has expired: the figures are exactly
    the key's live reservations. Every insert of a row of a key whose figures are
    kept sets its `units` and adds them (`_add_row_units`), or drops the figures;
    settlements, releases and undos take out the units their `Reservation` says its
    row holds (rows never gain units after their insert)."""
    units, count, until = figures
    if units is not None and until > now:
        return _money(units), count, units
    conn.execute("DELETE FROM reservations WHERE key_id = ? AND expires_at <= ?", (key_id, now))
    rows = conn.execute(
        "SELECT id, amount, units, expires_at FROM reservations WHERE key_id = ?",
        (key_id,),
    ).fetchall()
    amounts = [Decimal(row[1]) for row in rows]
    total = 0
    for row in rows:
        # A row without units (admitted while the figures were not kept, by an
        # admission that did not need them) could not leave them: the figures are
        # kept again once the key's rows all have theirs.
        if row[2] is None or (total := total + row[2]) >= _MAX_UNITS:
            if units is not None:
                conn.execute("UPDATE api_keys SET flight_units = NULL WHERE id = ?", (key_id,))
            return sum(amounts, Decimal(0)), len(rows), None
    conn.execute(
        "UPDATE api_keys SET flight_units = ?, flight_count = ?, flight_until = ? WHERE id = ?",
        (total, len(rows), min((row[3] for row in rows), default=math.inf), key_id),
    )
    return _money(total), len(rows), total


def _add_row_units(
    conn: sqlite3.Connection,
    key_id: str,
    kept: int | None,
    units: int | None,
    expires: float,
    sets: list[str] | None = None,
    params: list[Any] | None = None,
) -> None:
    """Add a new row's `units` (None: it has none) to its key's figures, `kept` (None:
    not kept); a row that cannot join kept figures drops them. `sets` and `params`:
    other assignments to the key's row (its slots) made by the same UPDATE."""
    if kept is None and not sets:
        return
    sets = [] if sets is None else sets
    params = [] if params is None else params
    if kept is not None:
        if units is None or kept + units >= _MAX_UNITS:
            sets.append(_DROP_FLIGHT)
        else:
            sets.append(_ADD_FLIGHT)
            params += (units, expires)
    if sets:
        params.append(key_id)
        conn.execute(_KEY_ADMISSION_UPDATES[tuple(sets)], params)


# An admitted reservation of `units` expiring at a time joins its key's figures.
_ADD_FLIGHT = (
    "flight_units = flight_units + ?, flight_count = flight_count + 1, "
    "flight_until = min(flight_until, ?)"
)
# A row that cannot join its key's figures drops them (counted again when needed).
_DROP_FLIGHT = "flight_units = NULL"
# A deleted reservation of `units` leaves them; its key's last one gone, the figures are
# exact again whatever expired meanwhile (`flight_count` counted each row added and not
# taken out, swept or not: 0 means none is left and none was swept). The units are the
# ones its `Reservation` says its row holds (its admission set them), known without
# reading the row; figures not kept stay NULL.
_LEAVE_FLIGHT = (
    "flight_units = flight_units - ?, flight_count = flight_count - 1, "
    "flight_until = CASE WHEN flight_count = 1 THEN 9e999 ELSE flight_until END"
)


def _settle_key(leaves: bool, rate: bool, window: bool) -> str:
    """The settlement's UPDATE of its key (the cost its first parameter): the usage;
    with `leaves`, the reservation leaving the key's reserved figures; with `rate` and
    `window`, the token correction and the cost in the key's slots, only while they
    hold the request's second and window (else it changes nothing, and the caller goes
    the long way)."""
    sets = ["usage = decimal_add(usage, ?)"]
    where = "id = ?"
    if leaves:
        sets.append(_LEAVE_FLIGHT)
    if rate:
        sets.append("slot_tokens = slot_tokens + ?")
        where += " AND slot_at = ?"
    if window:
        # ?1: the cost, bound once for both sums.
        sets.append("slot_usage = decimal_add(slot_usage, ?1)")
        where += " AND slot_window = ?"
    return f"UPDATE api_keys SET {', '.join(sets)} WHERE {where}"  # noqa: S608 - constants


# Built once: a statement from one string object each time (the statement cache's key).
_SETTLE_KEY = {
    (leaves, rate, window): _settle_key(leaves, rate, window)
    for leaves in (False, True)
    for rate in (False, True)
    for window in (False, True)
}


# The admission of a key with rate limits reads in one statement what it needs of the
# key: its row with its reserved figures, its budget window's settled usage (NULL
# without a budget or nothing settled), its rate window's totals, its organization's
# row and the organization's live reservations (their total, NULL when there are none),
# where up to six statements read them before. Same transaction and instant: nothing
# the admission does before using them writes any of them. Each column fetched costs
# ~1.7k instructions (SQLite's and the sqlite3 module's per-column work), so what is
# only compared is compared here: whether a line is open at the key or organization
# (`queue_until` > now), the key's reserved figures only while they are exact
# (`_key_flight`; else NULL: its reservations are counted again), and the budget slot's
# usage only while it holds the window (else NULL: the slot is read to move it, once per
# window).
_RATED_KEY_ROW = (
    "SELECT k.usage, k.usage_limit, b.usage, t.requests, t.tokens, t.oldest, "
    "CASE WHEN k.flight_until > ?4 THEN k.flight_units END, k.flight_count, o.credits, "
    "CASE WHEN count(r.amount) THEN total(r.amount) END, "
    "max(k.queue_until, coalesce(o.queue_until, 0)) > ?4, "
    "k.slot_at, k.slot_requests, k.slot_tokens, "
    "CASE WHEN k.slot_window = ?2 THEN k.slot_usage END "
    "FROM api_keys k "
    # ?1: the key's subject, in both windows' tables.
    "LEFT JOIN budget_usage b ON b.subject = ?1 AND b.window_start = ?2 "
    "LEFT JOIN rate_totals t ON t.subject = ?1 "
    "LEFT JOIN organizations o ON o.id = ?3 "
    # An aggregate over the organization's live reservations (none, or no organization:
    # one row of NULLs, counted 0), the other columns the same on every row; no key:
    # k.usage (NOT NULL) is NULL, and no organization o.credits (NOT NULL).
    "LEFT JOIN reservations r ON r.org_id = o.id AND r.expires_at > ?4 "
    "WHERE k.id = ?5"
)
# A rated key's budget slot when it has no budget (`_key_window_slot` is not called).
_NO_WINDOW_SLOT: tuple[Any, Any] = (None, "0")
# A rated key's reserved figures when its read found them not exact (`_RATED_KEY_ROW`):
# whether they are kept is not known, so `_key_flight` counts the reservations again
# and drops the figures if they cannot be kept (harmless when already dropped).
_FIGURES_NOT_EXACT: _Figures = (True, None, -math.inf)


# The admission of a key without rate limits or budget, billed to its organization's
# credits (the plain request), reads in one statement the key's row, the organization's
# and the organization's live reservations (total and count), where three statements
# read them: same transaction and instant, and nothing the admission does before using
# them writes any of them. An aggregate over a LEFT JOIN, as `_RATED_KEY_ROW` (a
# derived table of the sum was materialised on every call, and cost more than the three
# statements); no key or no organization: one row of NULLs (the separate reads then
# say which is missing).
_PLAIN_ROWS = (
    "SELECT k.usage, k.usage_limit, k.id, k.queue_until, o.credits, o.id, o.queue_until, "
    "total(r.amount), count(r.amount), k.flight_units "
    "FROM api_keys k JOIN organizations o ON o.id = ? "
    "LEFT JOIN reservations r ON r.org_id = o.id AND r.expires_at > ? "
    "WHERE k.id = ?"
)
# `_in_flight_below`'s condition for an organization's live reservations.
_ORG_LIVE = f"{_ORG} AND expires_at > ?"
# A key's rate slot as read with its row: `slot_at`, `slot_requests`, `slot_tokens` (the
# requests and tokens of that second not yet in `rate_buckets`/`rate_totals`).
_RateSlot = tuple[Any, Any, Any]
# A key's budget slot as read with its row: `slot_window`, `slot_usage` (the settled
# usage of that window not yet in `budget_usage`).
_WindowSlot = tuple[Any, Any]


# The assignments of a key's admission UPDATE to its slots (`_key_rate_slot`,
# `_key_window_slot`): a request counted in the slot's second, a slot moved to a new
# second, a budget slot moved to a new window.
_SAME_SECOND = "slot_requests = slot_requests + 1, slot_tokens = slot_tokens + ?"
_NEW_SECOND = "slot_at = ?, slot_requests = 1, slot_tokens = ?"
_NEW_WINDOW = "slot_window = ?, slot_usage = '0'"


def _slot_usage(slot: _WindowSlot, start: str) -> Decimal | None:
    """What the key's budget slot holds of the window starting at `start` (None: it
    holds another window, or none)."""
    return Decimal(slot[1]) if slot[0] == start else None


def _key_rate_slot(
    conn: sqlite3.Connection, claim: Claim, slot: _RateSlot, sets: list[str], params: list[Any]
) -> None:
    """Count an admitted request of a key with rate limits in its rate slot (the key's
    UPDATE makes `sets`); a slot of another second first goes to `rate_buckets` (its
    totals follow by trigger), unless it has left the window (then it counts nowhere)."""
    at, requests, tokens = slot
    if at == claim.now:
        sets.append(_SAME_SECOND)
        params.append(claim.tokens)
        return
    if at is not None and at > claim.now - RATE_WINDOW_SECONDS and (requests or tokens):
        conn.execute(
            "INSERT INTO rate_buckets (subject, at, requests, tokens) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (subject, at) DO UPDATE "
            "SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens",
            (f"k:{claim.key_id}", at, requests, tokens),
        )
    sets.append(_NEW_SECOND)
    params += (claim.now, claim.tokens)


def _key_window_slot(
    conn: sqlite3.Connection,
    key_id: str,
    start: str,
    slot: _WindowSlot,
    sets: list[str],
    params: list[Any],
) -> None:
    """Make the key's budget slot hold the window starting at `start` (the key's UPDATE
    makes `sets`): a slot of another window first goes to `budget_usage`."""
    window, usage = slot
    if window == start:
        return
    if window is not None and usage != "0":
        _charge_window(conn, f"k:{key_id}", window, usage)
    sets.append(_NEW_WINDOW)
    params.append(start)


# Every UPDATE of its key an admission makes (`_add_row_units`), by its assignments:
# built once, so that each is a statement from one string object (the statement cache's
# key), not a string joined per admission.
_KEY_ADMISSION_UPDATES = {
    sets: f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ?"  # noqa: S608 - constants
    for rate in ((), (_SAME_SECOND,), (_NEW_SECOND,))
    for window in ((), (_NEW_WINDOW,))
    for flight in ((), (_DROP_FLIGHT,), (_ADD_FLIGHT,))
    if (sets := rate + window + flight)
}


# An admission's reservation row, by which of its nullable figures it has (key window,
# project window, units): an absent one is a NULL literal rather than a bound None,
# since `sqlite3` binds None (as bytes and bool) through its adapter lookup, two failed
# attribute lookups, at ~1.5 µs against ~0.9 µs for an int; a plain key's row has none
# of the three. Built once, as `_KEY_ADMISSION_UPDATES`, for the statement cache.
_RESERVATION_INSERTS = {
    (key_window, project_window, units): (
        "INSERT INTO reservations (id, key_id, org_id, amount, expires_at, project_id, "  # noqa: S608 - constants
        "key_window, project_window, units) VALUES (?, ?, ?, ?, ?, ?, "
        + ", ".join("?" if present else "NULL" for present in (key_window, project_window, units))
        + ")"
    )
    for key_window in (False, True)
    for project_window in (False, True)
    for units in (False, True)
}


# A key's row as the admissions without rate limits read it alone: settled figures, then
# reserved figures (then, from `_admission_row`, its id and `queue_until`).
_KEY_ADMISSION_COLUMNS = "usage, usage_limit, flight_units, flight_count, flight_until"


def _key_in_flight_below(
    conn: sqlite3.Connection,
    key_id: str,
    now: float,
    limit_room: Decimal | None,
    window: tuple[str, Decimal] | None,
    reserved: Decimal | None,
) -> bool:
    """Whether the key's live reservations (`reserved`: their exact total at `now`;
    None: summed here) leave room under its usage limit (`limit_room`: the limit
    minus settled usage; None: no limit) and those of its budget window (`window`:
    start, budget minus the window's settled usage) under the budget.

    The window's reservations are some of the key's, so the key's total bounds them:
    when all of them leave room under the budget, so do the window's, and only
    otherwise (near the budget, or with reservations of an earlier window still in
    flight) are the window's summed on their own."""
    if reserved is None:
        if limit_room is not None and not _in_flight_below(conn, _KEY, (key_id,), now, limit_room):
            return False
        return window is None or _in_flight_below(
            conn, _KEY_WINDOW, (key_id, window[0]), now, window[1]
        )
    if limit_room is not None and not reserved < limit_room:
        return False
    if window is None or reserved < window[1]:
        return True
    return _in_flight_below(conn, _KEY_WINDOW, (key_id, window[0]), now, window[1])


# A reservation's row, by its primary key (the table is clustered by key).
_DELETE_RESERVATION = "DELETE FROM reservations WHERE key_id = ? AND id = ?"


def _delete_reservation(conn: sqlite3.Connection, reservation: Reservation) -> None:
    """Delete a reservation, taking it out of its key's reserved figures."""
    deleted = conn.execute(_DELETE_RESERVATION, (reservation.key_id, reservation.id)).rowcount
    if deleted and reservation.units is not None:
        conn.execute(
            f"UPDATE api_keys SET {_LEAVE_FLIGHT} WHERE id = ?",  # noqa: S608 - constant
            (reservation.units, reservation.key_id),
        )


def _releasing(reservation: Reservation) -> Callable[[sqlite3.Connection], None]:
    def release(conn: sqlite3.Connection) -> None:
        _delete_reservation(conn, reservation)
        # Still a request in its windows, now with no tokens.
        _correct_rate_windows(conn, reservation, 0, -reservation.rate_tokens)

    return release


def _undoing(reservation: Reservation) -> Callable[[sqlite3.Connection], None]:
    """Take back an admission whose caller left before it learnt of it: the request
    never happened, so it leaves its rate windows too."""

    def undo(conn: sqlite3.Connection) -> None:
        _delete_reservation(conn, reservation)
        _correct_rate_windows(conn, reservation, -1, -reservation.rate_tokens)

    return undo


def _correct_rate_windows(
    conn: sqlite3.Connection,
    reservation: Reservation,
    requests: int,
    tokens: int,
    key_done: bool = False,
    slot_first: bool = True,
) -> None:
    """Add `requests` and `tokens` to the second the reservation was counted at, in each
    of its rate windows that still holds that second (one that left the window counts
    nowhere, so there is nothing to correct). The key's: in its rate slot while that
    holds the second (`_key_rate_slot`), else in its bucket (with `slot_first` False:
    in its bucket if it has one, else in the slot if that holds the second: the
    request's second then never left the slot; either way the second's count, the
    bucket's and the slot's together, is corrected); `key_done`: already corrected in
    the slot by the caller."""
    rate = reservation.rate
    if rate is None or (requests == 0 and tokens == 0):
        return
    subjects = []
    key_subject = None
    if (
        rate.key is not None
        and not key_done
        and not (slot_first and _correct_rate_slot(conn, reservation, requests, tokens))
    ):
        key_subject = f"k:{reservation.key_id}"
        subjects.append(key_subject)
    if rate.project is not None and reservation.project_id is not None:
        subjects.append(f"p:{reservation.project_id}")
    for subject in subjects:
        changed = conn.execute(
            "UPDATE rate_buckets SET requests = requests + ?, tokens = tokens + ? "
            "WHERE subject = ? AND at = ?",
            (requests, tokens, subject, reservation.rate_at),
        ).rowcount
        if not changed and subject is key_subject and not slot_first:
            _correct_rate_slot(conn, reservation, requests, tokens)
        # (The totals follow by trigger, `rate_buckets_changed`.)
        if changed and requests < 0:
            # A second left without requests goes, so the oldest second stays one
            # that holds a request (it says when room frees up).
            conn.execute(
                "DELETE FROM rate_buckets WHERE subject = ? AND at = ? AND requests <= 0",
                (subject, reservation.rate_at),
            )
            conn.execute(
                "UPDATE rate_totals SET oldest = "
                "(SELECT min(at) FROM rate_buckets WHERE subject = ?) WHERE subject = ?",
                (subject, subject),
            )


def _correct_rate_slot(
    conn: sqlite3.Connection, reservation: Reservation, requests: int, tokens: int
) -> bool:
    """Correct the key's rate slot if it holds the reservation's second."""
    return bool(
        conn.execute(
            "UPDATE api_keys SET slot_requests = slot_requests + ?, slot_tokens = slot_tokens + ? "
            "WHERE id = ? AND slot_at = ?",
            (requests, tokens, reservation.key_id, reservation.rate_at),
        ).rowcount
    )


def _rate_count(
    conn: sqlite3.Connection,
    subject: str,
    in_flight: str,
    owner: str,
    now: float,
    wall: float,
    parallel: int | None = None,
    totals: _Totals | None = None,
    slot: _RateSlot | None = None,
) -> RateCount:
    """One subject's window at request time `now`: its totals, once the seconds that
    left the window have left them. Request times are whole seconds, so that happens
    once per second of traffic, not once per request, and costs the seconds leaving,
    not the window. `in_flight` counts the subject's live reservations (a constant
    query taking the owner and the wall clock) unless `parallel` is that count,
    already read in this transaction at `wall`; `totals`: the subject's `rate_totals`
    row (all None: no row), when already read in this transaction; `slot`: a key's rate
    slot (`_key_rate_slot`), counted on top of them while its second is in the window."""
    start = now - RATE_WINDOW_SECONDS
    if totals is None:
        row = conn.execute(
            "SELECT requests, tokens, oldest FROM rate_totals WHERE subject = ?", (subject,)
        ).fetchone()
    else:
        row = None if totals[0] is None else totals
    requests, tokens, oldest = (0, 0, None) if row is None else row
    if oldest is not None and oldest <= start:
        left = conn.execute(
            "DELETE FROM rate_buckets WHERE subject = ? AND at <= ? RETURNING requests, tokens",
            (subject, start),
        ).fetchall()
        requests -= sum(row[0] for row in left)
        tokens -= sum(row[1] for row in left)
        (oldest,) = conn.execute(
            "SELECT min(at) FROM rate_buckets WHERE subject = ?", (subject,)
        ).fetchone()
        conn.execute(
            "UPDATE rate_totals SET requests = ?, tokens = ?, oldest = ? WHERE subject = ?",
            (requests, tokens, oldest, subject),
        )
    if slot is not None:
        at, slot_requests, slot_tokens = slot
        if at is not None and at > start:
            requests += slot_requests
            tokens += slot_tokens
            # Its second holds a request (not all taken back): when room frees up.
            if slot_requests > 0 and (oldest is None or at < oldest):
                oldest = at
    if parallel is None:
        (parallel,) = conn.execute(in_flight, (owner, wall)).fetchone()
    return RateCount(
        requests=int(requests),
        tokens=int(tokens),
        parallel=int(parallel),
        oldest=oldest,
    )


_KEY_IN_FLIGHT = "SELECT count(*) FROM reservations WHERE key_id = ? AND expires_at > ?"
_PROJECT_IN_FLIGHT = "SELECT count(*) FROM reservations WHERE project_id = ? AND expires_at > ?"


def _rate_windows(
    conn: sqlite3.Connection,
    claim: Claim,
    wall: float,
    key_parallel: int | None = None,
    key_totals: _Totals | None = None,
    key_slot: _RateSlot | None = None,
) -> RateState:
    """`key_parallel`: the key's live reservations at `wall`, when already counted;
    `key_totals` and `key_slot`: the key's `rate_totals` row and rate slot, when
    already read (both or neither)."""
    key = None
    if claim.key_limits.any:
        if key_slot is None:
            row = conn.execute(
                "SELECT slot_at, slot_requests, slot_tokens FROM api_keys WHERE id = ?",
                (claim.key_id,),
            ).fetchone()
            key_slot = (None, 0, 0) if row is None else row
        key = _rate_count(
            conn,
            f"k:{claim.key_id}",
            _KEY_IN_FLIGHT,
            claim.key_id,
            claim.now,
            wall,
            key_parallel,
            key_totals,
            key_slot,
        )
    project = (
        _rate_count(
            conn,
            f"p:{claim.project_id}",
            _PROJECT_IN_FLIGHT,
            claim.project_id,
            claim.now,
            wall,
        )
        if claim.project_id is not None and claim.project_limits.any
        else None
    )
    return RateState(key=key, project=project)


def _count_admission(
    conn: sqlite3.Connection, claim: Claim, before: RateState, key_in_slot: bool = False
) -> RateState:
    """Add the admitted request to its subjects' windows; the windows after it.
    `key_in_slot`: the caller counts it in the key's rate slot (`_key_rate_slot`)."""
    key, project = before.key, before.project
    if key is not None:
        if not key_in_slot:
            _count_in_bucket(conn, f"k:{claim.key_id}", claim)
        key = _counted(key, claim)
    if project is not None:
        _count_in_bucket(conn, f"p:{claim.project_id}", claim)
        project = _counted(project, claim)
    return RateState(key=key, project=project)


def _count_in_bucket(conn: sqlite3.Connection, subject: str, claim: Claim) -> None:
    # The window's totals follow by trigger (`rate_buckets_added` for a new second,
    # `rate_buckets_changed` for one already counted).
    conn.execute(
        "INSERT INTO rate_buckets (subject, at, requests, tokens) VALUES (?, ?, 1, ?) "
        "ON CONFLICT (subject, at) DO UPDATE "
        "SET requests = requests + 1, tokens = tokens + excluded.tokens",
        (subject, claim.now, claim.tokens),
    )


def _counted(count: RateCount, claim: Claim) -> RateCount:
    """A subject's window with the admitted request in it."""
    now = claim.now
    oldest, newest = count.oldest, count.newest
    return RateCount(
        requests=count.requests + 1,
        tokens=count.tokens + claim.tokens,
        parallel=count.parallel + 1,
        oldest=now if oldest is None or now < oldest else oldest,
        newest=now if newest is None or now > newest else newest,
    )


def _withdrawing(ticket: str) -> Callable[[sqlite3.Connection], None]:
    def withdraw(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM admission_tickets WHERE id = ?", (ticket,))

    return withdraw


def _admission_row(
    conn: sqlite3.Connection,
    table: Literal["api_keys", "organizations"],
    row_id: str,
    columns: str,
    column_params: tuple[str, ...] = (),
) -> tuple[Any, ...]:
    """The settled figures of a key or organization, then its id and `queue_until`.
    `column_params`: the values of the placeholders in `columns` (a constant)."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {columns}, id, queue_until FROM {table} WHERE id = ?",  # noqa: S608 - constants
        (*column_params, row_id),
    ).fetchone()
    if row is None:
        what = "key" if table == "api_keys" else "organization"
        raise NotFound(f"{what} `{row_id}` does not exist")
    return row


def _settled_refusal(
    usage: Decimal, limit: Decimal | None, credits: Decimal | None
) -> Refused | None:
    if limit is not None and usage >= limit:
        return Refused(reason="limit")
    if credits is not None and credits <= 0:
        return Refused(reason="credits")
    return None


def _ticket_ahead(conn: sqlite3.Connection, claim: Claim, ticket: str, now: float) -> bool:
    """Whether an unexpired ticket of the key or organization is ahead of `ticket` (any
    unexpired ticket, when `ticket` is not in line yet)."""
    mine = conn.execute("SELECT seq FROM admission_tickets WHERE id = ?", (ticket,)).fetchone()
    before = mine[0] if mine is not None else 1 << 62
    row = conn.execute(
        "SELECT 1 FROM admission_tickets WHERE key_id = ? AND seq < ? AND expires_at > ? LIMIT 1",
        (claim.key_id, before, now),
    ).fetchone()
    if row is None and claim.organization_id is not None:
        row = conn.execute(
            "SELECT 1 FROM admission_tickets WHERE org_id = ? AND seq < ? AND expires_at > ? "
            "LIMIT 1",
            (claim.organization_id, before, now),
        ).fetchone()
    return row is not None


def _queue_ticket(conn: sqlite3.Connection, claim: Claim, ticket: str, expires: float) -> None:
    """Put `ticket` in line, or keep its place and push its expiry forward."""
    conn.execute(
        "INSERT INTO admission_tickets (id, key_id, org_id, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        (ticket, claim.key_id, claim.organization_id, expires),
    )
    conn.execute(
        "UPDATE api_keys SET queue_until = max(queue_until, ?) WHERE id = ?",
        (expires, claim.key_id),
    )
    if claim.organization_id is not None:
        conn.execute(
            "UPDATE organizations SET queue_until = max(queue_until, ?) WHERE id = ?",
            (expires, claim.organization_id),
        )


def _window_usage(conn: sqlite3.Connection, subject: str, start: str) -> Decimal:
    row = conn.execute(
        "SELECT usage FROM budget_usage WHERE subject = ? AND window_start = ?", (subject, start)
    ).fetchone()
    return Decimal(0) if row is None else Decimal(row[0])


def _key_window_usage(conn: sqlite3.Connection, key_id: str, start: str) -> Decimal:
    """A key's budget window's settled usage: in `budget_usage`, plus its budget slot's
    while that holds the window (`_key_window_slot`)."""
    usage = _window_usage(conn, f"k:{key_id}", start)
    slot = conn.execute(
        "SELECT slot_window, slot_usage FROM api_keys WHERE id = ?", (key_id,)
    ).fetchone()
    in_slot = None if slot is None else _slot_usage(slot, start)
    return usage if in_slot is None else usage + in_slot


# A budget window's settled usage as a column of the key's own row: a key with a budget
# reads both in one statement at admission and settlement instead of two.
_KEY_WINDOW_USAGE = "(SELECT usage FROM budget_usage WHERE subject = ? AND window_start = ?)"


_ZERO = Decimal(0)


def _usage_or_zero(text: str | None) -> Decimal:
    """A window's usage read as `_KEY_WINDOW_USAGE` (NULL: nothing settled in it yet)."""
    return _ZERO if text is None else Decimal(text)


def _window_reserved(
    conn: sqlite3.Connection, column: Literal["key", "project"], owner: str, start: str, now: float
) -> Decimal:
    query = (
        "SELECT amount FROM reservations WHERE key_id = ? AND key_window = ? AND expires_at > ?"
        if column == "key"
        else "SELECT amount FROM reservations "
        "WHERE project_id = ? AND project_window = ? AND expires_at > ?"
    )
    return _sum(conn.execute(query, (owner, start, now)).fetchall())


def _budget_refusal(
    conn: sqlite3.Connection, claim: Claim, key_window_usage: Decimal | None
) -> tuple[Refused | None, Decimal | None, Decimal | None]:
    """A refusal when a budget window's settled usage alone reaches its budget; else
    the key's and the project's window usage (None: no such budget).
    `key_window_usage`: the key's window usage, read with the key's row."""
    key_usage = project_usage = None
    if claim.key_budget is not None:
        key_usage = key_window_usage
        if key_usage is None:
            key_usage = _key_window_usage(conn, claim.key_id, claim.key_budget.start)
        if key_usage >= claim.key_budget.amount:
            return Refused(reason="key_budget"), None, None
    if claim.project_budget is not None and claim.project_id is not None:
        project_usage = _window_usage(conn, f"p:{claim.project_id}", claim.project_budget.start)
        if project_usage >= claim.project_budget.amount:
            return Refused(reason="project_budget"), None, None
    return None, key_usage, project_usage


def _budgets_fit(
    conn: sqlite3.Connection,
    claim: Claim,
    limit_room: Decimal | None,
    key_usage: Decimal | None,
    project_usage: Decimal | None,
    now: float,
    reserved: Decimal | None,
) -> bool:
    """INVARIANT: admitted only while the key's settled usage + its in-flight
    reservations < its usage limit (`limit_room`: limit - usage; None: no limit), and
    a window's settled usage + its in-flight reservations < its budget (the same
    rule). `reserved`: the exact total of the key's live reservations at `now`, read in
    this transaction (`_key_flight`), or None when this admission did not read them."""
    budget = claim.key_budget
    key_window = None
    if budget is not None and key_usage is not None:
        key_window = (budget.start, budget.amount - key_usage)
    if not _key_in_flight_below(conn, claim.key_id, now, limit_room, key_window, reserved):
        return False
    budget = claim.project_budget
    if budget is not None and project_usage is not None and claim.project_id is not None:
        window = (claim.project_id, budget.start)
        room = budget.amount - project_usage
        if not _in_flight_below(conn, _PROJECT_WINDOW, window, now, room):
            return False
    return True


def _charge_windows(
    conn: sqlite3.Connection, reservation: Reservation, cost_text: str, key_done: bool = False
) -> None:
    """Add a settled cost to the budget windows the reservation was admitted in: one
    statement per window, the sum `Decimal`'s (`decimal_add`, as the key's usage), the
    first charge of a window `0 + cost` as before. The key's: in its budget slot while
    that holds the window, else in `budget_usage`; `key_done`: already charged in the
    slot by the caller."""
    if reservation.key_window is not None and not (
        key_done
        or conn.execute(
            "UPDATE api_keys SET slot_usage = decimal_add(slot_usage, ?) "
            "WHERE id = ? AND slot_window = ?",
            (cost_text, reservation.key_id, reservation.key_window),
        ).rowcount
    ):
        _charge_window(conn, f"k:{reservation.key_id}", reservation.key_window, cost_text)
    if reservation.project_window is not None and reservation.project_id is not None:
        _charge_window(conn, f"p:{reservation.project_id}", reservation.project_window, cost_text)


def _charge_window(conn: sqlite3.Connection, subject: str, start: str, cost_text: str) -> None:
    # An UPDATE first (the window's row exists after its first charge): the upsert
    # evaluated its VALUES, a `decimal_add` call from SQLite into Python, before finding
    # the row, and so added twice per settlement. Same transaction: nothing comes
    # between the UPDATE and the INSERT.
    if not conn.execute(
        "UPDATE budget_usage SET usage = decimal_add(usage, ?) "
        "WHERE subject = ? AND window_start = ?",
        (cost_text, subject, start),
    ).rowcount:
        conn.execute(
            "INSERT INTO budget_usage (subject, window_start, usage) "
            "VALUES (?, ?, decimal_add('0', ?))",
            (subject, start, cost_text),
        )


def _settle_rest(
    conn: sqlite3.Connection, reservation: Reservation, cost_text: str, window_done: bool
) -> None:
    """A settlement's charge of its organization and of the budget windows its key's
    UPDATE did not take (`window_done`: the key's budget slot did)."""
    if reservation.organization_id is not None:
        conn.execute(
            "UPDATE organizations SET credits = decimal_subtract(credits, ?) WHERE id = ?",
            (cost_text, reservation.organization_id),
        )
    if not window_done or reservation.project_window is not None:
        _charge_windows(conn, reservation, cost_text, window_done)


def _swept_batch(
    conn: sqlite3.Connection,
    writes: list[Callable[[sqlite3.Connection], Any]],
    sweep: bool,
    folds: KeyFolds,
    folding: list[bool] | None = None,
) -> list[Outcome]:
    """`run_in_transaction` (in the transaction `conn` has just begun), deleting the
    expired reservations first when `sweep`; `folds`: `conn`'s (`SqliteStore`'s inline or
    worker one), `folding`: which writes may leave their key's UPDATE in it."""
    if sweep:
        try:
            conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now_epoch(),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return run_in_transaction(conn, writes, folds, folding)


def _undo_reservation(
    reservation: Reservation | None,
) -> Callable[[sqlite3.Connection], None] | None:
    return None if reservation is None else _undoing(reservation)


class SqliteStore:
    """The `Store` on one SQLite file: administrative I/O on a single worker thread,
    the request path inline on the event loop (see the module doc)."""

    def __init__(
        self,
        path: str,
        *,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        secrets: SecretBox | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"sqlite synchronous `{synchronous}` is unknown; use NORMAL or FULL")
        self._synchronous = synchronous
        self._path = path
        self._ttl = reservation_ttl
        self._secrets = secrets
        self._conn: sqlite3.Connection | None = None
        # INVARIANT: one thread, so the connection is only ever touched by its owner thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        # The request path's connection, used only on the thread that opened it (the event
        # loop's); None until first used, or always when inline calls are not safe.
        self._inline_allowed = synchronous == "NORMAL" and path != ":memory:"
        self._inline: sqlite3.Connection | None = None
        self._inline_thread = 0
        self._inline_writes = 0
        self._alone_writes = 0
        self._pending: list[PendingWrite[Any]] = []
        # Whether a write in `_pending` may fold its key's UPDATE (`sqlite_folds`): else
        # the batch runs without looking at each write's `folds`.
        self._pending_folds = False
        # Admissions this store returned whose request has not settled or released yet:
        # the requests in flight in this process, which a write can be grouped with.
        self._open = 0
        self._worker_flushes: set[asyncio.Future[list[Outcome]]] = set()
        self._checkpointing: asyncio.Future[tuple[int, int]] | None = None
        self._writes_wait_for_checkpoint = False
        self._ids = InstanceIds()
        # An admission is queued: the next group commit deletes expired reservations
        # first (garbage collection, once per commit instead of once per admission:
        # every read of reservations skips the expired ones anyway).
        self._sweep_due = False
        # `_units` of the amounts reserved lately (a few bounds recur: one per model and
        # token limit), so that the request path converts each once.
        self._units_of: dict[Decimal, int | None] = {}
        # key -> the second this store's last admission of the key left its rate slot
        # at (`_key_rate_slot`): where a settlement expects its request's second. A
        # guess (another process may have moved the slot since), never relied upon.
        self._slot_seconds: dict[str, float] = {}
        # The admissions' and settlements' key UPDATEs a group commit leaves pending
        # (`sqlite_folds`), one per connection: the inline one's batches and the worker's
        # may overlap in time.
        self._inline_folds = KeyFolds()
        self._worker_folds = KeyFolds()

    def _units(self, amount: Decimal) -> int | None:
        units = self._units_of.get(amount, _NO_UNITS)
        if units is _NO_UNITS:
            if len(self._units_of) >= _UNITS_MEMO:
                self._units_of.clear()
            units = self._units_of[amount] = _units(amount)
        return units  # type: ignore[return-value]

    # -- plumbing -------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn)

    def _connect(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=30.0)
        _add_money_functions(conn)
        # Only a new database takes it (before its first table); see `_PAGE_SIZE`.
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        # Checkpoints are `_checkpoint`'s; an automatic one here would run on every commit
        # of this connection while the WAL is over 1,000 pages, i.e. most of the time.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # The writes queued behind a blocking checkpoint start the WAL over from here.
        conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP_BYTES}")
        return conn

    def _inline_connection(self) -> sqlite3.Connection | None:
        """The event loop's own connection, or None when this call must use the worker."""
        if not self._inline_allowed or self._conn is None:  # migrate() runs first, on the worker
            return None
        if self._inline is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, timeout=0.0, check_same_thread=False
            )
            _add_money_functions(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=0")  # never wait for a lock on the event loop
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on the worker
            conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP_BYTES}")
            self._inline, self._inline_thread = conn, threading.get_ident()
        elif self._inline_thread != threading.get_ident():
            return None  # the store is used from another thread's loop: stay safe
        return self._inline

    async def _request_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a request-path read inline when possible (see the module doc), else on
        the worker."""
        conn = self._inline_connection()
        if conn is None:
            return await self._run(fn)
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or conn.in_transaction:
                raise
            return await self._run(fn)  # the statement could not start: wait on the worker

    async def _request_write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        undo: Callable[[T], Callable[[sqlite3.Connection], None] | None] | None = None,
        closes: bool = False,
        folds: bool = False,
    ) -> T:
        """Queue a request-path write for this event-loop turn's group commit
        (`sqlite_batch`); returns once it is committed. `closes`: the write settles or
        releases an admission (passed by position: binding a keyword argument made each
        queued write cost ~1k instructions more); `folds`: the write may leave its key's
        UPDATE pending in a group commit (`sqlite_folds`).

        A write with nothing to group it with (no other request of this process holds
        an admission, none is queued) commits at once instead, in a transaction of its
        own: one request at a time, each write waited a turn of the loop for its commit
        and another for its caller to wake, to commit alone anyway. Under load the
        requests in flight keep every write in the group commit."""
        if closes and self._open:
            self._open -= 1
        if not (self._pending or self._open):
            outcome = self._commit_alone(fn)
            if outcome is not None:
                ok, value = outcome
                if not ok:
                    raise value  # the write's own exception (`Outcome`)
                done: T = value
                if type(done) in _OPENS:
                    self._open += 1
                return done
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if folds:
            self._pending_folds = True
        self._queue(PendingWrite(fn, future, undo, folds))
        result = await future
        if type(result) in _OPENS:
            self._open += 1
        return result

    def _commit_alone(self, fn: Callable[[sqlite3.Connection], Any]) -> Outcome | None:
        """Run `fn` and commit now, inline; None when it must go through the queue:
        no inline connection, a batch on the worker, another connection holding the
        write lock (the queue's flush takes it to the worker), or a checkpoint under way
        (a queued write lets the loop turn, so the checkpoint's end is seen and a
        blocking one starts when due, even if its caller never awaits anything else).
        No await between the commit and the caller's return: a caller cannot leave
        with its write committed, so nothing needs undoing."""
        conn = self._inline_connection()
        if conn is None or self._checkpointing is not None or self._worker_flushes:
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return None
            raise
        sweep, self._sweep_due = self._sweep_due, False
        (outcome,) = _swept_batch(conn, [fn], sweep, self._inline_folds)
        self._alone_writes += 1
        if self._alone_writes >= _CHECKPOINT_ALONE_EVERY:
            self._alone_writes = 0
            self._checkpoint(blocking=False)
        return outcome

    def _queue(self, write: PendingWrite[Any]) -> None:
        self._pending.append(write)
        if len(self._pending) == 1:  # the first of this turn: commit at the end of it
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Commit the writes queued in the last turn: inline when the lock is free and no
        checkpoint runs, else on the worker."""
        batch = [write for write in self._pending if not write.future.cancelled()]
        self._pending = []
        folding = [write.folds for write in batch] if self._pending_folds else None
        self._pending_folds = False
        if not batch:
            return
        sweep, self._sweep_due = self._sweep_due, False
        conn = self._inline_connection()
        if conn is None or self._writes_wait_for_checkpoint:
            # A blocking checkpoint runs (see the module doc): queue behind it on the
            # worker, or the WAL, racing a stream of inline commits, never starts over.
            self._flush_on_worker(batch, sweep, folding)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):  # another connection writes: wait for the lock on the worker
                self._flush_on_worker(batch, sweep, folding)
            else:
                self._fail(batch, exc)
            return
        try:
            outcomes = _swept_batch(
                conn,
                [write.fn for write in batch],
                sweep,
                self._inline_folds,
                folding,
            )
        except Exception as exc:
            self._fail(batch, exc)
            return
        self._deliver(batch, outcomes)
        self._count_inline_writes(len(batch))

    def _flush_on_worker(
        self, batch: list[PendingWrite[Any]], sweep: bool = False, folding: list[bool] | None = None
    ) -> None:
        fns = [write.fn for write in batch]

        def run(conn: sqlite3.Connection) -> list[Outcome]:
            conn.execute("BEGIN IMMEDIATE")
            return _swept_batch(conn, fns, sweep, self._worker_folds, folding)

        task = asyncio.ensure_future(self._run(run))
        self._worker_flushes.add(task)

        def done(finished: asyncio.Future[list[Outcome]]) -> None:
            self._worker_flushes.discard(task)
            if finished.cancelled():
                self._fail(batch, StoreError("the store was closed before the write committed"))
            elif (error := finished.exception()) is not None:
                self._fail(batch, error)
            else:
                self._deliver(batch, finished.result())

        task.add_done_callback(done)

    def _deliver(self, batch: list[PendingWrite[Any]], outcomes: list[Outcome]) -> None:
        for write, (ok, value) in zip(batch, outcomes, strict=True):
            if not write.future.done():
                if ok:
                    write.future.set_result(value)
                else:
                    write.future.set_exception(value)
            elif ok and write.undo is not None:
                # The caller left (cancelled) while its write committed: take it back.
                undo = write.undo(value)
                if undo is not None:
                    self._queue_undo(undo)

    def _queue_undo(self, undo: Callable[[sqlite3.Connection], None]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody awaits an undo: read its outcome so a failure is logged, not lost.
        future.add_done_callback(log_failed_release)
        self._queue(PendingWrite(undo, future, None))

    @staticmethod
    def _fail(batch: list[PendingWrite[Any]], error: BaseException) -> None:
        for write in batch:
            if not write.future.done():
                write.future.set_exception(error)

    def _count_inline_writes(self, count: int) -> None:
        before = self._inline_writes
        self._inline_writes += count
        if before // _CHECKPOINT_EVERY != self._inline_writes // _CHECKPOINT_EVERY:
            self._checkpoint(blocking=False)

    def _checkpoint(self, *, blocking: bool) -> None:
        """A PASSIVE checkpoint on the worker (it copies what it can without waiting for,
        or blocking, any writer); with `blocking`, inline writes queue behind it."""
        if self._checkpointing is not None:
            return

        def checkpoint(conn: sqlite3.Connection) -> tuple[int, int]:
            _, wal_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(wal_frames), int(copied)

        future = asyncio.ensure_future(self._run(checkpoint))
        self._checkpointing = future
        self._writes_wait_for_checkpoint = blocking

        def done(finished: asyncio.Future[tuple[int, int]]) -> None:
            self._checkpointing = None
            self._writes_wait_for_checkpoint = False
            if finished.cancelled():
                return
            if (error := finished.exception()) is not None:
                logger.warning("%s: WAL checkpoint failed (retried later): %s", self._path, error)
                return
            wal_frames, copied = finished.result()
            # "Copied everything" only covers the frames present when it started: the
            # writes committed during its fsyncs keep the WAL from starting over. Copying
            # those few (a catch-up, writes queued behind it) lets the next write start it
            # over. A WAL this large has not started over for a while, whatever it copied.
            # Only one request at a time (no other admission open): under load the group
            # commit would stall 64 requests behind it, for a WAL its batches grow slowly.
            caught_up = 0 < copied == wal_frames and self._open <= 1
            if not blocking and (caught_up or wal_frames >= _WAL_BOUND_FRAMES):
                self._checkpoint(blocking=True)

        future.add_done_callback(done)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        """Wrap `fn` in one IMMEDIATE transaction: committed on return, rolled back on error."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return run

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._pending:  # writes queued in this turn: commit them, nothing is lost
            self._flush()
        if self._worker_flushes:
            await asyncio.wait(list(self._worker_flushes))
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing])
        if self._inline is not None:
            self._inline.close()
            self._inline = None

        if self._conn is not None:
            await self._run(shut)
            self._conn = None
        self._executor.shutdown(wait=True)

    def hash_token(self, token: str) -> str:
        return hash_token(token)

    def _stored_hash(self, token: str) -> str:
        return stored_hash(hash_token(token), self._secrets)

    async def protect_secrets(self) -> tuple[int, int]:
        box = self._secrets
        if box is None:
            return 0, 0

        def protect(conn: sqlite3.Connection) -> tuple[int, int]:
            plain = conn.execute(
                "SELECT id, token_hash FROM api_keys WHERE token_hash NOT LIKE ?",
                (KEYED_PREFIX + "%",),
            ).fetchall()
            conn.executemany(
                "UPDATE api_keys SET token_hash = ? WHERE id = ?",
                [(box.keyed(token_hash), key_id) for key_id, token_hash in plain],
            )
            sealed = 0
            projects = conn.execute("SELECT id, provider_keys FROM projects").fetchall()
            for project_id, text in projects:
                protected, count = protected_provider_keys(decode_provider_keys(text), box)
                if count:
                    sealed += count
                    conn.execute(
                        "UPDATE projects SET provider_keys = ? WHERE id = ?",
                        (encode_json(protected), project_id),
                    )
            return len(plain), sealed

        return await self._run(self._write(protect))

    # -- schema ---------------------------------------------------------------------
    async def migrate(self) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self._path}: schema version {version} is newer than this gateway "
                    f"knows ({len(MIGRATIONS)}); upgrade the gateway"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
            conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now_epoch(),))

        await self._run(self._write(apply))

    async def ensure_defaults(self) -> None:
        def ensure(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO organizations (id, credits, created_at) VALUES (?, ?, ?)",
                (DEFAULT_ORG_ID, str(DEFAULT_ORG_CREDITS), now_rfc3339()),
            )
            conn.execute(
                "INSERT OR IGNORE INTO projects (id, organization, mode, created_at) "
                "VALUES (?, ?, 'hybrid', ?)",
                (DEFAULT_PROJECT_ID, DEFAULT_ORG_ID, now_rfc3339()),
            )

        await self._run(self._write(ensure))

    # -- request path ---------------------------------------------------------------
    async def key_context(self, token_hash: str) -> KeyContext | None:
        keyed, plain = lookup_forms(token_hash, self._secrets)

        def read(conn: sqlite3.Connection) -> KeyContext | None:
            now = now_epoch()
            # One read transaction, so key, project, organization and sums agree.
            conn.execute("BEGIN")
            try:
                row = conn.execute(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE token_hash IN (?, ?)",  # noqa: S608
                    (keyed, plain),
                ).fetchone()
                token_expires_at = None
                if row is None:  # perhaps a token rotated out, still in its grace period
                    row = conn.execute(
                        f"SELECT {KEY_COLUMNS}, previous_token_hash, previous_token_until "  # noqa: S608
                        "FROM api_keys WHERE previous_token_hash IN (?, ?)",
                        (keyed, plain),
                    ).fetchone()
                    if row is None or not (
                        hashes_match(row[-2], keyed) or hashes_match(row[-2], plain)
                    ):
                        return None
                    token_expires_at = row[-1]
                elif not (hashes_match(row[1], keyed) or hashes_match(row[1], plain)):
                    return None
                key = key_from_row(row)
                project = self._project(conn, key.project_id)
                organization = self._organization(conn, project.organization_id)
                rules = tuple(
                    rule_from_row(r)
                    for r in conn.execute(
                        'SELECT id, key_id, type, "values", status FROM iam_rules '
                        "WHERE key_id = ? ORDER BY rowid",
                        (key.id,),
                    )
                )
                project_rules = self._project_rules(conn, project.id)
                reserved = self._key_reserved(conn, key.id, now)
                credits_reserved = self._org_reserved(conn, organization.id, now)
            finally:
                conn.execute("COMMIT")
            return KeyContext(
                key=key,
                reserved=reserved,
                rules=rules,
                project=project,
                organization=organization,
                credits_reserved=credits_reserved,
                project_rules=project_rules,
                token_expires_at=token_expires_at,
            )

        context = await self._request_read(read)
        if (
            context is not None
            and context.token_expires_at is None  # the key's current token, not a previous one
            and context.key.token_hash != keyed
        ):
            # Stored by a process without the secret: converted on first use.
            await self._replace_token_hash(context.key.id, context.key.token_hash, keyed)
            key = msgspec.structs.replace(context.key, token_hash=keyed)
            context = msgspec.structs.replace(context, key=key)
        return context

    async def _replace_token_hash(self, key_id: str, old: str, new: str) -> None:
        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE api_keys SET token_hash = ? WHERE id = ? AND token_hash = ?",
                (new, key_id, old),
            )

        await self._run(self._write(update))

    @staticmethod
    def _key_reserved(conn: sqlite3.Connection, key_id: str, now: float) -> Decimal:
        rows = conn.execute(
            "SELECT amount FROM reservations WHERE key_id = ? AND expires_at > ?", (key_id, now)
        ).fetchall()
        return _sum(rows)

    @staticmethod
    def _org_reserved(conn: sqlite3.Connection, org_id: str, now: float) -> Decimal:
        rows = conn.execute(
            "SELECT amount FROM reservations WHERE org_id = ? AND expires_at > ?", (org_id, now)
        ).fetchall()
        return _sum(rows)

    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        amount = parse_money(amount, "reservation amount")

        def reserve(conn: sqlite3.Connection) -> Reservation | None:
            now = now_epoch()
            row = conn.execute(
                f"SELECT {_KEY_ADMISSION_COLUMNS} FROM api_keys WHERE id = ?",  # noqa: S608 - constant
                (key_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"key `{key_id}` does not exist")
            # INVARIANT: admitted only while usage + in-flight reservations < limit.
            # (No limit: the in-flight sum, one row per request in flight, is not needed.)
            limit = None if row[1] is None else Decimal(row[1])
            if limit is not None and not _in_flight_below(
                conn, _KEY, (key_id,), now, limit - Decimal(row[0])
            ):
                return None
            if organization_id is not None:
                credits = conn.execute(
                    "SELECT credits FROM organizations WHERE id = ?", (organization_id,)
                ).fetchone()
                if credits is None:
                    raise NotFound(f"organization `{organization_id}` does not exist")
                if not _in_flight_below(conn, _ORG, (organization_id,), now, Decimal(credits[0])):
                    return None
            # The key's figures, when kept, count the row (`_key_flight`).
            units = None if row[2] is None else self._units(amount)
            reservation = Reservation(
                id=self._ids("res"),
                key_id=key_id,
                organization_id=organization_id,
                amount=amount,
                units=units,
            )
            conn.execute(
                "INSERT INTO reservations (id, key_id, org_id, amount, expires_at, units) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.id, key_id, organization_id, str(amount), now + self._ttl, units),
            )
            _add_row_units(conn, key_id, row[2], units, now + self._ttl)
            return reservation

        self._sweep_due = True
        return await self._request_write(reserve, _undo_reservation)

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        cost = parse_money(actual_cost, "actual cost")
        cost_text = str(cost)
        units = reservation.units

        # The windows counted the request's bound; they count the tokens it used.
        token_change = tokens - reservation.rate_tokens
        rate = reservation.rate
        key_rated = rate is not None and rate.key is not None and token_change != 0
        project_rated = rate is not None and rate.project is not None
        window = reservation.key_window
        # A rated key's settlement may join its key's pending UPDATE (`sqlite_folds`).
        folding = rate is not None and rate.key is not None

        def settle(conn: sqlite3.Connection) -> None:
            # Charged even when the reservation already expired: the request did complete.
            deleted = conn.execute(
                _DELETE_RESERVATION, (reservation.key_id, reservation.id)
            ).rowcount
            # One statement: the sum is `Decimal`'s, in `decimal_add` (`_connect`); the
            # deleted reservation leaves its key's reserved figures in the same one, and
            # the key's slots take the tokens and the cost when they hold them (the
            # WHERE says so: else it changes nothing, and each goes its own way below).
            # The rate slot is tried only while this store's last admission of the key
            # left it at the request's second: a slot that moved on (the usual case for
            # a request longer than a second) would cost a statement changing nothing.
            leaves = bool(deleted) and units is not None
            key_id = reservation.key_id
            if folding:
                folds = self._inline_folds if conn is self._inline else self._worker_folds
                if folds.pending:
                    # A pending admission of the key read its row: the settlement joins
                    # its UPDATE (`sqlite_folds`), or the UPDATE goes first.
                    done = folds.settle(
                        key_id,
                        cost_text,
                        units if leaves else None,
                        token_change,
                        reservation.rate_at if key_rated else None,
                        window,
                    )
                    if done is not None:
                        rate_done, window_done = done
                        if not rate_done or project_rated:
                            _correct_rate_windows(
                                conn, reservation, 0, token_change, rate_done, False
                            )
                        _settle_rest(conn, reservation, cost_text, window_done)
                        return
                    folds.flush(conn)
            figures = (cost_text, units) if leaves else (cost_text,)
            in_rate = key_rated and self._slot_seconds.get(key_id) == reservation.rate_at
            rate_done = window_done = False
            if window is not None:
                if (
                    in_rate
                    and conn.execute(
                        _SETTLE_KEY[leaves, True, True],
                        (*figures, token_change, key_id, reservation.rate_at, window),
                    ).rowcount
                ):
                    rate_done = window_done = True
                elif conn.execute(
                    _SETTLE_KEY[leaves, False, True], (*figures, key_id, window)
                ).rowcount:
                    window_done = True
            elif (
                in_rate
                and conn.execute(
                    _SETTLE_KEY[leaves, True, False],
                    (*figures, token_change, key_id, reservation.rate_at),
                ).rowcount
            ):
                rate_done = True
            if (
                not (rate_done or window_done)
                and not conn.execute(_SETTLE_KEY[leaves, False, False], (*figures, key_id)).rowcount
            ):
                raise NotFound(f"key `{key_id}` does not exist")
            if not rate_done or project_rated:
                _correct_rate_windows(conn, reservation, 0, token_change, rate_done, in_rate)
            _settle_rest(conn, reservation, cost_text, window_done)

        await self._request_write(settle, None, True, folding)  # closes an admission

    async def release(self, reservation: Reservation) -> None:
        await self._request_write(_releasing(reservation), None, True)  # closes one

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        amount = parse_money(claim.amount, "reservation amount")
        ttl = self._ttl

        # Whether the key has rate limits, and whether the claim does (the key's or
        # its project's): read once, each a property of the claim.
        key_rated = claim.key_limits.any
        rated = key_rated or claim.rated

        def admit(conn: sqlite3.Connection) -> Admitted | Queued | Refused:
            now = now_epoch()
            key_window_usage = None
            key_totals: _Totals | None = None
            rate_slot: _RateSlot | None = None
            window_slot: _WindowSlot | None = None
            org: tuple[Any, ...] | None = None
            org_flight: tuple[float, int] | None = None  # the organization's live reservations
            plain: tuple[Any, ...] | None = None
            folds: KeyFolds | None = None
            if key_rated:
                start = None if claim.key_budget is None else claim.key_budget.start
                key_id = claim.key_id
                row = conn.execute(
                    _RATED_KEY_ROW, (f"k:{key_id}", start, claim.organization_id, now, key_id)
                ).fetchone()
                if row[0] is None:
                    raise NotFound(f"key `{key_id}` does not exist")
                folds = self._inline_folds if conn is self._inline else self._worker_folds
                fold = folds.pending.get(key_id) if folds.pending else None
                key: tuple[Any, ...] = (
                    row[0] if fold is None or fold.usage is None else fold.usage,
                    row[1],
                )
                figures: _Figures = (
                    _FIGURES_NOT_EXACT if row[6] is None else (row[6], row[7], math.inf)
                )
                waiting = bool(row[10])
                window_slot = _NO_WINDOW_SLOT
                if start is not None:
                    key_window_usage = _ZERO if row[2] is None else Decimal(row[2])
                    if row[14] is None:  # the slot holds another window, or none
                        if fold is not None:  # (its usage may be pending)
                            folds.flush(conn)
                        window_slot = conn.execute(
                            "SELECT slot_window, slot_usage FROM api_keys WHERE id = ?",
                            (key_id,),
                        ).fetchone()
                    else:
                        in_slot = row[14]
                        if fold is not None and fold.window == start:
                            in_slot = fold.window_usage  # with the pending settlements'
                        window_slot = (start, in_slot)
                        key_window_usage += Decimal(in_slot)
                key_totals = (row[3], row[4], row[5])
                rate_slot = (row[11], row[12], row[13])
                if fold is not None:
                    # The batch's earlier admissions and settlements of the key, whose
                    # UPDATE is pending (`sqlite_folds`): the row as they left it. The
                    # admissions were counted at the second the slot holds and added to
                    # figures that were exact (their rows expire later than `now`, so the
                    # figures still are).
                    rate_slot = (row[11], row[12] + fold.requests, row[13] + fold.tokens)
                    if row[6] is not None and fold.units is not None:
                        figures = (row[6] + fold.units, row[7] + fold.count, math.inf)
                    else:  # counted again (`_key_flight`), from the row as it stands
                        folds.flush(conn)
                if row[8] is not None:
                    org = (row[8], claim.organization_id)
                    # `_below` tells no live reservation (0) from some (their total).
                    org_flight = (0.0, 0) if row[9] is None else (row[9], 1)
            elif claim.key_budget is None:
                if claim.organization_id is not None:
                    plain = conn.execute(
                        _PLAIN_ROWS, (claim.organization_id, now, claim.key_id)
                    ).fetchone()
                if plain is None or plain[2] is None:
                    key = _admission_row(conn, "api_keys", claim.key_id, _KEY_ADMISSION_COLUMNS)
                    figures = (key[2], key[3], key[4])
                else:
                    key, org = plain[:4], plain[4:7]
                    org_flight = (plain[7], plain[8])
                    # Only whether the key's figures are kept: this admission sums a
                    # usage limit's reservations itself (`_key_in_flight_below`).
                    figures = (plain[9], None, None)
            else:
                subject = (f"k:{claim.key_id}", claim.key_budget.start)
                columns = f"{_KEY_ADMISSION_COLUMNS}, {_KEY_WINDOW_USAGE}, slot_window, slot_usage"
                key = _admission_row(conn, "api_keys", claim.key_id, columns, subject)
                figures = (key[2], key[3], key[4])
                key_window_usage = _usage_or_zero(key[5])
                window_slot = (key[6], key[7])
                in_slot = _slot_usage(window_slot, claim.key_budget.start)
                if in_slot is not None:
                    key_window_usage += in_slot
            usage, limit = Decimal(key[0]), None if key[1] is None else Decimal(key[1])
            if claim.organization_id is not None and org is None:
                org = _admission_row(conn, "organizations", claim.organization_id, "credits")
            # The key's live reservations: for its usage limit, its budget window and
            # its rate window's requests in flight (read when first needed).
            key_flight: _KeyFlight | None = None
            # A ticket only exists while its key's (organization's) line is open: with
            # nobody waiting there is no ticket to drop and no line to respect.
            if not key_rated:  # (a rated key's admission compared them in its read)
                waiting = key[-1] > now or (org is not None and org[-1] > now)
            refused = _settled_refusal(usage, limit, None)
            key_usage = project_usage = None
            if refused is None:
                refused, key_usage, project_usage = _budget_refusal(conn, claim, key_window_usage)
            if refused is None:
                refused = _settled_refusal(usage, None, None if org is None else Decimal(org[0]))
            windows = None
            if refused is None and rated:
                # Rate limits refuse at once, never queue: waiting would not free them.
                # The key's live reservations (its figures, read with its row) are its
                # rate window's requests in flight, and its limit's and budget
                # window's reserved money below.
                if key_rated:
                    key_flight = _key_flight(conn, claim.key_id, now, figures)
                windows = _rate_windows(
                    conn,
                    claim,
                    now,
                    None if key_flight is None else key_flight[1],
                    key_totals,
                    rate_slot,
                )
                reason = rate_refusal(claim, windows)
                if reason is not None:
                    refused = Refused(reason=reason, rate=windows)
            if refused is not None:
                if waiting:
                    conn.execute("DELETE FROM admission_tickets WHERE id = ?", (ticket,))
                return refused
            # INVARIANT: admitted only while usage + in-flight reservations < limit (and
            # credits - in-flight credit reservations > 0, and each budget window's
            # settled + in-flight usage < its budget), in ticket order.
            limit_room = None if limit is None else limit - usage
            if key_flight is None and key_usage is not None:
                key_flight = _key_flight(conn, claim.key_id, now, figures)
            reserved = None if key_flight is None else key_flight[0]
            fits = _budgets_fit(conn, claim, limit_room, key_usage, project_usage, now, reserved)
            if fits and org is not None:
                if org_flight is None:
                    fits = _in_flight_below(conn, _ORG, (org[1],), now, Decimal(org[0]))
                else:  # read with the organization's row, at `now`
                    total, count = org_flight
                    fits = _below(conn, _ORG_LIVE, (org[1], now), total, count, Decimal(org[0]))
            if fits and not (waiting and _ticket_ahead(conn, claim, ticket, now)):
                if waiting:
                    conn.execute("DELETE FROM admission_tickets WHERE id = ?", (ticket,))
                kept = figures[0] if key_flight is None else key_flight[2]
                # The row carries its units when the key's figures are kept, or needed
                # (a key with controls: `key_flight` read), so that they can be kept
                # once all its rows have them (`_key_flight`).
                units = None if key_flight is None and kept is None else self._units(amount)
                reservation_id = self._ids("res")
                key_window = None if claim.key_budget is None else claim.key_budget.start
                project_window = (
                    None
                    if claim.project_budget is None or claim.project_id is None
                    else claim.project_budget.start
                )
                # Always the project: its requests in flight are its rate window's
                # `parallel` (budgets also match on project_window).
                inserted: tuple[Any, ...] = (
                    reservation_id,
                    claim.key_id,
                    claim.organization_id,
                    str(amount),
                    now + ttl,
                    claim.project_id,
                )
                if key_window is not None:
                    inserted += (key_window,)
                if project_window is not None:
                    inserted += (project_window,)
                if units is not None:
                    inserted += (units,)
                present = (key_window is not None, project_window is not None, units is not None)
                conn.execute(_RESERVATION_INSERTS[present], inserted)
                # The key's UPDATE: its figures, and its slots (`_key_rate_slot`,
                # `_key_window_slot`), in one statement.
                if window_slot is None:  # (and so no rate slot: the plain admissions)
                    _add_row_units(conn, claim.key_id, kept, units, now + ttl)
                else:
                    sets: list[str] = []
                    params: list[Any] = []
                    if rate_slot is not None and windows is not None:
                        _key_rate_slot(conn, claim, rate_slot, sets, params)
                        seconds = self._slot_seconds
                        if len(seconds) >= _SLOT_SECONDS_MEMO and claim.key_id not in seconds:
                            seconds.clear()
                        seconds[claim.key_id] = claim.now
                    if claim.key_budget is not None:
                        _key_window_slot(
                            conn, claim.key_id, claim.key_budget.start, window_slot, sets, params
                        )
                    if (
                        folds is not None
                        and folds.active
                        # Counted in the second its rate slot holds, its budget slot
                        # (if any) holding its window, nothing else set.
                        and len(sets) == 1
                        and sets[0] == _SAME_SECOND
                        and (kept is None or (units is not None and kept + units < _MAX_UNITS))
                    ):
                        # Only adding to the row: left pending for the batch's one UPDATE.
                        folds.add(
                            conn,
                            claim.key_id,
                            claim.tokens,
                            None if kept is None else units,
                            now + ttl,
                            claim.now,
                            None
                            if claim.key_budget is None
                            else (claim.key_budget.start, window_slot[1]),
                            0 if key_flight is None else key_flight[1] + 1,
                            key[0],
                        )
                    else:
                        if folds is not None:
                            folds.flush(conn)
                        _add_row_units(conn, claim.key_id, kept, units, now + ttl, sets, params)
                # One Reservation, as `reservation_for` makes it, with the windows the
                # request was counted in (and then always its project).
                if windows is not None:
                    return Admitted(
                        reservation=Reservation(
                            id=reservation_id,
                            key_id=claim.key_id,
                            organization_id=claim.organization_id,
                            amount=amount,
                            key_window=key_window,
                            project_id=claim.project_id,
                            project_window=project_window,
                            rate=_count_admission(conn, claim, windows, rate_slot is not None),
                            rate_at=claim.now,
                            rate_tokens=claim.tokens,
                            units=units,
                        )
                    )
                return Admitted(
                    reservation=Reservation(
                        id=reservation_id,
                        key_id=claim.key_id,
                        organization_id=claim.organization_id,
                        amount=amount,
                        key_window=key_window,
                        project_id=None if project_window is None else claim.project_id,
                        project_window=project_window,
                        units=units,
                    )
                )
            _queue_ticket(conn, claim, ticket, now + ADMISSION_TICKET_TTL)
            return Queued()

        def undo(outcome: Admitted | Queued | Refused) -> Callable[[sqlite3.Connection], None]:
            if isinstance(outcome, Admitted):
                return _undoing(outcome.reservation)
            return _withdrawing(ticket)

        self._sweep_due = True
        return await self._request_write(admit, undo, False, key_rated)

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        await self._request_write(_withdrawing(ticket))

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        def read(conn: sqlite3.Connection) -> tuple[WindowUsage, WindowUsage]:
            now = now_epoch()
            conn.execute("BEGIN")
            try:
                figures = []
                for column, subject in (("key", key), ("project", project)):
                    if subject is None:
                        figures.append(WindowUsage())
                        continue
                    owner, start = subject
                    figures.append(
                        WindowUsage(
                            usage=_key_window_usage(conn, owner, start)
                            if column == "key"
                            else _window_usage(conn, f"p:{owner}", start),
                            reserved=_window_reserved(conn, column, owner, start, now),  # type: ignore[arg-type]
                        )
                    )
            finally:
                conn.execute("COMMIT")
            return figures[0], figures[1]

        return await self._request_read(read)

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        claim = Claim(
            key_id=key_id,
            organization_id=None,
            amount=Decimal(0),
            project_id=project_id,
            key_limits=_COUNT_ALL,
            project_limits=_COUNT_ALL,
            now=now,
        )
        # A write (it drops entries that left the window), grouped like the request path's.
        return await self._request_write(lambda conn: _rate_windows(conn, claim, now_epoch()))

    def subscribe(self, wake: Callable[[str, str | None], None]) -> None:
        """SQLite has no notifications: waiters in other processes poll."""

    async def reclaim_expired(self) -> int:
        def reclaim(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM admission_tickets WHERE expires_at <= ?", (now_epoch(),))
            return conn.execute(
                "DELETE FROM reservations WHERE expires_at <= ?", (now_epoch(),)
            ).rowcount

        return await self._run(reclaim)

    # -- organizations --------------------------------------------------------------
    @staticmethod
    def _organization(conn: sqlite3.Connection, org_id: str) -> Organization:
        row = conn.execute(
            "SELECT id, credits, name FROM organizations WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"organization `{org_id}` does not exist; create it with `orgs create`")
        return organization_from_row(row)

    async def create_organization(self, org_id: str, credits: Decimal) -> Organization:
        amount = parse_money(credits, "credits", allow_negative=True)

        def create(conn: sqlite3.Connection) -> Organization:
            if not org_id:
                raise StoreError("organization id is empty")
            try:
                conn.execute(
                    "INSERT INTO organizations (id, credits, created_at) VALUES (?, ?, ?)",
                    (org_id, str(amount), now_rfc3339()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"organization `{org_id}` already exists") from None
            return Organization(id=org_id, credits=amount)

        return await self._run(self._write(create))

    async def set_credits(self, org_id: str, credits: Decimal) -> Organization:
        amount = parse_money(credits, "credits", allow_negative=True)

        def update(conn: sqlite3.Connection) -> Organization:
            self._organization(conn, org_id)
            conn.execute("UPDATE organizations SET credits = ? WHERE id = ?", (str(amount), org_id))
            return self._organization(conn, org_id)

        return await self._run(self._write(update))

    async def get_organization(self, org_id: str) -> Organization:
        return await self._run(lambda conn: self._organization(conn, org_id))

    async def list_organizations(self) -> list[Organization]:
        def read(conn: sqlite3.Connection) -> list[Organization]:
            rows = conn.execute(
                "SELECT id, credits, name FROM organizations ORDER BY id"
            ).fetchall()
            return [organization_from_row(r) for r in rows]

        return await self._run(read)

    async def rename_organization(self, org_id: str, name: str) -> Organization:
        text = check_name(name, "organization")

        def update(conn: sqlite3.Connection) -> Organization:
            self._organization(conn, org_id)
            conn.execute("UPDATE organizations SET name = ? WHERE id = ?", (text, org_id))
            return self._organization(conn, org_id)

        return await self._run(self._write(update))

    # -- projects -------------------------------------------------------------------
    @staticmethod
    def _project(conn: sqlite3.Connection, project_id: str) -> Project:
        row = conn.execute(
            f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?",  # noqa: S608 - constant columns
            (project_id,),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"project `{project_id}` does not exist; create it with `projects create`"
            )
        return project_from_row(row)

    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project:
        checked = check_mode(mode)

        def create(conn: sqlite3.Connection) -> Project:
            if not project_id:
                raise StoreError("project id is empty")
            self._organization(conn, org_id)
            try:
                conn.execute(
                    "INSERT INTO projects (id, organization, mode, created_at) VALUES (?, ?, ?, ?)",
                    (project_id, org_id, checked, now_rfc3339()),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"project `{project_id}` already exists") from None
            return self._project(conn, project_id)

        return await self._run(self._write(create))

    async def get_project(self, project_id: str) -> Project:
        return await self._run(lambda conn: self._project(conn, project_id))

    async def list_projects(self) -> list[Project]:
        def read(conn: sqlite3.Connection) -> list[Project]:
            rows = conn.execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY id"  # noqa: S608 - constant columns
            ).fetchall()
            return [project_from_row(r) for r in rows]

        return await self._run(read)

    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project:
        checked = check_mode(mode)

        def update(conn: sqlite3.Connection) -> Project:
            self._project(conn, project_id)
            conn.execute("UPDATE projects SET mode = ? WHERE id = ?", (checked, project_id))
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project:
        check_provider_source(provider, source)

        def update(conn: sqlite3.Connection) -> Project:
            row = conn.execute(
                "SELECT provider_keys FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"project `{project_id}` does not exist")
            keys = decode_provider_keys(row[0])
            if source is None:
                keys.pop(provider, None)
            else:
                keys[provider] = stored_source(source, self._secrets)
            conn.execute(
                "UPDATE projects SET provider_keys = ? WHERE id = ?",
                (encode_json(keys), project_id),
            )
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    async def archive_project(self, project_id: str) -> Project:
        def update(conn: sqlite3.Connection) -> Project:
            self._project(conn, project_id)
            conn.execute("UPDATE projects SET status = 'deleted' WHERE id = ?", (project_id,))
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    async def rename_project(self, project_id: str, name: str) -> Project:
        text = check_name(name, "project")

        def update(conn: sqlite3.Connection) -> Project:
            self._project(conn, project_id)
            conn.execute("UPDATE projects SET name = ? WHERE id = ?", (text, project_id))
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        amount, period = budget_columns(check_budget(budget))

        def update(conn: sqlite3.Connection) -> Project:
            self._project(conn, project_id)
            conn.execute(
                "UPDATE projects SET budget_amount = ?, budget_period = ? WHERE id = ?",
                (amount, period, project_id),
            )
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    # -- project IAM rules ------------------------------------------------------------
    @staticmethod
    def _project_rules(conn: sqlite3.Connection, project_id: str) -> tuple[ProjectRule, ...]:
        rows = conn.execute(
            f"SELECT {_PROJECT_RULE_COLUMNS} FROM project_rules "  # noqa: S608 - constant columns
            "WHERE project_id = ? ORDER BY rowid",
            (project_id,),
        )
        return tuple(project_rule_from_row(r) for r in rows)

    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        checked = check_rule_type(rule_type)
        if not values or any(not v for v in values):
            raise StoreError(f"rule `{rule_type}` needs at least one non-empty value")
        rule = ProjectRule(
            id=new_id("prule"), project_id=project_id, type=checked, values=tuple(values)
        )

        def add(conn: sqlite3.Connection) -> ProjectRule:
            self._project(conn, project_id)
            conn.execute(
                'INSERT INTO project_rules (id, project_id, type, "values", status) '
                "VALUES (?, ?, ?, ?, 'active')",
                (rule.id, project_id, checked, encode_json(list(rule.values))),
            )
            return rule

        return await self._run(self._write(add))

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]:
        def read(conn: sqlite3.Connection) -> list[ProjectRule]:
            self._project(conn, project_id)
            return list(self._project_rules(conn, project_id))

        return await self._run(read)

    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule:
        checked = check_rule_status(status)

        def update(conn: sqlite3.Connection) -> ProjectRule:
            conn.execute(
                "UPDATE project_rules SET status = ? WHERE id = ? AND project_id = ?",
                (checked, rule_id, project_id),
            )
            row = conn.execute(
                f"SELECT {_PROJECT_RULE_COLUMNS} FROM project_rules "  # noqa: S608 - constant columns
                "WHERE id = ? AND project_id = ?",
                (rule_id, project_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"rule `{rule_id}` does not exist on project `{project_id}`")
            return project_rule_from_row(row)

        return await self._run(self._write(update))

    async def remove_project_rule(self, project_id: str, rule_id: str) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            deleted = conn.execute(
                "DELETE FROM project_rules WHERE id = ? AND project_id = ?", (rule_id, project_id)
            ).rowcount
            if deleted == 0:
                raise NotFound(f"rule `{rule_id}` does not exist on project `{project_id}`")

        await self._run(self._write(remove))

    # -- keys -----------------------------------------------------------------------
    @staticmethod
    def _key(conn: sqlite3.Connection, key_id: str) -> ApiKey:
        row = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()  # noqa: S608 - constant column list
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
        token = generate_token()
        key = ApiKey(
            id=new_id("key"),
            token_hash=self._stored_hash(token),
            display=display_token(token),
            project_id=project_id,
            status="active",
            usage_limit=limit,
            usage=Decimal("0.00"),
            description=description,
            created_at=now_rfc3339(),
            expires_at=expiry,
            rate_limits=rates,
        )

        def create(conn: sqlite3.Connection) -> ApiKey:
            self._project(conn, project_id)
            conn.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) "  # noqa: S608 - constant column list
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.token_hash,
                    key.display,
                    project_id,
                    key.status,
                    None if limit is None else str(limit),
                    "0.00",
                    description,
                    key.created_at,
                    expiry,
                    None,
                    None,
                    rates.rpm,
                    rates.tpm,
                    rates.max_parallel,
                ),
            )
            return key

        return await self._run(self._write(create)), token

    async def get_key(self, key_id: str) -> ApiKey:
        return await self._run(lambda conn: self._key(conn, key_id))

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        def read(conn: sqlite3.Connection) -> list[ApiKey]:
            if project_id is None:
                rows = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")  # noqa: S608 - constant column list
            else:
                rows = conn.execute(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE project = ? ORDER BY created_at, id",  # noqa: S608 - constant column list
                    (project_id,),
                )
            return [key_from_row(r) for r in rows.fetchall()]

        return await self._run(read)

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        checked = check_key_status(status)

        def update(conn: sqlite3.Connection) -> ApiKey:
            check_status_change(key_id, self._key(conn, key_id).status, checked)
            conn.execute("UPDATE api_keys SET status = ? WHERE id = ?", (checked, key_id))
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey:
        limit = None if usage_limit is None else parse_money(usage_limit, "usage limit")

        def update(conn: sqlite3.Connection) -> ApiKey:
            self._key(conn, key_id)
            conn.execute(
                "UPDATE api_keys SET usage_limit = ? WHERE id = ?",
                (None if limit is None else str(limit), key_id),
            )
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        amount, period = budget_columns(check_budget(budget))

        def update(conn: sqlite3.Connection) -> ApiKey:
            self._key(conn, key_id)
            conn.execute(
                "UPDATE api_keys SET budget_amount = ?, budget_period = ? WHERE id = ?",
                (amount, period, key_id),
            )
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        checked = check_rate_limits(limits)

        def update(conn: sqlite3.Connection) -> ApiKey:
            self._key(conn, key_id)
            conn.execute(
                "UPDATE api_keys SET rpm = ?, tpm = ?, max_parallel = ? WHERE id = ?",
                (checked.rpm, checked.tpm, checked.max_parallel, key_id),
            )
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        checked = check_rate_limits(limits)

        def update(conn: sqlite3.Connection) -> Project:
            self._project(conn, project_id)
            conn.execute(
                "UPDATE projects SET rpm = ?, tpm = ?, max_parallel = ? WHERE id = ?",
                (checked.rpm, checked.tpm, checked.max_parallel, project_id),
            )
            return self._project(conn, project_id)

        return await self._run(self._write(update))

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        text = check_description(description)

        def update(conn: sqlite3.Connection) -> ApiKey:
            self._key(conn, key_id)
            conn.execute("UPDATE api_keys SET description = ? WHERE id = ?", (text, key_id))
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        expiry = parse_expiry(expires_at)

        def update(conn: sqlite3.Connection) -> ApiKey:
            self._key(conn, key_id)
            conn.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", (expiry, key_id))
            return self._key(conn, key_id)

        return await self._run(self._write(update))

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        grace = parse_grace(grace_seconds)
        token = generate_token()

        def rotate(conn: sqlite3.Connection) -> ApiKey:
            current = self._key(conn, key_id)
            check_rotation(key_id, current.status)
            keep = grace > 0
            conn.execute(
                "UPDATE api_keys SET token_hash = ?, display = ?, previous_token_hash = ?, "
                "previous_token_until = ? WHERE id = ?",
                (
                    self._stored_hash(token),
                    display_token(token),
                    current.token_hash if keep else None,
                    rfc3339_after(grace) if keep else None,
                    key_id,
                ),
            )
            return self._key(conn, key_id)

        return await self._run(self._write(rotate)), token

    # -- IAM rules ------------------------------------------------------------------
    async def add_rule(self, key_id: str, rule_type: RuleType, values: tuple[str, ...]) -> IamRule:
        checked = check_rule_type(rule_type)
        if not values or any(not v for v in values):
            raise StoreError(f"rule `{rule_type}` needs at least one non-empty value")
        rule = IamRule(id=new_id("rule"), key_id=key_id, type=checked, values=tuple(values))

        def add(conn: sqlite3.Connection) -> IamRule:
            self._key(conn, key_id)
            conn.execute(
                'INSERT INTO iam_rules (id, key_id, type, "values", status) '
                "VALUES (?, ?, ?, ?, 'active')",
                (rule.id, key_id, checked, encode_json(list(rule.values))),
            )
            return rule

        return await self._run(self._write(add))

    async def list_rules(self, key_id: str) -> list[IamRule]:
        def read(conn: sqlite3.Connection) -> list[IamRule]:
            self._key(conn, key_id)
            rows = conn.execute(
                'SELECT id, key_id, type, "values", status FROM iam_rules '
                "WHERE key_id = ? ORDER BY rowid",
                (key_id,),
            ).fetchall()
            return [rule_from_row(r) for r in rows]

        return await self._run(read)

    async def remove_rule(self, key_id: str, rule_id: str) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            deleted = conn.execute(
                "DELETE FROM iam_rules WHERE id = ? AND key_id = ?", (rule_id, key_id)
            ).rowcount
            if deleted == 0:
                raise NotFound(f"rule `{rule_id}` does not exist on key `{key_id}`")

        await self._run(self._write(remove))

    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        checked = check_rule_status(status)

        def update(conn: sqlite3.Connection) -> IamRule:
            conn.execute(
                "UPDATE iam_rules SET status = ? WHERE id = ? AND key_id = ?",
                (checked, rule_id, key_id),
            )
            row = conn.execute(
                'SELECT id, key_id, type, "values", status FROM iam_rules '
                "WHERE id = ? AND key_id = ?",
                (rule_id, key_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"rule `{rule_id}` does not exist on key `{key_id}`")
            return rule_from_row(row)

        return await self._run(self._write(update))

    # -- key activity ---------------------------------------------------------------
    async def add_key_activity(self, rows: list[KeyActivity]) -> None:
        def add(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO key_activity (key_id, requests, prompt_tokens, completion_tokens, "
                "last_used_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_id) DO UPDATE SET "
                "requests = requests + excluded.requests, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_used_at = max(coalesce(last_used_at, ''), excluded.last_used_at)",
                [
                    (r.key_id, r.requests, r.prompt_tokens, r.completion_tokens, r.last_used_at)
                    for r in rows
                ],
            )

        # In the request path's group commit: no transaction (nor WAL commit) of its own,
        # and no contention with the inline commits for the write lock.
        await self._request_write(add)

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        def read(conn: sqlite3.Connection) -> dict[str, KeyActivity]:
            rows = conn.execute(
                "SELECT key_id, requests, prompt_tokens, completion_tokens, last_used_at "
                "FROM key_activity"
            ).fetchall()
            wanted = None if key_ids is None else set(key_ids)
            return {
                row[0]: activity_from_row(row) for row in rows if wanted is None or row[0] in wanted
            }

        return await self._run(read)

    # -- audit log ------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO audit_log (time, actor, client, action, object_type, object_id, "
                "before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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

        await self._run(self._write(insert))

    async def list_audit(
        self, since: str | None, object_filter: str | None, limit: int
    ) -> list[AuditEntry]:
        kind, ident = audit_filter(object_filter)

        def read(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log "  # noqa: S608 - constant column list
                "WHERE (? IS NULL OR time >= ?) AND (? IS NULL OR object_type = ?) "
                "AND (? IS NULL OR object_id = ?) ORDER BY seq DESC LIMIT ?",
                (since, since, kind, kind, ident, ident, limit),
            ).fetchall()
            return [audit_entry_from_row(row) for row in reversed(rows)]

        return await self._run(read)
