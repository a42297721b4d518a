# The gateway's default policy.
#
# It answers one question per request, `data.gateway.decision`, and the proxy
# acts on the answer verbatim (docs/architecture.md §4). The checks run in the
# contract's order (spec §3); the first that fails answers:
#
#   1. no token                            401
#   2. unknown or disabled key             401
#   2b. expired key, or a rotated-out token past its grace period   401 (same message)
#   3. usage limit reached                 401
#   3b. key period budget reached          401
#   3c. project period budget reached      403
#   3r. a rate limit of the key, then of its project, is reached   429
#       (requests per minute, tokens per minute, parallel requests)
#   4. project archived                    410
#   5. request body invalid                400
#   6. model not in the catalog            400
#   7. IAM rules deny                      403
#   7b. a custom rule denies (custom_deny) 403 unless the rule says otherwise
#   7c. no allowed provider serves the request's API   400
#   8. no usable credential for any allowed provider   400 / 402
#
# Inputs: `input` (schemas/input.schema.json), `data.catalog`
# (policies/catalog.yaml) and IAM rules from three places: the key store
# (`input.key.iam_rules`), the project (`input.project.iam_rules`) and
# `*.iam.yaml` files, which are lowered into `data.gateway.iam_policies.rules`.
#
# To add your own reasons to deny without editing this file, see
# policies/README.md ("Custom rules").
package gateway

import rego.v1

# ---------------------------------------------------------------------------
# The decision: the order of the checks is the order of this else-chain.
# ---------------------------------------------------------------------------

decision := denied(401, "Unauthorized: No API key provided. Expected 'Authorization: Bearer your-api-token' header or 'x-api-key: your-api-token' header", []) if {
	no_token
} else := denied(401, "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted or disabled. Go to the LLMGateway 'API Keys' page to generate a new token.", []) if {
	key_unusable
} else := denied(401, invalid_token_message, [{"code": "expired", "rule_id": null, "message": sprintf("key %s expired at %s", [input.key.id, input.key.expires_at])}]) if {
	key_expired
} else := denied(401, invalid_token_message, [{"code": "token_rotated", "rule_id": null, "message": sprintf("the token was rotated out of key %s; its grace period ended at %s", [input.key.id, input.key.token_expires_at])}]) if {
	rotated_token_expired
} else := denied(401, "Unauthorized: LLMGateway API key reached its usage limit.", []) if {
	usage_limit_reached
} else := denied(401, "Unauthorized: LLMGateway API key reached its current period usage limit.", [budget_reason("period_budget", "key", input.key)]) if {
	key_period_budget_reached
} else := denied(403, "Project has reached its period spend budget.", [budget_reason("project_period_budget", "project", input.project)]) if {
	project_period_budget_reached
} else := denied(429, rate_limited.message, [rate_limited]) if {
	rate_limited
} else := denied(410, "Project has been archived and is no longer accessible", []) if {
	project_archived
} else := denied(400, body_problem, []) if {
	body_problem
} else := denied(400, sprintf("Unsupported model: %s", [input.request.model]), []) if {
	unsupported_model
} else := denied(403, concat("", ["Access denied: ", iam_reasons[0].message]), iam_reasons) if {
	count(iam_reasons) > 0
} else := denied(custom_denial.status, custom_denial.message, custom_reasons) if {
	custom_denial
} else := denied(400, unserved_api_message, []) if {
	unserved_api_message
} else := denied(400, no_provider_message, []) if {
	no_provider_message
} else := denied(402, insufficient_credits_message, []) if {
	insufficient_credits_message
} else := models_listed if {
	input.request.operation == "models.list"
} else := {
	"allow": true,
	"status": 200,
	"message": "",
	"model": model_id,
	"provider": chosen.provider,
	"provider_model_id": data.catalog.models[model_id].providers[chosen.provider].model_id,
	"billing": chosen.billing,
	"reasons": [],
	"rate_limits": decision_rate_limits,
}

# A denial in the decision's shape.
denied(status, message, reasons) := {
	"allow": false,
	"status": status,
	"message": message,
	"model": model_id,
	"provider": null,
	"provider_model_id": null,
	"billing": null,
	"reasons": reasons,
}

# ---------------------------------------------------------------------------
# Checks 1-3: authentication. They come first so that an anonymous caller
# learns nothing about models or policies.
# ---------------------------------------------------------------------------

# Check 1: a token was sent in `Authorization: Bearer` or `x-api-key`.
no_token if not input.request.token_present

# Check 2: the token names no key, or the key is disabled or deleted.
key_unusable if input.key == null

key_unusable if input.key.status != "active"

