# Invariants of the default policy (gateway.rego): true for every input.
#
# `policy-engine prop policies/` generates inputs from
# schemas/input.schema.json and reports the smallest input that makes one of
# these rules false or undefined. Each property is written as "no violation",
# the violation stated from the contract (spec §3-5), not from gateway.rego.
package gateway_props

import rego.v1

decision := data.gateway.decision

# Example inputs: the search mostly tries these with a few parts changed.
# A request that passes every check...
example_allowed_request := {
	"request": {
		"operation": "chat.completions",
		"token_present": true,
		"model": "gpt-4",
		"body_error": null,
		"max_tokens": null,
		"stream": false,
		"time": "2026-11-27T10:00:00Z",
		"client_ip": "127.0.0.1",
	},
	"key": {
		"id": "key_1",
		"status": "active",
		"usage": "10",
		"usage_limit": "100",
		"project_id": "proj_1",
		"iam_rules": [],
	},
	"project": {
		"id": "proj_1",
		"status": "active",
		"mode": "hybrid",
		"provider_keys": ["openrouter"],
		"iam_rules": [],
	},
	"organization": {"id": "org_1", "credits": "10.00"},
	"gateway": {"credentialed_providers": ["mock", "openai"]},
}

# ...a models list...
example_models_list := object.union(example_allowed_request, {"request": {"operation": "models.list", "model": null}})

# ...and an allowed request next to denials: its key allows the model, and a
# deny rule on it is inactive (one change away from applying).
example_near_denials := object.union(example_allowed_request, {
	"key": {
		"iam_rules": [
			{"id": "allow-gpt", "type": "allow_models", "values": ["gpt-4", "gpt-4o"], "status": "active"},
			{"id": "no-gpt-4", "type": "deny_models", "values": ["gpt-4*"], "status": "inactive"},
		],
	},
})

# ...and requests right at the boundary of the checks that compare (where `>`
# written for `>=` goes wrong): usage equal to the limit, and the request at the
# second the key expires. Each is refused by its own check; the search changes
# a part or two from there.
example_at_usage_limit := object.union(example_allowed_request, {"key": {"usage": "100", "usage_limit": "100.00"}})

# ...and a key's and a project's period budget whose window usage equals the budget.
example_at_key_budget := object.union(example_allowed_request, {
	"key": {
		"period_budget": {
			"amount": "5.00",
			"period": "day",
			"usage": "5",
			"reserved": "0",
			"window_start": "2026-11-27T00:00:00Z",
			"resets_at": "2026-11-28T00:00:00Z",
		},
	},
})

example_at_project_budget := object.union(example_allowed_request, {
	"project": {
		"period_budget": {
			"amount": "50",
			"period": "month",
			"usage": "50.00",
			"reserved": "1.00",
			"window_start": "2026-11-01T00:00:00Z",
			"resets_at": "2026-12-01T00:00:00Z",
		},
	},
})

example_at_expiry := object.union(example_allowed_request, {
	"key": {
		"expires_at": "2026-11-27T10:00:00Z",
		"token_expires_at": "2026-11-27T10:00:01Z",
	},
})

# ...and a key and project whose windows are full (rate limits, issue 13): one
# request more than each ceiling allows, counted by the store.
example_at_rate_limits := object.union(example_allowed_request, {
	"request": {"token_bound": 100},
	"key": {"rate_limits": {"rpm": 60, "tpm": 1000, "max_parallel": 4, "requests_in_window": 60, "tokens_in_window": 900, "parallel": 4, "retry_after_seconds": 30}},
	"project": {"rate_limits": {"rpm": 100, "tpm": null, "max_parallel": null, "requests_in_window": 99, "tokens_in_window": 0, "parallel": 0, "retry_after_seconds": 1}},
})

# The policy answers every request.
prop_decision_is_always_defined if {
	is_boolean(decision.allow)
	is_number(decision.status)
	is_string(decision.message)
}

# An inactive or deleted key is never allowed.
prop_disabled_key_is_never_allowed if not disabled_key_allowed

disabled_key_allowed if {
	input.key.status in {"inactive", "deleted"}
	decision.allow == true
}

