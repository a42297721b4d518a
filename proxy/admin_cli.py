"""Admin commands of `gateway`: organizations, projects, keys and their IAM rules.

Each command opens the store named by the configuration (`database`, `usage_store`),
migrates it, makes sure the `default` organization and project exist, does one
thing and prints either a line for people or, with `--json`, one JSON object.

Exit status: 0 done; 1 the named record does not exist or a value is bad (the
message says which and how to fix it); 2 usage errors (from argparse) and bad
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from proxy.audit import AuditedAdmin, audit_json, cli_actor
from proxy.budgets import format_budget, time_zone
from proxy.config import SECRET_KEY_ENV, ConfigError, GatewayConfig, load_config
from proxy.effective_controls import ControlsQuery, controls_text, shown_controls
from proxy.money import money_text, optional_money_text
from proxy.policy import PolicyHolder, PolicyLoadError
from proxy.secret_box import box_for
from proxy.store import open_store
from proxy.store.base import (
    ApiKey,
    IamRule,
    KeyActivity,
    Organization,
    Project,
    ProjectRule,
    RateLimits,
    RuleStatus,
    StoreError,
)
from proxy.store.common import (
    MAX_RATE_LIMIT,
    PROJECT_MODES,
    RULE_TYPES,
    check_budget,
    check_key_status,
    check_mode,
    check_rule_type,
    parse_expiry,
    parse_grace,
    parse_money,
)

__all__ = ["add_commands"]

EXIT_NOT_DONE = 1
EXIT_USAGE = 2

# A command body: given the open store and the parsed arguments, returns the JSON
# payload and the text line to print.
Action = Callable[[AuditedAdmin, argparse.Namespace], Awaitable[tuple[dict[str, Any], str]]]


# -- rendering ----------------------------------------------------------------------
def org_json(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "credits": money_text(org.credits), "name": org.name}


def project_json(project: Project) -> dict[str, Any]:
    # INVARIANT: a provider secret given by value is never printed back.
    keys = {
        provider: {"env": source["env"]} if "env" in source else {"value": "***"}
        for provider, source in project.provider_keys.items()
    }
    return {
        "id": project.id,
        "organization": project.organization_id,
        "mode": project.mode,
        "status": project.status,
        "provider_keys": keys,
        "name": project.name,
        **rate_limits_json(project.rate_limits),
        "budget": None if project.budget is None else format_budget(project.budget),
    }


def rate_limits_json(limits: RateLimits) -> dict[str, int | None]:
    return {"rpm": limits.rpm, "tpm": limits.tpm, "max_parallel": limits.max_parallel}


def key_json(key: ApiKey, activity: KeyActivity | None = None) -> dict[str, Any]:
    seen = activity or KeyActivity(key_id=key.id)
    return {
        "id": key.id,
        "display": key.display,
        "project": key.project_id,
        "status": key.status,
        "usage": money_text(key.usage),
        "usage_limit": optional_money_text(key.usage_limit),
        "description": key.description,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "budget": None if key.budget is None else format_budget(key.budget),
        "last_used_at": seen.last_used_at,
        "requests": seen.requests,
        "prompt_tokens": seen.prompt_tokens,
        "completion_tokens": seen.completion_tokens,
        **rate_limits_json(key.rate_limits),
    }


def rule_json(rule: IamRule | ProjectRule) -> dict[str, Any]:
    owner = {"key_id": rule.key_id} if isinstance(rule, IamRule) else {"project": rule.project_id}
    return {
        "id": rule.id,
        **owner,
        "type": rule.type,
        "values": list(rule.values),
        "status": rule.status,
    }


def _key_line(key: ApiKey, activity: KeyActivity | None = None) -> str:
    limit = "unlimited" if key.usage_limit is None else f"limit {money_text(key.usage_limit)}"
    expiry = f"  expires {key.expires_at}" if key.expires_at else ""
    budget = f"  budget {format_budget(key.budget)}" if key.budget else ""
    return (
        f"{key.id}  {key.display}  project {key.project_id}  {key.status}  "
        f"usage {money_text(key.usage)}  {limit}{budget}{expiry}{_rates_text(key.rate_limits)}"
        f"{_activity_text(activity)}"
    )


def _rates_text(limits: RateLimits) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (
            ("rpm", limits.rpm),
            ("tpm", limits.tpm),
            ("max parallel", limits.max_parallel),
        )
        if value is not None
    ]
    return f"  {', '.join(parts)}" if parts else ""


def _rate_limit(value: str | None, what: str) -> int | None:
    """A ceiling as typed: a whole number, or `none`; checked here so the error names
    the option that was typed (the store checks again for every other caller)."""
    if value is None or value.strip().lower() == "none":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not value.strip().isdigit() or not 1 <= number <= MAX_RATE_LIMIT:
        raise StoreError(
            f"{what}: `{value}` is not a whole number from 1 to {MAX_RATE_LIMIT}; give e.g. "
            "60, or `none` for no limit (0 is refused: to block a key, disable it)"
        )
    return number


def _rate_limits(args: argparse.Namespace, current: RateLimits | None = None) -> RateLimits:
    """The ceilings given on the command line; the ones not given keep `current`.
    `set-rate-limits ID none` (as `set-limit ID none`) removes all three."""
    base = current or RateLimits()
    given = [getattr(args, name) for name in ("rpm", "tpm", "max_parallel")]
    clear = getattr(args, "clear", None)
    if clear is not None:
        if any(value is not None for value in given):
            raise StoreError(
                "`none` removes every limit; give it alone, or give only the options "
                "to change (e.g. --rpm none)"
            )
        return RateLimits()
    if current is not None and all(value is None for value in given):
        raise StoreError(
            "nothing to change: give --rpm, --tpm or --max-parallel, or `none` to remove "
            "every limit"
        )

    def pick(name: str, option: str) -> int | None:
        given = getattr(args, name)
        return getattr(base, name) if given is None else _rate_limit(given, option)

    return RateLimits(
        rpm=pick("rpm", "--rpm"),
        tpm=pick("tpm", "--tpm"),
        max_parallel=pick("max_parallel", "--max-parallel"),
    )


def _add_rate_options(parser: argparse.ArgumentParser, clearing: bool) -> None:
    more = ", or `none` to remove it (default: unchanged)" if clearing else " (default: none)"
    parser.add_argument("--rpm", help=f"requests per minute, e.g. 60{more}")
    parser.add_argument("--tpm", help=f"tokens per minute (prompt + completion){more}")
    parser.add_argument("--max-parallel", help=f"requests in flight at once, e.g. 4{more}")
    if clearing:
        parser.add_argument(
            "clear", nargs="?", choices=["none"], help="`none` removes every rate limit"
        )


def _budget_arg(raw: str) -> Any:
    """`5.00/day` or `none`, checked; the error names the argument and the periods."""
    return check_budget(raw, "--budget")


def _rules_text(rules: Sequence[IamRule | ProjectRule]) -> str:
    """A key's or a project's rules, one a line: id, type, values, status."""
    lines = [f"{r.id}  {r.type}  {' '.join(r.values)}  {r.status}" for r in rules]
    return "\n".join(lines) or "no rules"


def _activity_text(activity: KeyActivity | None) -> str:
    if activity is None or activity.last_used_at is None:
        return "  never used"
    return f"  {activity.requests} requests, last used {activity.last_used_at}"


# -- organizations ------------------------------------------------------------------
async def _orgs_create(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    org = await store.create_organization(args.org, parse_money(args.credits, "--credits"))
    return org_json(org), f"organization {org.id} created with credits {money_text(org.credits)}"


async def _orgs_credits(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    amount = parse_money(args.credits, "credits", allow_negative=True)
    org = await store.set_credits(args.org, amount)
    return org_json(org), f"organization {org.id} now has credits {money_text(org.credits)}"


async def _orgs_list(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    orgs = await store.list_organizations()
    lines = [f"{o.id}  credits {money_text(o.credits)}  {o.name}".rstrip() for o in orgs]
    return {"organizations": [org_json(o) for o in orgs]}, "\n".join(lines) or "no organizations"


async def _orgs_rename(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    org = await store.rename_organization(args.org, args.name)
    return org_json(org), f"organization {org.id} is now called `{org.name}`"


# -- projects -----------------------------------------------------------------------
async def _projects_rename(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    project = await store.rename_project(args.project, args.name)
    return project_json(project), f"project {project.id} is now called `{project.name}`"


async def _project_iam_add(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    rule = await store.add_project_rule(
        args.project, check_rule_type(args.type), tuple(args.values)
    )
    return rule_json(rule), rule.id


async def _project_iam_list(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    rules = await store.list_project_rules(args.project)
    payload = {"project": args.project, "rules": [rule_json(r) for r in rules]}
    return payload, _rules_text(rules)


async def _project_iam_remove(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    await store.remove_project_rule(args.project, args.rule_id)
    return {"project": args.project, "removed": args.rule_id}, f"rule {args.rule_id} removed"


def _project_rule_status_action(status: RuleStatus) -> Action:
    async def run(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
        rule = await store.set_project_rule_status(args.project, args.rule_id, status)
        return rule_json(rule), f"rule {rule.id} {rule.status}"

    return run


async def _projects_create(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    budget = None if args.budget is None else _budget_arg(args.budget)
    project = await store.create_project(args.project, args.org, check_mode(args.mode))
    limits = _rate_limits(args)
    if limits.any:
        project = await store.set_project_rate_limits(project.id, limits)
    if budget is not None:
        project = await store.set_project_budget(project.id, budget)
    return project_json(project), f"project {project.id} created (mode {project.mode})"


async def _projects_set_mode(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    project = await store.set_project_mode(args.project, check_mode(args.mode))
    return project_json(project), f"project {project.id} now in mode {project.mode}"


async def _projects_provider_key(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    source = {"env": args.env} if args.env is not None else {"value": args.value}
    project = await store.set_provider_key(args.project, args.provider, source)
    where = f"environment variable {args.env}" if args.env is not None else "the stored value"
    return project_json(project), f"project {project.id}: {args.provider} key from {where}"


async def _projects_archive(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    project = await store.archive_project(args.project)
    return project_json(project), f"project {project.id} archived"


async def _projects_list(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    projects = await store.list_projects()
    lines = [
        f"{p.id}  org {p.organization_id}  {p.mode}  {p.status}  {p.name}".rstrip()
        for p in projects
    ]
    return {"projects": [project_json(p) for p in projects]}, "\n".join(lines) or "no projects"


# -- keys ---------------------------------------------------------------------------
async def _keys_create(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    limit = None if args.usage_limit is None else parse_money(args.usage_limit, "--usage-limit")
    budget = None if args.budget is None else _budget_arg(args.budget)
    key, token = await store.create_key(
        args.project,
        limit,
        args.description,
        expires_at=args.expires_at,
        rate_limits=_rate_limits(args),
    )
    if budget is not None:
        key = await store.set_key_budget(key.id, budget)
    text = (
        f"{token}\n"
        f"key {key.id} created in project {key.project_id}; "
        "the token above is shown only once, store it now"
    )
    return {**key_json(key), "token": token}, text


async def _keys_list(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    keys = await store.list_keys(args.project)
    activity = await store.key_activity(None)
    lines = [_key_line(k, activity.get(k.id)) for k in keys]
    return {"keys": [key_json(k, activity.get(k.id)) for k in keys]}, "\n".join(lines) or (
        "no keys"
    )


async def _keys_show(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    key = await store.get_key(args.id)
    seen = (await store.key_activity([key.id])).get(key.id)
    project = await store.get_project(key.project_id)
    query, problem = _controls_query(args)
    # The windows now (the gateway's clock is the wall clock outside tests).
    shown = await shown_controls(
        store, query, key, project, datetime.now(UTC), args.time_zone, problem
    )
    payload = {**key_json(key, seen), **shown}
    return payload, _key_line(key, seen) + controls_text(shown, project.id)


async def _keys_set_rate_limits(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    current = await store.get_key(args.id)
    key = await store.set_key_rate_limits(args.id, _rate_limits(args, current.rate_limits))
    shown = _rates_text(key.rate_limits).strip() or "no rate limits"
    return key_json(key), f"key {key.id} now has {shown}"


async def _projects_set_rate_limits(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    current = await store.get_project(args.project)
    project = await store.set_project_rate_limits(
        args.project, _rate_limits(args, current.rate_limits)
    )
    shown = _rates_text(project.rate_limits).strip() or "no rate limits"
    return project_json(project), f"project {project.id} now has {shown} (for all its keys)"


async def _keys_set_budget(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    key = await store.set_key_budget(args.id, _budget_arg(args.budget))
    shown = "no budget" if key.budget is None else f"budget {format_budget(key.budget)}"
    return key_json(key), f"key {key.id} now has {shown}"


async def _projects_show(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    project = await store.get_project(args.project)
    query, problem = _controls_query(args)
    shown = await shown_controls(
        store, query, None, project, datetime.now(UTC), args.time_zone, problem
    )
    line = f"{project.id}  org {project.organization_id}  {project.mode}  {project.status}"
    return {**project_json(project), **shown}, line + controls_text(shown)


def _controls_query(args: argparse.Namespace) -> tuple[ControlsQuery | None, str]:
    """`data.gateway.effective_controls` of the configured policy files (what the
    gateway would enforce), and what to say if they cannot be loaded."""
    config: GatewayConfig = args.gateway_config
    try:
        policy = PolicyHolder(config.policy_dir, config.catalog_path).current
    except PolicyLoadError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "no detail"
        return None, f"the policy files in {config.policy_dir} could not be loaded ({first})"
    controls = policy.controls
    return controls, (
        f"the policy in {config.policy_dir} does not define data.gateway.effective_controls"
    )


async def _projects_set_budget(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    project = await store.set_project_budget(args.project, _budget_arg(args.budget))
    budget = project.budget
    shown = "no budget" if budget is None else f"budget {format_budget(budget)}"
    return project_json(project), f"project {project.id} now has {shown}"


def _status_action(status: str, verb: str) -> Action:
    async def run(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
        key = await store.set_key_status(args.id, check_key_status(status))
        return key_json(key), f"key {key.id} {verb}"

    return run


async def _keys_set_limit(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    raw: str = args.limit
    limit = None if raw.strip().lower() == "none" else parse_money(raw, "limit")
    key = await store.set_usage_limit(args.id, limit)
    shown = "no limit" if key.usage_limit is None else f"limit {money_text(key.usage_limit)}"
    return key_json(key), f"key {key.id} now has {shown}"


async def _keys_rename(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    key = await store.rename_key(args.id, args.description)
    return key_json(key), f"key {key.id} is now called `{key.description}`"


async def _keys_set_expiry(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    raw: str = args.expires_at
    key = await store.set_key_expiry(args.id, None if raw.strip().lower() == "none" else raw)
    shown = f"expires at {key.expires_at}" if key.expires_at else "never expires"
    return key_json(key), f"key {key.id} now {shown}"


async def _keys_rotate(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    key, token = await store.rotate_key(args.id, parse_grace(args.grace))
    old = "stops working now" if args.grace == 0 else f"works for {args.grace:g} more seconds"
    text = (
        f"{token}\n"
        f"key {key.id} has a new token (shown only once, store it now); the old token {old}"
    )
    return {"id": key.id, "token": token}, text


async def _iam_add(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    rule = await store.add_rule(args.id, check_rule_type(args.type), tuple(args.values))
    return rule_json(rule), rule.id


async def _iam_list(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    rules = await store.list_rules(args.id)
    return {"key_id": args.id, "rules": [rule_json(r) for r in rules]}, _rules_text(rules)


async def _iam_remove(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    await store.remove_rule(args.id, args.rule_id)
    return {"key_id": args.id, "removed": args.rule_id}, f"rule {args.rule_id} removed"


def _rule_status_action(status: RuleStatus) -> Action:
    async def run(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
        rule = await store.set_rule_status(args.id, args.rule_id, status)
        return rule_json(rule), f"rule {rule.id} {rule.status}"

    return run


# -- audit log ----------------------------------------------------------------------
async def _audit_list(store: AuditedAdmin, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    since = parse_expiry(args.since, "--since") if args.since else None
    entries = await store.list_audit(since, args.object, args.limit)
    lines = [
        f"{e.time}  {e.actor} {e.client}  {e.action} {e.object_type} {e.object_id}  "
        f"{json.dumps(e.before)} -> {json.dumps(e.after)}"
        for e in entries
    ]
    return {"entries": [audit_json(e) for e in entries]}, "\n".join(lines) or "no entries"


# -- running a command --------------------------------------------------------------
def _handler(action: Action, needs_secret: bool = False) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(args, str(exc), EXIT_USAGE)
        if needs_secret and not config.secret_key:
            return _fail(
                args,
                f"{SECRET_KEY_ENV} is not set; set it to 32+ random characters (the value "
                "every gateway process will use) and run this again",
                EXIT_USAGE,
            )
        try:
            payload, text = asyncio.run(_run(config, action, args))
        except StoreError as exc:
            return _fail(args, str(exc), EXIT_NOT_DONE)
        print(json.dumps(payload) if args.json else text)
        return 0

    return handle


async def _run(
    config: GatewayConfig, action: Action, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    store = open_store(config.database, config.usage_store, secrets=box_for(config.secret_key))
    # Budget windows are shown in the gateway's zone (checked when the config loaded).
    args.time_zone = time_zone(config.budget_time_zone)
    args.gateway_config = config
    try:
        await store.migrate()
        await store.ensure_defaults()
        return await action(AuditedAdmin(store, cli_actor()), args)
    finally:
        await store.close()


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    print(f"gateway {args.command}: error: {message}", file=sys.stderr)
    return code


# -- the argument parsers -----------------------------------------------------------
def add_commands(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Register `orgs`, `projects`, `keys` and `secrets` on the `gateway` subparsers."""
    if common is None:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--config", help="YAML config file")
        common.add_argument("--json", action="store_true", help="print one JSON object")
    _add_orgs(subparsers, common)
    _add_projects(subparsers, common)
    _add_keys(subparsers, common)
    _add_secrets(subparsers, common)
    _add_audit(subparsers, common)


