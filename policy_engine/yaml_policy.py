"""The YAML surface for IAM rules, rate limits and budgets (`*.iam.yaml`), lowered into Rego.

A file lists rule sets; each names what it applies to (one key, one project or
all keys) and carries rules of the gateway contract's six types. `lower` turns
every rule into one definition of the partial set rule
`data.gateway.iam_policies.rules`, exactly what this Rego would produce:

    package gateway.iam_policies

    rules contains {"layer": "key", "id": "no-gpt4", "type": "deny_models",
                    "values": ["gpt-4*"], "status": "active"} if {
        input.key.id == "key_123"
    }

so the default policy (`policies/gateway.rego`) reads YAML and Rego rules the
same way and there is no second evaluator. A rule set may also carry
`rate_limits:` (requests per minute, tokens per minute, parallel requests),
lowered the same way into `data.gateway.iam_policies.rate_ceilings`:

    rate_ceilings contains {"layer": "project", "rpm": 600, "tpm": null,
                            "max_parallel": 20} if {
        input.project.id == "proj_1"
    }

ceilings the policy applies on top of the key's and the project's own (the lower
wins): for one key, every key of a project together, or each key of the gateway.
The layer is `key`, `project` or `gateway` (all keys); the policy treats each
layer as a ceiling for the next.

A file may also list `budgets:`, period spend ceilings for one key, one project or
every key (`proxy.budgets`); each becomes one definition of the partial set
`data.gateway.budget_policies.budgets`, exactly what this Rego would produce:

    package gateway.budget_policies

    budgets contains {"layer": "project", "target": "research", "id": "monthly",
                      "amount": "500.00", "period": "month"}

which the default policy resolves (`effective_budgets`) against the key store's own
budgets.

Decoding uses msgspec with unknown fields forbidden; every problem becomes a
`PolicyError` diagnostic with the file, the YAML line and column and the field
path (`rule_sets[0].rules[1].allow_models`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import yaml

from policy_engine import ast
from policy_engine.errors import Diagnostic, PolicyError
from policy_engine.source import Source, Span

__all__ = [
    "BUDGETS_PACKAGE",
    "LOWERED_PACKAGE",
    "PERIODS",
    "RULE_TYPES",
    "YAML_POLICY_ERROR",
    "AppliesTo",
    "Budget",
    "PolicyFile",
    "PolicyRule",
    "RateCeilings",
    "RuleSet",
    "decode",
    "lower",
]

YAML_POLICY_ERROR = "yaml_policy_error"
LOWERED_PACKAGE = ("gateway", "iam_policies")
BUDGETS_PACKAGE = ("gateway", "budget_policies")
PERIODS = ("hour", "day", "week", "month")
RULE_TYPES = (
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "allow_operations",
    "deny_operations",
)

Value = Annotated[str, msgspec.Meta(min_length=1)]
Values = Annotated[
    tuple[Value, ...],
    msgspec.Meta(
        min_length=1,
        description="Model ids (globs such as `gpt-4*` allowed), provider ids or operation ids.",
    ),
]


class PolicyRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One IAM rule: an optional id and exactly one of the six rule types."""

    id: str | None = None
    """Shown as `rule_id` in the decision's reasons; unique within the file."""
    description: str | None = None
    """Free text for people."""
    status: Literal["active", "inactive"] = "active"
    """An `inactive` rule is kept but ignored."""
    allow_models: Values | None = None
    """Only these models (globs allowed) may be used."""
    deny_models: Values | None = None
    """These models (globs allowed) may not be used."""
    allow_providers: Values | None = None
    """Only these providers may serve requests."""
    deny_providers: Values | None = None
    """These providers may not serve requests."""
    allow_operations: Values | None = None
    """Only these operations (`chat.completions`, `completions`, `embeddings`,
    `models.list`, `responses`, `messages`) may be called."""
    deny_operations: Values | None = None
    """These operations may not be called."""

    def rule_types(self) -> list[tuple[str, tuple[str, ...]]]:
        """The rule-type fields that are set, with their values."""
        found = ((name, getattr(self, name)) for name in RULE_TYPES)
        return [(name, values) for name, values in found if values is not None]


Ceiling = Annotated[int, msgspec.Meta(ge=1, le=10**12)]