# Check 2b: an expired key is refused exactly like a disabled one (the same
# documented message; the decision's reason, and so the decision log, says
# "expired"). The key expires at `expires_at`: a request at that second or later
# is refused. A time that cannot be read counts as expired (fail closed).
key_expired if {
	input.key.expires_at != null
	not before_key_expiry
}

# Check 2b': after `gateway keys rotate`, the previous token works only until its
# grace period ends (`token_expires_at`, set only when that token was presented).
rotated_token_expired if {
	input.key.token_expires_at != null
	not before_token_expiry
}

# The request's time is before the key's expiry, both compared as instants (not as
# text: offsets may differ). The times the gateway writes (`2026-11-27T10:00:00Z`:
# UTC, whole seconds) order as text exactly as instants do, so when both have that
# shape they are compared as text: parsing both cost more than the rest of checks
# 1-3 together. Otherwise both are parsed (the `else`); a time that cannot be
# parsed leaves the rule undefined, so it counts as expired (fail closed). The
# shape check (`utc_second_shape`) vouches only for valid instants: a day after the
# 28th (which not every month has) or a year the parser cannot represent is parsed.
# Written out per check rather than as a function of two times: a call costs more
# than the comparison.
before_key_expiry := input.request.time < input.key.expires_at if {
	regex.match(utc_second_shape, input.request.time)
	regex.match(utc_second_shape, input.key.expires_at)
} else := time.parse_rfc3339_ns(input.request.time) < time.parse_rfc3339_ns(input.key.expires_at)

# The same for the presented token's end of grace.
before_token_expiry := input.request.time < input.key.token_expires_at if {
	regex.match(utc_second_shape, input.request.time)
	regex.match(utc_second_shape, input.key.token_expires_at)
} else := time.parse_rfc3339_ns(input.request.time) < time.parse_rfc3339_ns(input.key.token_expires_at)

# A time in the gateway's own format whose every field is valid whatever the month
# and year: years 1700-2261 (within what parse_rfc3339_ns represents), days 01-28.
utc_second_shape := `^((1[7-9]|2[01])[0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$`

invalid_token_message := "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."

# Check 3: a key with a usage limit is blocked once usage reaches it. Money is
# compared as exact decimals; a limit of "0" blocks everything, no limit never blocks.
usage_limit_reached if {
	input.key.usage_limit != null
	to_number(input.key.usage) >= to_number(input.key.usage_limit)
}

# Check 3b: a key with a period budget (an amount per calendar hour, day, week or
# month) is blocked once the current window's settled usage reaches it; the next
# window starts from zero. The proxy computes the window for the request's time and
# reads its usage (`input.key.period_budget`); in-flight requests never refuse
# here, admission waits for them. LLM Gateway's wording for its period limits.
# Written out for the key and for the project rather than as one function of the
# subject: the call and its `object.get` cost more than the test (every request).
key_period_budget_reached if {
	input.key.period_budget != null
	to_number(input.key.period_budget.usage) >= to_number(input.key.period_budget.amount)
}

# Check 3c: the same for the project's budget, which all its keys share. A 403: the
# key is fine, the project it belongs to has spent its allowance for the period.
project_period_budget_reached if {
	input.project.period_budget != null
	to_number(input.project.period_budget.usage) >= to_number(input.project.period_budget.amount)
}

# The decision log's reason for a budget refusal: which window, how much, when it resets.
budget_reason(code, what, subject) := {
	"code": code,
	"rule_id": null,
	"message": sprintf("%s %s used %s of its %s per %s in the window from %s; the next window starts at %s", [
		what,
		subject.id,
		budget.usage,
		budget.amount,
		budget.period,
		budget.window_start,
		budget.resets_at,
	]),
} if {
	budget := subject.period_budget
}

# Period budgets set as policy: `budgets:` in *.iam.yaml files (lowered into
# data.gateway.budget_policies.budgets) or the same set written in Rego. For a key,
# a budget naming that key wins over one for all keys; when several apply at one
# layer, the smallest amount (then the shorter period) is the policy's ceiling.
#
# The proxy asks for `effective_budgets` before it reads the budgets' windows: for
# the key and for the project, the budget that admission holds and checks 3b/3c
# decide, of the one stored in the key store (`input.key.stored_budget`,
# `gateway keys set-budget`) and the policy files' (`policy_budgets`). Both are
# ceilings, so neither may loosen the other: for one period, the smaller amount
# holds both at every moment. Budgets of different periods cannot be held together
# (the store counts one window per key or project and request): the policy file's
# holds then, and the CLI, admin API and dashboard say the stored one is not held.
effective_budgets := {
	"key": effective_budget(stored_budget("key"), policy_budgets.key),
	"project": effective_budget(stored_budget("project"), policy_budgets.project),
}