# An expired key is never allowed, nor a rotated-out token after its grace
# period: a request at or after the moment is refused (issue 13).
prop_expired_key_is_never_allowed if not expired_key_allowed

expired_key_allowed if {
	decision.allow == true
	expired
}

# The key, or the token presented, has expired at the request's time.
expired if {
	some moment in [object.get(input.key, "expires_at", null), object.get(input.key, "token_expires_at", null)]
	moment != null
	not time.parse_rfc3339_ns(moment) > time.parse_rfc3339_ns(input.request.time)
}

# ...and it is refused with the documented invalid-token answer, right after the
# token check (before the usage limit and everything else).
prop_expired_key_answers_invalid_token if not expired_key_misanswered

expired_key_misanswered if {
	input.request.token_present == true
	input.key.status == "active"
	expired
	decision.message != "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."
}

# A model denied by an active deny_models rule is never allowed, whatever the
# other rules say.
prop_denied_model_is_never_allowed if not denied_model_allowed

denied_model_allowed if {
	decision.allow == true
	some rule in deny_model_rules
	some pattern in rule.values
	glob.match(pattern, null, decision.model)
}

deny_model_rules contains rule if {
	some rule in array.concat(object.get(input.key, "iam_rules", []), object.get(input.project, "iam_rules", []))
	rule.type == "deny_models"
	object.get(rule, "status", "active") == "active"
}

# Usage at or above a set limit is never allowed...
prop_usage_at_limit_is_never_allowed if not usage_at_limit_allowed

usage_at_limit_allowed if {
	decision.allow == true
	limit_reached
}

limit_reached if {
	input.key.usage_limit != null
	to_number(input.key.usage) >= to_number(input.key.usage_limit)
}

# ...and once a caller is authenticated it is the answer, before any check
# about the project or the request (spec §3, check 3).
prop_usage_at_limit_answers_first if not usage_limit_message_missing

usage_limit_message_missing if {
	input.request.token_present == true
	input.key.status == "active"
	not expired
	limit_reached
	decision.message != "Unauthorized: LLMGateway API key reached its usage limit."
}

# Rate limits (issue 13): a key, or a project, never gets more than its RPM in
# any window of the input: with `rpm` requests already in the 60 s window the
# next one is refused...
prop_rpm_is_never_exceeded if not rpm_exceeded

rpm_exceeded if {
	decision.allow == true
	some window in rate_windows
	window.rpm != null
	window.requests_in_window != null
	window.requests_in_window + 1 > window.rpm
}

# ...nor more tokens than its TPM (the window's tokens plus the request's bound)...
prop_tpm_is_never_exceeded if not tpm_exceeded

tpm_exceeded if {
	decision.allow == true
	some window in rate_windows
	window.tpm != null
	window.tokens_in_window != null
	window.tokens_in_window + object.get(input.request, "token_bound", 0) > window.tpm
}

tpm_exceeded if {
	decision.allow == true
	some window in rate_windows
	window.tpm != null
	object.get(input.request, "token_bound", null) != null
	input.request.token_bound > window.tpm
}

# ...nor more requests in flight than its max_parallel.
prop_max_parallel_is_never_exceeded if not parallel_exceeded

parallel_exceeded if {
	decision.allow == true
	some window in rate_windows
	window.max_parallel != null
	window.parallel != null
	window.parallel + 1 > window.max_parallel
}

# A rate limit is answered 429, never another status.
prop_rate_limit_answers_429 if not rate_limit_misanswered

rate_limit_misanswered if {
	decision.allow == false
	decision.reasons[0].code in {"rate_limit_requests", "rate_limit_tokens", "max_parallel"}
	decision.status != 429
}

rate_windows := [window |
	some window in [object.get(input, ["key", "rate_limits"], null), object.get(input, ["project", "rate_limits"], null)]
	window != null
]

# A key whose current window's settled usage reached its period budget is never
# allowed, nor a key of a project whose window reached the project's budget.
prop_key_at_period_budget_is_never_allowed if not key_at_period_budget_allowed

key_at_period_budget_allowed if {
	decision.allow == true
	budget_spent(input.key)
}