class RateCeilings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rate limits set as policy: each a ceiling over the store's own (the lower wins)."""

    rpm: Ceiling | None = None
    """Requests per minute (any 60 seconds)."""
    tpm: Ceiling | None = None
    """Tokens per minute: prompt + completion (a request in flight counts its bound)."""
    max_parallel: Ceiling | None = None
    """Requests in flight at once."""


class AppliesTo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a rule set applies to: exactly one of `key`, `project` or `all_keys: true`."""

    key: str | None = None
    """One API key, by id: its rules join the key's own rules."""
    project: str | None = None
    """Every key of one project, by id: a ceiling the keys' rules can only narrow."""
    all_keys: bool = False
    """Every key of the gateway: a ceiling above projects and keys."""


class RuleSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rules that apply to one target."""

    description: str | None = None
    """Free text for people."""
    applies_to: Annotated[
        AppliesTo,
        msgspec.Meta(
            extra_json_schema={
                "oneOf": [
                    {"required": ["key"]},
                    {"required": ["project"]},
                    {"required": ["all_keys"], "properties": {"all_keys": {"const": True}}},
                ]
            }
        ),
    ]
    """The key, the project or all keys."""
    rules: tuple[
        Annotated[
            PolicyRule,
            msgspec.Meta(extra_json_schema={"oneOf": [{"required": [t]} for t in RULE_TYPES]}),
        ],
        ...,
    ] = ()
    """The rules; allow rules of one type are OR-ed, different types AND-ed, denies win.
    A rule set has rules, rate limits or both."""
    rate_limits: RateCeilings | None = None
    """Rate limits of the key, of the project (all its keys together) or, with
    `all_keys`, of each key: ceilings over the store's own, the lower wins."""