stored_budget(subject) := object.get(input, [subject, "stored_budget"], null)

effective_budget(stored, from_policy) := null if {
	stored == null
	from_policy == null
} else := shown_budget(stored, "store", null) if {
	from_policy == null
} else := shown_budget(from_policy, "policy", object.get(from_policy, "id", null)) if {
	stored == null
} else := shown_budget(stored, "store", null) if {
	stored.period == from_policy.period
	to_number(stored.amount) <= to_number(from_policy.amount)
} else := shown_budget(from_policy, "policy", object.get(from_policy, "id", null))

# What `gateway keys show`, `projects show`, the admin API and the dashboard show as
# the controls that apply to a key and its project (asked with the facts a request
# would carry): the budgets above and the rate limits admission would enforce, each
# the stored one lowered by the policy files' ceilings.
effective_controls := {
	"budgets": effective_budgets,
	"rate_limits": {"key": limits_or_null(key_rate_limits), "project": limits_or_null(project_rate_limits)},
}

# A budget as `effective_budgets` answers it: where it comes from (`store` or
# `policy`) and the policy budget's id (null when it has none or is stored).
shown_budget(budget, source, id) := {"amount": budget.amount, "period": budget.period, "source": source, "id": id}

policy_budgets := {
	"key": chosen_budget(key_policy_budgets),
	"project": chosen_budget(project_policy_budgets),
}

own_key_policy_budgets contains budget if {
	some budget in data.gateway.budget_policies.budgets
	budget.layer == "key"
	budget.target == input.key.id
}

all_keys_policy_budgets contains budget if {
	some budget in data.gateway.budget_policies.budgets
	budget.layer == "gateway"
}

key_policy_budgets := own_key_policy_budgets if {
	count(own_key_policy_budgets) > 0
} else := all_keys_policy_budgets

project_policy_budgets contains budget if {
	some budget in data.gateway.budget_policies.budgets
	budget.layer == "project"
	budget.target == input.project.id
}

budget_period_rank := {"hour": 0, "day": 1, "week": 2, "month": 3}

chosen_budget(budgets) := null if {
	count(budgets) == 0
} else := ranked[0][2] if {
	ranked := sort([[to_number(b.amount), budget_period_rank[b.period], b] | some b in budgets])
}

# ---------------------------------------------------------------------------
# Check 3r: rate limits (issue 13). A key and its project may each set requests
# per minute (`rpm`), tokens per minute (`tpm`, prompt + completion) and requests
# in flight (`max_parallel`); the windows slide: what was admitted in the 60 s
# before the request counts. The store applies the same rule atomically when it
# admits a request (proxy/store/common.py `rate_limit_refusal`); the counts are
# null until it has (the first decision), and a request it refuses is decided
# again with the counts it saw and the request's token bound. The key's limits
# are checked first, then the project's; for each, requests, tokens, parallel.
# Messages follow OpenAI's ("Rate limit reached for ... on requests per min").
# ---------------------------------------------------------------------------

# Rate limits set as policy (`rate_limits:` in *.iam.yaml, lowered into
# data.gateway.iam_policies.rate_ceilings, or Rego adding to that set) are
# ceilings over the store's: for each limit the lowest applies. Layer `key` is one
# key's, `gateway` every key's own window, `project` the project's shared window.
key_ceilings := [ceiling | some ceiling in data.gateway.iam_policies.rate_ceilings; ceiling.layer != "project"]

project_ceilings := [ceiling | some ceiling in data.gateway.iam_policies.rate_ceilings; ceiling.layer == "project"]

key_rate_limits := effective_limits(key_window, key_ceilings)

project_rate_limits := effective_limits(project_window, project_ceilings)

# The key's and the project's limits and window as the input gives them (null: none).
default key_window := null

key_window := input.key.rate_limits

default project_window := null

project_window := input.project.rate_limits

rate_limit_names := ["rpm", "tpm", "max_parallel"]

effective_limits(window, ceilings) := own_limits(window) if {
	count(ceilings) == 0
} else := {name: lowest_limit(window, ceilings, name) | some name in rate_limit_names}

# (The proxy always writes all three limits; an input written by hand may leave some out.)
own_limits(window) := {"rpm": rpm, "tpm": tpm, "max_parallel": max_parallel} if {
	rpm := window.rpm
	tpm := window.tpm
	max_parallel := window.max_parallel
} else := {"rpm": object.get(window, "rpm", null), "tpm": object.get(window, "tpm", null), "max_parallel": object.get(window, "max_parallel", null)} if {
	window != null
} else := {"rpm": null, "tpm": null, "max_parallel": null}