def _command(
    group: Any,
    name: str,
    common: argparse.ArgumentParser,
    action: Action,
    help_text: str,
    needs_secret: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help_text)
    parser.set_defaults(handler=_handler(action, needs_secret))
    return parser


def _add_secrets(subparsers: Any, common: argparse.ArgumentParser) -> None:
    secrets = subparsers.add_parser("secrets", help="secrets at rest (GATEWAY_SECRET_KEY)")
    group = secrets.add_subparsers(dest="secrets_command", required=True)
    _command(
        group,
        "migrate",
        common,
        _secrets_migrate,
        "key every token hash and encrypt every provider key stored by value",
        needs_secret=True,
    )


async def _secrets_migrate(
    store: AuditedAdmin, args: argparse.Namespace
) -> tuple[dict[str, Any], str]:
    hashes, values = await store.protect_secrets()
    text = f"{hashes} token hashes keyed, {values} provider keys encrypted"
    return {"token_hashes_keyed": hashes, "provider_keys_encrypted": values}, text


def _add_orgs(subparsers: Any, common: argparse.ArgumentParser) -> None:
    orgs = subparsers.add_parser("orgs", help="organizations and their credits")
    group = orgs.add_subparsers(dest="orgs_command", required=True)
    create = _command(group, "create", common, _orgs_create, "create an organization")
    create.add_argument("org")
    create.add_argument("--credits", default="0", help="starting credits in USD (default 0)")
    credits = _command(group, "credits", common, _orgs_credits, "set an organization's credits")
    credits.add_argument("org")
    credits.add_argument("credits", help="new credits in USD, e.g. 25.00")
    _command(group, "list", common, _orgs_list, "list organizations")
    rename = _command(group, "rename", common, _orgs_rename, "change an organization's name")
    rename.add_argument("org")
    rename.add_argument("name")