Amount = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]+(\.[0-9]+)?$",
        description='USD as a decimal string, e.g. "500.00" (quoted: YAML numbers are floats).',
    ),
]


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A period spend ceiling: at most `amount` USD of settled usage per calendar
    `period` (in the gateway's `budget_time_zone`)."""

    id: str | None = None
    """Shown in the decision's reasons; unique within the file."""
    description: str | None = None
    """Free text for people."""
    applies_to: Annotated[
        AppliesTo,
        msgspec.Meta(
            extra_json_schema={
                "oneOf": [
                    {"required": ["key"]},
                    {"required": ["project"]},
                    {"required": ["all_keys"], "properties": {"all_keys": {"const": True}}},
                ]
            }
        ),
    ]
    """One key, one project (all its keys together), or every key (each on its own)."""
    amount: Amount
    """The ceiling per window, USD."""
    period: Literal["hour", "day", "week", "month"]
    """The calendar window: weeks start on Monday, months on the 1st."""


class PolicyFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A `*.iam.yaml` file: IAM rule sets, period budgets, or both."""

    version: Literal[1] = 1
    """Format version; only 1 exists."""
    description: str | None = None
    """Free text for people."""
    rule_sets: tuple[RuleSet, ...] = ()
    """The rule sets of this file."""
    budgets: tuple[Budget, ...] = ()
    """Period spend ceilings set as policy (they take precedence over the key store's)."""


# ---- locating problems in the YAML text --------------------------------------------

_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def _steps(path: str) -> list[str | int]:
    """`$.rule_sets[0].rules` -> ["rule_sets", 0, "rules"]."""
    steps: list[str | int] = []
    for match in _PATH_STEP.finditer(path):
        name, index = match.groups()
        steps.append(name if name is not None else int(index))
    return steps


def _child(node: yaml.Node, step: str | int, want_key: bool = False) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key_node, value_node in node.value:
            if key_node.value == step:
                found: yaml.Node = key_node if want_key else value_node
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        child: yaml.Node = node.value[step]
        return child
    return None


def _locate(root: yaml.Node | None, steps: list[str | int], field: str | None) -> yaml.Node | None:
    """The deepest node along `steps` (then the key node of `field`, if given)."""
    node = root
    for step in steps:
        child = _child(node, step) if node is not None else None
        if child is None:
            return node
        node = child
    if field is not None and node is not None:
        return _child(node, field, want_key=True) or node
    return node


def _span(file: str, node: yaml.Node | None) -> Span:
    if node is None:
        return Span(file=file, line=1, column=1)
    start, end = node.start_mark, node.end_mark
    return Span(
        file=file,
        line=start.line + 1,
        column=start.column + 1,
        end_line=end.line + 1,
        end_column=end.column + 1,
    )


def _field_path(steps: list[str | int]) -> str:
    """`rule_sets[0].rules` in backticks, or "the top level"."""
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    return f"`{text}`" if text else "the top level"


def _humane(message: str) -> str:
    """msgspec's wording without Python type names, as one lowercase sentence."""

    def word(match: re.Match[str]) -> str:
        parts = [p.strip() for p in match.group(1).split("|")]
        return " or ".join(_TYPE_WORDS.get(p, f"`{p}`") for p in parts if p != "null")

    text = re.sub(r"`([a-z |]+)`", word, message.replace("enum value", "value"))
    return text[:1].lower() + text[1:]


def _validation_diagnostic(
    source: Source, root: yaml.Node | None, error: msgspec.ValidationError
) -> Diagnostic:
    message, _, where = str(error).partition(" - at ")
    steps = _steps(where.strip("`"))
    unknown = re.match(r"Object contains unknown field `([^`]*)`", message)
    if unknown:
        field = unknown.group(1)
        node = _locate(root, steps, field)
        text = (
            f"unknown field `{field}` at {_field_path([*steps, field])}; "
            f"{_allowed_fields_hint(steps)}"
        )
    else:
        node = _locate(root, steps, None)
        text = f"{_humane(message)} at {_field_path(steps)}"
        if steps[:1] == ["budgets"] and steps[-1:] == ["amount"]:
            # An unquoted 5.5 is a YAML float, `5/day` the CLI's form: say what is wanted.
            text += '; write USD as a quoted decimal, e.g. `amount: "500.00"`'
    return _diagnostic(source, node, text)


def _allowed_fields_hint(steps: list[str | int]) -> str:
    structs: dict[int, type[msgspec.Struct]] = {0: PolicyFile, 2: RuleSet, 4: PolicyRule}
    if len(steps) == 3 and steps[-1] == "applies_to":
        struct: type[msgspec.Struct] | None = AppliesTo
    elif len(steps) == 3 and steps[-1] == "rate_limits":
        struct = RateCeilings
    elif len(steps) == 2 and steps[0] == "budgets":
        struct = Budget
    else:
        struct = structs.get(len(steps))
    if struct is None:
        return "remove it"
    names = ", ".join(f"`{name}`" for name in struct.__struct_fields__)
    return f"the fields allowed here are {names}"


def _diagnostic(source: Source, node: yaml.Node | None, message: str) -> Diagnostic:
    span = _span(source.name, node)
    return Diagnostic(
        code=YAML_POLICY_ERROR,
        message=message,
        file=source.name,
        line=span.line,
        column=span.column,
    )


def _fail(source: Source, diagnostics: list[Diagnostic]) -> PolicyError:
    return PolicyError(diagnostics, {source.name: source.text})


# ---- decoding ---------------------------------------------------------------------------


def _load_yaml(source: Source) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(source.text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source.text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "the text is not valid YAML"
        raise _fail(
            source,
            [
                Diagnostic(
                    code=YAML_POLICY_ERROR,
                    message=f"invalid YAML: {problem}",
                    file=source.name,
                    line=line,
                    column=column,
                )
            ],
        ) from None
    except yaml.YAMLError:
        raise _fail(source, [_diagnostic(source, None, "invalid YAML")]) from None
    return data, root


def _semantic_problems(
    source: Source, policy: PolicyFile, root: yaml.Node | None
) -> list[Diagnostic]:
    """What msgspec cannot express: exactly one target, exactly one rule type, unique ids."""
    problems: list[Diagnostic] = []
    seen_ids: set[str] = set()
    if not policy.rule_sets and not policy.budgets:
        problems.append(
            _diagnostic(source, root, "the file needs a `rule_sets:` or a `budgets:` list")
        )
    for i, budget in enumerate(policy.budgets):
        target = budget.applies_to
        if sum([target.key is not None, target.project is not None, target.all_keys]) != 1:
            problems.append(
                _diagnostic(
                    source,
                    _locate(root, ["budgets", i, "applies_to"], None),
                    f"`budgets[{i}].applies_to` must name exactly one of `key: <key id>`, "
                    "`project: <project id>` or `all_keys: true`",
                )
            )
        if budget.id is not None:
            if budget.id in seen_ids:
                problems.append(
                    _diagnostic(
                        source,
                        _locate(root, ["budgets", i, "id"], None),
                        f"budget id `{budget.id}` is used twice in this file; give each its own id",
                    )
                )
            seen_ids.add(budget.id)
    for i, rule_set in enumerate(policy.rule_sets):
        target = rule_set.applies_to
        named = [target.key is not None, target.project is not None, target.all_keys]
        if sum(named) != 1:
            node = _locate(root, ["rule_sets", i, "applies_to"], None)
            problems.append(
                _diagnostic(
                    source,
                    node,
                    f"`rule_sets[{i}].applies_to` must name exactly one of `key: <key id>`, "
                    "`project: <project id>` or `all_keys: true`",
                )
            )
        if not rule_set.rules and rule_set.rate_limits is None:
            problems.append(
                _diagnostic(
                    source,
                    _locate(root, ["rule_sets", i], None),
                    f"`rule_sets[{i}]` has neither `rules` nor `rate_limits`; give it at least "
                    "one rule or one rate limit",
                )
            )
        limits = rule_set.rate_limits
        if limits is not None and (limits.rpm, limits.tpm, limits.max_parallel) == (None,) * 3:
            problems.append(
                _diagnostic(
                    source,
                    _locate(root, ["rule_sets", i, "rate_limits"], None),
                    f"`rule_sets[{i}].rate_limits` sets no limit; give `rpm`, `tpm` or "
                    "`max_parallel` (whole numbers from 1), or remove it",
                )
            )
        for j, rule in enumerate(rule_set.rules):
            where: list[str | int] = ["rule_sets", i, "rules", j]
            kinds = [name for name, _ in rule.rule_types()]
            if len(kinds) != 1:
                found = ", ".join(f"`{k}`" for k in kinds) or "none"
                problems.append(
                    _diagnostic(
                        source,
                        _locate(root, where, None),
                        f"{_field_path(where)} must have exactly one rule type "
                        f"(one of {', '.join(f'`{t}`' for t in RULE_TYPES)}); found {found}",
                    )
                )
            if rule.id is not None:
                if rule.id in seen_ids:
                    problems.append(
                        _diagnostic(
                            source,
                            _locate(root, [*where, "id"], None),
                            f"rule id `{rule.id}` is used twice in this file; give each rule "
                            "its own id",
                        )
                    )
                seen_ids.add(rule.id)
    return problems


def decode(source: Source) -> tuple[PolicyFile, yaml.Node | None]:
    """The typed policy file and its YAML node tree; raises `PolicyError` on any problem."""
    data, root = _load_yaml(source)
    if data is None:
        raise _fail(
            source,
            [
                _diagnostic(
                    source, root, "the file is empty; it needs a `rule_sets:` or `budgets:` list"
                )
            ],
        )
    try:
        policy = msgspec.convert(data, PolicyFile)
    except msgspec.ValidationError as exc:
        raise _fail(source, [_validation_diagnostic(source, root, exc)]) from None
    problems = _semantic_problems(source, policy, root)
    if problems:
        raise _fail(source, problems)
    return policy, root


# ---- lowering ---------------------------------------------------------------------------


def _string(value: str, span: Span) -> ast.StringLit:
    return ast.StringLit(value=value, span=span)


def _condition(target: AppliesTo, span: Span) -> ast.Body:
    """The rule body selecting the target: `input.key.id == "..."` and the like."""
    if target.key is not None:
        field, wanted = "key", target.key
    elif target.project is not None:
        field, wanted = "project", target.project
    else:
        return ()
    ref = ast.Ref(
        head=ast.Var(name="input", span=span),
        path=(_string(field, span), _string("id", span)),
        span=span,
    )
    test = ast.BinOp(op="==", left=ref, right=_string(wanted, span), span=span)
    return (ast.Literal(expr=test, span=span),)


def _layer(target: AppliesTo) -> str:
    if target.key is not None:
        return "key"
    if target.project is not None:
        return "project"
    return "gateway"


def _rule_object(layer: str, rule: PolicyRule, span: Span) -> ast.ObjectTerm:
    rule_type, values = rule.rule_types()[0]
    fields: list[tuple[str, ast.Term]] = [
        ("layer", _string(layer, span)),
        ("id", _string(rule.id, span) if rule.id is not None else ast.NullLit(span=span)),
        ("type", _string(rule_type, span)),
        ("values", ast.ArrayTerm(items=tuple(_string(v, span) for v in values), span=span)),
        ("status", _string(rule.status, span)),
    ]
    items = tuple(ast.ObjectItem(key=_string(k, span), value=v, span=span) for k, v in fields)
    return ast.ObjectTerm(items=items, span=span)


def _ceiling_object(layer: str, limits: RateCeilings, span: Span) -> ast.ObjectTerm:
    def number(value: int | None) -> ast.Term:
        return (
            ast.NullLit(span=span) if value is None else ast.NumberLit(text=str(value), span=span)
        )

    fields: list[tuple[str, ast.Term]] = [
        ("layer", _string(layer, span)),
        ("rpm", number(limits.rpm)),
        ("tpm", number(limits.tpm)),
        ("max_parallel", number(limits.max_parallel)),
    ]
    items = tuple(ast.ObjectItem(key=_string(k, span), value=v, span=span) for k, v in fields)
    return ast.ObjectTerm(items=items, span=span)


def _budget_object(budget: Budget, span: Span) -> ast.ObjectTerm:
    target = budget.applies_to.key or budget.applies_to.project
    fields: list[tuple[str, ast.Term]] = [
        ("layer", _string(_layer(budget.applies_to), span)),
        ("target", _string(target, span) if target is not None else ast.NullLit(span=span)),
        ("id", _string(budget.id, span) if budget.id is not None else ast.NullLit(span=span)),
        ("amount", _string(budget.amount, span)),
        ("period", _string(budget.period, span)),
    ]
    items = tuple(ast.ObjectItem(key=_string(k, span), value=v, span=span) for k, v in fields)
    return ast.ObjectTerm(items=items, span=span)


def _budget_module(source: Source, policy: PolicyFile, root: yaml.Node | None) -> ast.Module:
    rules: list[ast.Rule] = []
    for i, budget in enumerate(policy.budgets):
        span = _span(source.name, _locate(root, ["budgets", i], None))
        rules.append(
            ast.PartialSetRule(
                name=("budgets",), element=_budget_object(budget, span), body=(), span=span
            )
        )
    module_span = _span(source.name, root)
    imports = (ast.Import(path=("rego", "v1"), span=module_span),)
    return ast.Module(
        package=BUDGETS_PACKAGE, imports=imports, rules=tuple(rules), span=module_span
    )


def lower(source: Source) -> list[ast.Module]:
    """The `*.iam.yaml` text as Rego modules of `package gateway.iam_policies` (rule sets)
    and `package gateway.budget_policies` (budgets)."""
    policy, root = decode(source)
    modules = [_budget_module(source, policy, root)] if policy.budgets else []
    if not policy.rule_sets:
        return modules
    rules: list[ast.Rule] = []
    for i, rule_set in enumerate(policy.rule_sets):
        target_span = _span(source.name, _locate(root, ["rule_sets", i, "applies_to"], None))
        body = _condition(rule_set.applies_to, target_span)
        layer = _layer(rule_set.applies_to)
        if rule_set.rate_limits is not None:
            span = _span(source.name, _locate(root, ["rule_sets", i, "rate_limits"], None))
            rules.append(
                ast.PartialSetRule(
                    name=("rate_ceilings",),
                    element=_ceiling_object(layer, rule_set.rate_limits, span),
                    body=body,
                    span=span,
                )
            )
        for j, rule in enumerate(rule_set.rules):
            span = _span(source.name, _locate(root, ["rule_sets", i, "rules", j], None))
            rules.append(
                ast.PartialSetRule(
                    name=("rules",),
                    element=_rule_object(layer, rule, span),
                    body=body,
                    span=span,
                )
            )
    module_span = _span(source.name, root)
    imports = (ast.Import(path=("rego", "v1"), span=module_span),)
    return [
        ast.Module(package=LOWERED_PACKAGE, imports=imports, rules=tuple(rules), span=module_span),
        *modules,
    ]