lowest_limit(window, ceilings, name) := min(values) if {
	values := [value |
		some value in array.concat([limit_of(window, name)], [ceiling[name] | some ceiling in ceilings])
		value != null
	]
	count(values) > 0
} else := null

limit_of(window, name) := window[name] if window != null

else := null

counts_of(window) := window if window != null

else := {}

# A subject's window as checked: the store's counts (null until counted) under the
# effective limits; null when no limit applies.
checked_window(window, limits) := object.union(counts_of(window), limits) if {
	some name in rate_limit_names
	limits[name] != null
} else := null

# The subjects with rate limits, in the order they are checked.
rate_subjects := [subject |
	some subject in [
		{"kind": "API key", "id": object.get(input, ["key", "id"], null), "window": checked_window(key_window, key_rate_limits)},
		{"kind": "project", "id": object.get(input, ["project", "id"], null), "window": checked_window(project_window, project_rate_limits)},
	]
	subject.window != null
]

# The first rate limit reached, as a decision reason (looked for only when the key,
# its project or a policy file sets rate limits: most requests have none).
rate_limited := [reason | some subject in rate_subjects; reason := rate_refusal(subject)][0] if {
	rate_limits_set
	not key_window_alone_uncounted
	rate_refusal_possible
}

# Without the store's counts (the first decision of a request) only a request
# whose token bound exceeds a tokens-per-minute limit can be refused here: the
# other checks need the counts. This only saves the work of looking, on every
# request of a rate-limited key. It may say "possible" when no refusal follows
# (rate_limited then finds none), never the reverse: with policy ceilings it always
# looks; without them a window's own limits are its effective ones, so those are not
# worked out just for this check. A window is read only when it is set (reading a
# field of null costs more here than the test), and without a token bound the
# request counts 0 tokens, so only a negative `tpm` is exceeded by it.
rate_refusal_possible if input.request.token_bound != null

rate_refusal_possible if rate_ceilings_set

rate_refusal_possible if {
	key_window != null
	key_window_may_refuse
}

rate_refusal_possible if {
	project_window != null
	project_window_may_refuse
}

# The proxy's usual first decision of a key with limits of its own: no policy
# ceilings, no project window, no token bound and no counts yet, and a `tpm` of 0 or
# more, or none. Then no rate refusal can follow: told in one rule body (else, the
# same without `tpm`), which costs less than the guard's rules each finding nothing.
key_window_alone_uncounted := true if {
	not rate_ceilings_set
	input.project.rate_limits == null
	input.key.rate_limits.tpm >= 0
	input.request.token_bound == null
	input.key.rate_limits.requests_in_window == null
	input.key.rate_limits.tokens_in_window == null
	input.key.rate_limits.parallel == null
} else := true if {
	not rate_ceilings_set
	input.project.rate_limits == null
	input.key.rate_limits.tpm == null
	input.request.token_bound == null
	input.key.rate_limits.requests_in_window == null
	input.key.rate_limits.tokens_in_window == null
	input.key.rate_limits.parallel == null
}

# The key's window, set, holds counts or a `tpm` below 0 (see above).
key_window_may_refuse if key_window.requests_in_window != null

key_window_may_refuse if key_window.tokens_in_window != null

key_window_may_refuse if key_window.parallel != null

key_window_may_refuse if {
	key_window.tpm != null
	key_window.tpm < 0
}

# The same for the project's window.
project_window_may_refuse if project_window.requests_in_window != null

project_window_may_refuse if project_window.tokens_in_window != null

project_window_may_refuse if project_window.parallel != null

project_window_may_refuse if {
	project_window.tpm != null
	project_window.tpm < 0
}

rate_limits_set if input.key.rate_limits != null

rate_limits_set if input.project.rate_limits != null

rate_limits_set if rate_ceilings_set

rate_ceilings_set if count(data.gateway.iam_policies.rate_ceilings) > 0

# What an allowed request's admission enforces (the store applies the same rule):
# the effective limits of the key's and the project's windows, null without any.
# Without policy ceilings those are each window's own limits, taken directly; for the
# usual key with limits of its own (no project window, an `rpm`) written out here,
# without asking key_own_limits / project_own_limits.
decision_rate_limits := {"key": null, "project": null} if {
	not rate_limits_set
} else := {"key": {"rpm": input.key.rate_limits.rpm, "tpm": input.key.rate_limits.tpm, "max_parallel": input.key.rate_limits.max_parallel}, "project": null} if {
	key_window_alone_uncounted
	input.key.rate_limits.rpm != null
} else := {"key": key_own_limits, "project": project_own_limits} if {
	not rate_ceilings_set
} else := {"key": limits_or_null(key_rate_limits), "project": limits_or_null(project_rate_limits)}