prop_project_at_period_budget_is_never_allowed if not project_at_period_budget_allowed

project_at_period_budget_allowed if {
	decision.allow == true
	budget_spent(input.project)
}

budget_spent(subject) if {
	budget := object.get(subject, "period_budget", null)
	budget != null
	to_number(budget.usage) >= to_number(budget.amount)
}

# In-flight reservations alone never refuse for a budget: a window whose settled
# usage is below the budget is never answered with a budget message.
prop_in_flight_alone_never_refuses_for_a_budget if not refused_on_in_flight

refused_on_in_flight if {
	decision.message in {
		"Unauthorized: LLMGateway API key reached its current period usage limit.",
		"Project has reached its period spend budget.",
	}
	not budget_spent(input.key)
	not budget_spent(input.project)
}

# The key's budget answers right after the usage limit, before anything about the
# project or the request (check 3b).
prop_key_budget_answers_after_the_usage_limit if not key_budget_message_missing

key_budget_message_missing if {
	input.request.token_present == true
	input.key.status == "active"
	not expired
	not limit_reached
	budget_spent(input.key)
	decision.message != "Unauthorized: LLMGateway API key reached its current period usage limit."
}

# Every denial carries one of the documented messages with its status.
prop_denials_carry_documented_messages if not undocumented_denial

undocumented_denial if {
	decision.allow == false
	not documented(decision.status, decision.message)
}

documented(status, message) if {
	some entry in fixed_messages
	entry == [status, message]
}

documented(400, message) if message == input.request.body_error

documented(400, message) if message == sprintf("Unsupported model: %s", [input.request.model])

documented(403, message) if {
	startswith(message, "Access denied: ")
	reason := substring(message, count("Access denied: "), -1)
	reason in iam_reason_messages
}

documented(status, message) if {
	some entry in data.gateway.custom_deny
	message == entry.message
	status == object.get(entry, "status", 403)
}

documented(400, message) if message == sprintf("No provider key set for any of the providers that support model %s. Please add the provider key in the settings or switch the project mode to credits or hybrid.", [decision.model])

documented(400, message) if message == sprintf("No available provider could be found for model %s", [decision.model])

documented(402, message) if message == sprintf("Organization %s has insufficient credits", [input.organization.id])

# Rate limits (README "Rate limits"), in OpenAI's words.
documented(429, message) if {
	some prefix in ["Rate limit reached for ", "Request too large for ", "Too many parallel requests for "]
	startswith(message, prefix)
}

# The gateway's own check 7c (README, "Responses and Messages APIs"): no allowed
# provider of the model serves the request's API.
documented(400, message) if startswith(message, sprintf("Model %s is not served through /v1/", [decision.model]))

fixed_messages := [
	[401, "Unauthorized: No API key provided. Expected 'Authorization: Bearer your-api-token' header or 'x-api-key: your-api-token' header"],
	[401, "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."],
	[401, "Unauthorized: LLMGateway API key reached its usage limit."],
	[401, "Unauthorized: LLMGateway API key reached its current period usage limit."],
	[403, "Project has reached its period spend budget."],
	[410, "Project has been archived and is no longer accessible"],
	[400, "Invalid request body: the field `model` is required and must be a string."],
	[402, "No API key set for provider and organization has insufficient credits"],
]

# The IAM reasons the contract lists (spec §4), for this request.
iam_reason_messages := {
	sprintf("Model %s is not in the allowed models list", [decision.model]),
	sprintf("Model %s is in the denied models list", [decision.model]),
	sprintf("Operation %s is not in the allowed operations list", [data.gateway.rule_operation]),
	sprintf("Operation %s is in the denied operations list", [data.gateway.rule_operation]),
	sprintf("Provider %s is not in the allowed providers list", [explicit_provider]),
	sprintf("Provider %s is in the denied providers list", [explicit_provider]),
	sprintf("No providers are allowed for model %s after applying IAM rules.", [decision.model]),
}

# The provider named with the `provider/model` syntax ("" when none).
default explicit_provider := ""

explicit_provider := substring(input.request.model, 0, indexof(input.request.model, "/")) if {
	contains(input.request.model, "/")
}