_BUDGET_HELP = "USD per hour, day, week or month, e.g. 5.00/day (calendar windows)"

# The `iam disable` and `iam enable` commands of keys and projects, with the status each sets.
_RULE_TOGGLES: tuple[tuple[str, RuleStatus], ...] = (("disable", "inactive"), ("enable", "active"))


def _add_projects(subparsers: Any, common: argparse.ArgumentParser) -> None:
    projects = subparsers.add_parser("projects", help="projects, modes and provider keys")
    group = projects.add_subparsers(dest="projects_command", required=True)
    create = _command(group, "create", common, _projects_create, "create a project")
    create.add_argument("project")
    create.add_argument("--org", required=True, help="organization that pays for credits")
    create.add_argument("--mode", choices=PROJECT_MODES, default="hybrid")
    _add_rate_options(create, clearing=False)
    set_rates = _command(
        group,
        "set-rate-limits",
        common,
        _projects_set_rate_limits,
        "set a project's rate limits (shared by all its keys)",
    )
    set_rates.add_argument("project")
    _add_rate_options(set_rates, clearing=True)
    create.add_argument("--budget", help=_BUDGET_HELP)
    _command(group, "show", common, _projects_show, "show one project").add_argument("project")
    set_budget = _command(
        group, "set-budget", common, _projects_set_budget, "set or clear a project's budget"
    )
    set_budget.add_argument("project")
    set_budget.add_argument("budget", help=_BUDGET_HELP + ", or `none`")
    set_mode = _command(group, "set-mode", common, _projects_set_mode, "change a project's mode")
    set_mode.add_argument("project")
    set_mode.add_argument("mode", choices=PROJECT_MODES)
    provider_key = _command(
        group, "provider-key", common, _projects_provider_key, "set a project's provider key"
    )
    provider_key.add_argument("project")
    provider_key.add_argument("provider")
    source = provider_key.add_mutually_exclusive_group(required=True)
    source.add_argument("--env", help="name of the environment variable holding the key")
    source.add_argument(
        "--value",
        help="the key itself (stored in the database, encrypted when GATEWAY_SECRET_KEY is set)",
    )
    archive = _command(group, "archive", common, _projects_archive, "archive a project")
    archive.add_argument("project")
    _command(group, "list", common, _projects_list, "list projects")
    rename = _command(group, "rename", common, _projects_rename, "change a project's name")
    rename.add_argument("project")
    rename.add_argument("name")
    iam = group.add_parser("iam", help="a project's IAM rules (a ceiling for all its keys)")
    iam_group = iam.add_subparsers(dest="project_iam_command", required=True)
    add = _command(iam_group, "add", common, _project_iam_add, "add a rule (prints its id)")
    add.add_argument("project")
    add.add_argument("type", choices=RULE_TYPES)
    add.add_argument("values", nargs="+", metavar="VALUE")
    _command(iam_group, "list", common, _project_iam_list, "list a project's rules").add_argument(
        "project"
    )
    remove = _command(iam_group, "remove", common, _project_iam_remove, "remove a rule")
    remove.add_argument("project")
    remove.add_argument("rule_id")
    for name, status in _RULE_TOGGLES:
        toggle = _command(
            iam_group, name, common, _project_rule_status_action(status), f"{name} a rule"
        )
        toggle.add_argument("project")
        toggle.add_argument("rule_id")