# limits_or_null(own_limits(window)) of the key's and the project's window, reading
# the proxy's usual window (all three limits present, one of them set) without
# building it twice. Rules, not one function: a call, and comparing objects, cost
# more here than the tests themselves. The object is each branch's value itself, not
# a `limits := …` assignment in its body: the engine runs such an assignment and the
# read of `limits` as calls of their own.
key_own_limits := null if {
	key_window == null
} else := {"rpm": key_window.rpm, "tpm": key_window.tpm, "max_parallel": key_window.max_parallel} if {
	key_window.rpm != null
} else := {"rpm": key_window.rpm, "tpm": key_window.tpm, "max_parallel": key_window.max_parallel} if {
	key_window.tpm != null
} else := {"rpm": key_window.rpm, "tpm": key_window.tpm, "max_parallel": key_window.max_parallel} if {
	key_window.max_parallel != null
} else := limits_or_null(own_limits(key_window))

project_own_limits := null if {
	project_window == null
} else := {"rpm": project_window.rpm, "tpm": project_window.tpm, "max_parallel": project_window.max_parallel} if {
	project_window.rpm != null
} else := {"rpm": project_window.rpm, "tpm": project_window.tpm, "max_parallel": project_window.max_parallel} if {
	project_window.tpm != null
} else := {"rpm": project_window.rpm, "tpm": project_window.tpm, "max_parallel": project_window.max_parallel} if {
	project_window.max_parallel != null
} else := limits_or_null(own_limits(project_window))

limits_or_null(limits) := limits if {
	some name in rate_limit_names
	limits[name] != null
} else := null

# The tokens the request reserves (0 until the proxy knows its bound).
default request_tokens := 0

request_tokens := input.request.token_bound if input.request.token_bound != null

# Requests per minute: refused while the window already holds `rpm` requests.
rpm_reached(window) if {
	window.rpm != null
	window.requests_in_window != null
	window.requests_in_window >= window.rpm
}

# A request whose bound alone exceeds the tokens per minute can never be admitted.
request_too_large(window) if {
	window.tpm != null
	request_tokens > window.tpm
}

# Tokens per minute: refused when the window's tokens plus the request's bound
# would exceed `tpm`.
tpm_reached(window) if {
	window.tpm != null
	window.tokens_in_window != null
	window.tokens_in_window + request_tokens > window.tpm
}

# Parallel requests: refused while `max_parallel` requests are in flight.
max_parallel_reached(window) if {
	window.max_parallel != null
	window.parallel != null
	window.parallel >= window.max_parallel
}

# "Please try again in 12s." when the window says when room frees up.
retry_text(window) := sprintf(" Please try again in %vs.", [window.retry_after_seconds]) if {
	window.retry_after_seconds != null
} else := ""

# For tokens, when every token now in the window has left it (the newest request
# leaves): the oldest leaving may free too few for the request, and which request
# holds how many tokens is not in the window's figures. The wait the gateway also
# sends as Retry-After.
tokens_retry_text(window) := sprintf(" Please try again in %vs.", [seconds]) if {
	seconds := object.get(window, "tokens_retry_after_seconds", null)
	seconds != null
} else := retry_text(window)

rate_refusal(subject) := {"code": "rate_limit_requests", "rule_id": null, "message": sprintf("Rate limit reached for %s %s on requests per min (RPM): Limit %v, Used %v, Requested 1.%s", [subject.kind, subject.id, subject.window.rpm, subject.window.requests_in_window, retry_text(subject.window)])} if {
	rpm_reached(subject.window)
} else := {"code": "rate_limit_tokens", "rule_id": null, "message": sprintf("Request too large for %s %s on tokens per min (TPM): Limit %v, Requested %v. The input or output tokens must be reduced in order to run successfully.", [subject.kind, subject.id, subject.window.tpm, request_tokens])} if {
	request_too_large(subject.window)
} else := {"code": "rate_limit_tokens", "rule_id": null, "message": sprintf("Rate limit reached for %s %s on tokens per min (TPM): Limit %v, Used %v, Requested %v.%s", [subject.kind, subject.id, subject.window.tpm, subject.window.tokens_in_window, request_tokens, tokens_retry_text(subject.window)])} if {
	tpm_reached(subject.window)
} else := {"code": "max_parallel", "rule_id": null, "message": sprintf("Too many parallel requests for %s %s: Limit %v, In flight %v. Please try again when one of them has finished.", [subject.kind, subject.id, subject.window.max_parallel, subject.window.parallel])} if {
	max_parallel_reached(subject.window)
}

# ---------------------------------------------------------------------------
# Checks 4-6: the project and the request itself.
# ---------------------------------------------------------------------------

# Check 4: an archived project answers 410 to every request.
project_archived if input.project.status == "deleted"

# Check 5: the proxy parses the body and reports what is wrong; the policy only
# decides where that answer sits in the order of checks.
body_problem := input.request.body_error if {
	input.request.body_error != null
} else := "Invalid request body: the field `model` is required and must be a string." if {
	input.request.operation != "models.list"
	input.request.model == null
}

# Check 6: the model must be in the catalog, and an explicit `provider/model`
# must name a provider that serves it.
unsupported_model if {
	input.request.operation != "models.list"
	not target
}

# What the request asks for: a catalog model id and, with the `provider/model`
# syntax, an explicit provider. A catalog id containing `/` is taken as a whole.
target := {"model": input.request.model, "provider": null} if {
	data.catalog.models[input.request.model]
} else := {"model": model, "provider": provider} if {
	is_string(input.request.model)
	slash := indexof(input.request.model, "/")
	slash > 0
	provider := substring(input.request.model, 0, slash)
	model := substring(input.request.model, slash + 1, -1)
	data.catalog.models[model].providers[provider]
}

# The catalog model id asked for; null for the models list or an unknown model.
default model_id := null

model_id := target.model

# The provider named with `provider/model`, if any.
default explicit_provider := null

explicit_provider := target.provider

# ---------------------------------------------------------------------------
# Check 7: IAM rules (spec §4).
#
# Rules come in layers: `gateway` (iam.yaml rule sets for all keys), `project`
# (the project's rules and iam.yaml rule sets for the project) and `key` (the
# key store's rules and iam.yaml rule sets for the key). Within a layer, allow
# rules of one type are OR-ed, different types AND-ed, deny rules applied after
# allow rules. Every layer must allow, so the project is a ceiling the key's
# rules can only narrow. Inactive rules are ignored; no rules allow everything.
# ---------------------------------------------------------------------------

layer_rank := {"gateway": 0, "project": 1, "key": 2}

# Every active rule with its layer.
active_rules contains object.union(rule, {"layer": "key"}) if {
	some rule in input.key.iam_rules
	rule.status != "inactive"
}

active_rules contains object.union(rule, {"layer": "project"}) if {
	some rule in input.project.iam_rules
	rule.status != "inactive"
}

active_rules contains rule if {
	some rule in gateway_active_rules
}

# The active rules of the iam.yaml files, which carry their layer. They depend on
# data only, so the engine computes them once per loaded policy, not per request.
gateway_active_rules contains rule if {
	some rule in data.gateway.iam_policies.rules
	rule.status != "inactive"
}

# Allow rules by layer, for the layers that have any of the type: each such
# layer must allow. (Complete rules, so they are computed once per request.)
model_allow_layers := allow_layers("allow_models")

provider_allow_layers := allow_layers("allow_providers")

operation_allow_layers := allow_layers("allow_operations")

# The operation IAM rules and API routing know a request by: counting the tokens of a
# Messages request (free) is part of the Messages API.
rule_operation := "messages" if {
	input.request.operation == "messages.count_tokens"
} else := input.request.operation

allow_layers(type) := {layer: rules |
	some allow in active_rules
	allow.type == type
	layer := allow.layer
	rules := [rule | some rule in active_rules; rule.layer == layer; rule.type == type]
}

# Deny rules of each type, whatever their layer: any one of them denies.
model_deny_rules := [rule | some rule in active_rules; rule.type == "deny_models"]

provider_deny_rules := [rule | some rule in active_rules; rule.type == "deny_providers"]

operation_deny_rules := [rule | some rule in active_rules; rule.type == "deny_operations"]

# Model ids match rule values as globs (`gpt-4*`); no delimiter, so `*` spans dots.
model_matches(rule, model) if {
	some pattern in rule.values
	glob.match(pattern, null, model)
}

any_model_match(rules, model) if {
	some rule in rules
	model_matches(rule, model)
}

# Providers and operations match rule values exactly.
any_value(rules, value) if {
	some rule in rules
	value in rule.values
}

# A model passes when every layer with allow_models rules lists it and no
# deny_models rule matches it.
model_permitted(model) if {
	every _, rules in model_allow_layers {
		any_model_match(rules, model)
	}
	not any_model_match(model_deny_rules, model)
}

# The same for a provider and the provider rules.
provider_permitted(provider) if {
	every _, rules in provider_allow_layers {
		any_value(rules, provider)
	}
	not any_value(provider_deny_rules, provider)
}