def _add_keys(subparsers: Any, common: argparse.ArgumentParser) -> None:
    keys = subparsers.add_parser("keys", help="API keys, limits and IAM rules")
    group = keys.add_subparsers(dest="keys_command", required=True)
    create = _command(group, "create", common, _keys_create, "create a key (token shown once)")
    create.add_argument("--project", required=True)
    create.add_argument("--usage-limit", help="USD, e.g. 100.00 (default: unlimited)")
    create.add_argument("--budget", help=_BUDGET_HELP)
    create.add_argument("--description", default="")
    create.add_argument(
        "--expires-at", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z (default: never)"
    )
    _add_rate_options(create, clearing=False)
    set_rates = _command(
        group, "set-rate-limits", common, _keys_set_rate_limits, "set a key's rate limits"
    )
    set_rates.add_argument("id")
    _add_rate_options(set_rates, clearing=True)
    listing = _command(group, "list", common, _keys_list, "list keys")
    listing.add_argument("--project")
    _command(group, "show", common, _keys_show, "show one key").add_argument("id")
    for name, status, verb in (
        ("disable", "inactive", "disabled"),
        ("enable", "active", "enabled"),
        ("delete", "deleted", "deleted"),
    ):
        _command(group, name, common, _status_action(status, verb), f"{name} a key").add_argument(
            "id"
        )
    set_limit = _command(group, "set-limit", common, _keys_set_limit, "set a key's usage limit")
    set_limit.add_argument("id")
    set_limit.add_argument("limit", help="USD, e.g. 50.00, or `none` for unlimited")
    set_budget = _command(
        group, "set-budget", common, _keys_set_budget, "set or clear a key's period budget"
    )
    set_budget.add_argument("id")
    set_budget.add_argument("budget", help=_BUDGET_HELP + ", or `none`")
    rename = _command(group, "rename", common, _keys_rename, "change a key's description")
    rename.add_argument("id")
    rename.add_argument("description")
    set_expiry = _command(
        group, "set-expiry", common, _keys_set_expiry, "set or clear a key's expiry"
    )
    set_expiry.add_argument("id")
    set_expiry.add_argument(
        "expires_at", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z, or `none`"
    )
    rotate = _command(group, "rotate", common, _keys_rotate, "give a key a new token (shown once)")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long the old token keeps working (default 0: it stops at once)",
    )
    iam = group.add_parser("iam", help="a key's IAM rules")
    iam_group = iam.add_subparsers(dest="iam_command", required=True)
    add = _command(iam_group, "add", common, _iam_add, "add a rule (prints its id)")
    add.add_argument("id")
    add.add_argument("type", choices=RULE_TYPES)
    add.add_argument("values", nargs="+", metavar="VALUE")
    _command(iam_group, "list", common, _iam_list, "list a key's rules").add_argument("id")
    remove = _command(iam_group, "remove", common, _iam_remove, "remove a rule")
    remove.add_argument("id")
    remove.add_argument("rule_id")
    for name, status in _RULE_TOGGLES:
        toggle = _command(
            iam_group,
            name,
            common,
            _rule_status_action(status),
            f"{name} a rule (kept, {'not ' if status == 'inactive' else ''}applied)",
        )
        toggle.add_argument("id")
        toggle.add_argument("rule_id")


def _add_audit(subparsers: Any, common: argparse.ArgumentParser) -> None:
    audit = subparsers.add_parser("audit", help="the audit log of administrative changes")
    group = audit.add_subparsers(dest="audit_command", required=True)
    listing = _command(group, "list", common, _audit_list, "list audit entries, oldest first")
    listing.add_argument("--since", help="RFC 3339 time, e.g. 2026-12-01T00:00:00Z")
    listing.add_argument(
        "--object", help="an object type (key, project, organization, rule), an id, or type:id"
    )
    listing.add_argument("--limit", type=int, default=1000, help="the newest N (default 1000)")