# The providers serving the requested model that the IAM rules leave (all of
# them when there is no active rule, the common case, which skips the checks).
permitted_model_providers := object.get(catalog_model_providers, model_id, set()) if {
	count(active_rules) == 0
} else := {provider |
	some provider, _ in data.catalog.models[model_id].providers
	provider_permitted(provider)
}

# Each catalog model's providers. Data only: computed once per loaded policy.
catalog_model_providers := {model: {provider | some provider, _ in entry.providers} |
	some model, entry in data.catalog.models
}

# The id of the rule behind an allow-list reason: named when the layer has exactly one.
single_rule_id(rules) := rules[0].id if count(rules) == 1

else := null

# Each reason is [sort rank, message, rule id, code]; the rank orders reasons
# first by rule type (as the contract lists them), then by layer (ceiling first).
# Without any active rule only the catalog can leave a model with no provider,
# so the rule-by-rule reasons are not computed (the common case, and most of
# the cost of a decision otherwise).
reason_entries := rule_reason_entries | provider_reason_entries if count(active_rules) > 0

else := provider_reason_entries

rule_reason_entries contains [layer_rank[layer], sprintf("Model %s is not in the allowed models list", [model_id]), single_rule_id(rules), "allow_models"] if {
	model_id != null
	some layer, rules in model_allow_layers
	not any_model_match(rules, model_id)
}

rule_reason_entries contains [10 + layer_rank[rule.layer], sprintf("Model %s is in the denied models list", [model_id]), rule.id, "deny_models"] if {
	model_id != null
	some rule in model_deny_rules
	model_matches(rule, model_id)
}

rule_reason_entries contains [20 + layer_rank[layer], sprintf("Operation %s is not in the allowed operations list", [rule_operation]), single_rule_id(rules), "allow_operations"] if {
	some layer, rules in operation_allow_layers
	not any_value(rules, rule_operation)
}

rule_reason_entries contains [30 + layer_rank[rule.layer], sprintf("Operation %s is in the denied operations list", [rule_operation]), rule.id, "deny_operations"] if {
	some rule in operation_deny_rules
	rule_operation in rule.values
}

rule_reason_entries contains [40 + layer_rank[layer], sprintf("Provider %s is not in the allowed providers list", [explicit_provider]), single_rule_id(rules), "allow_providers"] if {
	explicit_provider != null
	some layer, rules in provider_allow_layers
	not any_value(rules, explicit_provider)
}

rule_reason_entries contains [50 + layer_rank[rule.layer], sprintf("Provider %s is in the denied providers list", [explicit_provider]), rule.id, "deny_providers"] if {
	explicit_provider != null
	some rule in provider_deny_rules
	explicit_provider in rule.values
}

provider_reason_entries contains [60, sprintf("No providers are allowed for model %s after applying IAM rules.", [model_id]), null, "no_provider"] if {
	model_id != null
	explicit_provider == null
	count(permitted_model_providers) == 0
}

# The IAM reasons in order; the first one answers.
iam_reasons := [{"code": entry[3], "rule_id": entry[2], "message": entry[1]} | some entry in sort(reason_entries)]

# ---------------------------------------------------------------------------
# Check 7b: custom rules. Any file in the policy directory may add
#   custom_deny contains {"message": "...", "status": 403} if { ... }
# to `package gateway` ("status" is optional, 403 by default). They are asked
# after the built-in IAM rules and before credentials; when several deny, the
# first by message text answers.
# ---------------------------------------------------------------------------

custom_entries := sort([[object.get(entry, "status", 403), entry.message] | some entry in data.gateway.custom_deny])

custom_denial := {"status": custom_entries[0][0], "message": custom_entries[0][1]} if count(custom_entries) > 0

custom_reasons := [{"code": "custom", "rule_id": null, "message": entry[1]} | some entry in custom_entries]

# ---------------------------------------------------------------------------
# Check 8: credentials (spec §5). The project's mode decides which providers
# are candidates and who pays.
# ---------------------------------------------------------------------------

default project_mode := "hybrid"

project_mode := input.project.mode if input.project.mode != null

project_key_providers := {provider | some provider in input.project.provider_keys}

# The mock provider needs no credential; the gateway always counts as holding one.
gateway_providers := {provider | some provider in input.gateway.credentialed_providers} | {"mock"}

# How a request to `provider` would be paid under the project's mode, if at all:
# the project's own key where the mode allows it (preferred in hybrid), else
# the gateway's credential billed to credits. In api-keys mode the mock provider
# is a candidate too; it never touches the organization's credits there.
billing_for(provider) := "provider-key" if {
	project_mode != "credits"
	provider in project_key_providers
} else := "credits" if {
	project_mode != "api-keys"
	provider in gateway_providers
} else := "provider-key" if {
	provider == "mock"
}

# The providers the request may go to after IAM: the explicit one or every
# permitted provider of the model.
requested_providers := {explicit_provider} if explicit_provider != null

else := permitted_model_providers

# Check 7c: a provider serves only the APIs the catalog lists for it (`apis`;
# without the field, the OpenAI-compatible ones), so an Anthropic Messages request
# goes only to a provider that speaks that API natively.
default_apis := ["chat.completions", "completions", "embeddings"]

provider_apis(provider) := data.catalog.providers[provider].apis if {
	data.catalog.providers[provider].apis
} else := default_apis

# The requested providers that serve the request's API. Without active rules and
# without an explicit provider (the common case) they are all of the model's
# providers serving it; otherwise those of the requested ones (an explicit provider
# always serves the model, check 6).
api_providers := model_api_providers if {
	explicit_provider == null
	count(active_rules) == 0
} else := model_api_providers & requested_providers

# The model's providers that serve the request's API (none for an unknown model).
model_api_providers := object.get(catalog_api_providers, [model_id, rule_operation], set())

# For each catalog model and API, the model's providers serving that API. Data
# only: computed once per loaded policy, not per request.
catalog_api_providers := {model: {operation: providers |
	some operation in catalog_apis
	providers := {provider | some provider, _ in entry.providers; operation in provider_apis(provider)}
} |
	some model, entry in data.catalog.models
}

# Every API some catalog model's provider serves.
catalog_apis := {operation |
	some provider in catalog_providers
	some operation in provider_apis(provider)
}

api_paths := {
	"chat.completions": "/v1/chat/completions",
	"completions": "/v1/completions",
	"embeddings": "/v1/embeddings",
	"responses": "/v1/responses",
	"messages": "/v1/messages",
}

unserved_api_message := sprintf("Model %s is not served through %s by any of its allowed providers; they serve %s", [model_id, api_paths[rule_operation], served_paths]) if {
	model_id != null
	count(api_providers) == 0
	count(requested_providers) > 0
}

served_paths := concat(", ", sort({api_paths[operation] |
	some provider in requested_providers
	some operation in provider_apis(provider)
	api_paths[operation]
}))

# Candidates as [preference, price, provider, billing]: project keys first, then
# the cheapest, then by name, so the choice is stable.
candidates := sort([[billing_rank[billing], price(model_id, provider), provider, billing] |
	some provider in api_providers
	billing := billing_for(provider)
])

billing_rank := {"provider-key": 0, "credits": 1}

price(model, provider) := to_number(entry.input_price) + to_number(entry.output_price) if {
	entry := data.catalog.models[model].providers[provider]
}

chosen := {"provider": candidates[0][2], "billing": candidates[0][3]} if count(candidates) > 0

# Check 8a: no provider can be paid for under the project's mode.
no_provider_message := sprintf("No provider key set for any of the providers that support model %s. Please add the provider key in the settings or switch the project mode to credits or hybrid.", [model_id]) if {
	model_id != null
	count(candidates) == 0
	project_mode == "api-keys"
} else := sprintf("No available provider could be found for model %s", [model_id]) if {
	model_id != null
	count(candidates) == 0
}

# Check 8b: a request billed to credits needs the organization's credits above zero.
insufficient_credits_message := sprintf("Organization %s has insufficient credits", [input.organization.id]) if {
	chosen.billing == "credits"
	project_mode == "credits"
	to_number(input.organization.credits) <= 0
} else := "No API key set for provider and organization has insufficient credits" if {
	chosen.billing == "credits"
	to_number(input.organization.credits) <= 0
}

# ---------------------------------------------------------------------------
# Models endpoint (spec §7): the catalog models the key's IAM rules and the
# project's mode allow, after checks 1-4 and the operation rules.
# ---------------------------------------------------------------------------

# Every provider serving some catalog model.
catalog_providers := {provider | some _, entry in data.catalog.models; some provider, _ in entry.providers}

# Providers the IAM rules leave and the project's mode can pay for.
listable_providers := {provider |
	some provider in catalog_providers
	provider_permitted(provider)
	billing_for(provider)
}

# A set, so a model with several usable providers appears once; sorted by id.
visible_models := sort({model |
	some model, entry in data.catalog.models
	some provider, _ in entry.providers
	provider in listable_providers
	model_permitted(model)
})

models_listed := {
	"allow": true,
	"status": 200,
	"message": "",
	"model": null,
	"provider": null,
	"provider_model_id": null,
	"billing": null,
	"reasons": [],
	"models": visible_models,
}
