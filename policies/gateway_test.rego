# Tests of the default policy (gateway.rego), one or more per rule body.
#
# Run them, with coverage of gateway.rego:
#   policy-engine test policies/ --coverage
#
# Every test starts from `base`, a request that passes every check, and
# changes only what it is about with `object.union` (a deep merge).
package gateway_test

import rego.v1

base := {
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
		"usage": "0",
		"usage_limit": null,
		"project_id": "proj_1",
		"iam_rules": [],
	},
	"project": {
		"id": "proj_1",
		"status": "active",
		"mode": "hybrid",
		"provider_keys": [],
		"iam_rules": [],
	},
	"organization": {"id": "org_1", "credits": "10.00"},
	"gateway": {"credentialed_providers": ["mock", "openai"]},
}

# The base request with `patch` laid over it.
with_patch(patch) := object.union(base, patch)

decide(patch) := d if {
	d := data.gateway.decision with input as with_patch(patch)
}

rule(id, type, values) := {"id": id, "type": type, "values": values, "status": "active"}

# ---- the allowed path -------------------------------------------------------------

test_allowed_request_goes_to_the_gateway_credential if {
	d := decide({})
	d.allow == true
	d.status == 200
	d.provider == "openai"
	d.billing == "credits"
	d.provider_model_id == "gpt-4"
}

test_project_key_is_preferred_in_hybrid_mode if {
	d := decide({"project": {"provider_keys": ["openrouter"]}})
	d.provider == "openrouter"
	d.billing == "provider-key"
}

test_explicit_provider_is_used if {
	d := decide({"request": {"model": "openrouter/gpt-4"}, "project": {"provider_keys": ["openrouter"]}})
	d.allow == true
	d.provider == "openrouter"
	d.model == "gpt-4"
}

test_missing_mode_means_hybrid if {
	d := decide({"project": {"mode": null}})
	d.allow == true
	d.billing == "credits"
}

test_mock_model_in_api_keys_mode_needs_no_key if {
	d := decide({"request": {"model": "mock-model"}, "project": {"mode": "api-keys"}})
	d.allow == true
	d.provider == "mock"
	d.billing == "provider-key"
}

test_cheapest_provider_wins if {
	d := decide({"request": {"model": "gpt-oss-120b"}, "gateway": {"credentialed_providers": ["groq", "together"]}})
	d.provider == "together"
}

# ---- checks 1 to 6 ----------------------------------------------------------------

test_no_token_is_401 if {
	d := decide({"request": {"token_present": false}})
	d.status == 401
	startswith(d.message, "Unauthorized: No API key provided.")
}

test_unknown_key_is_401 if {
	d := decide({"key": null})
	d.status == 401
	startswith(d.message, "Unauthorized: Invalid LLMGateway API token.")
}

test_inactive_key_is_401 if {
	d := decide({"key": {"status": "inactive"}})
	d.status == 401
	startswith(d.message, "Unauthorized: Invalid LLMGateway API token.")
}

test_key_at_its_expiry_is_401_expired if {
	d := decide({"key": {"expires_at": "2026-11-27T10:00:00Z", "usage": "10", "usage_limit": "10"}})
	d.status == 401
	startswith(d.message, "Unauthorized: Invalid LLMGateway API token.")
	d.reasons[0].code == "expired"
}

# 10:30 at UTC+1 is 09:30Z, before the request's 10:00Z: compared as instants.
test_expiry_with_an_offset_compares_as_an_instant if {
	d := decide({"key": {"expires_at": "2026-11-27T10:30:00+01:00"}})
	d.reasons[0].code == "expired"
}

test_key_one_second_before_its_expiry_passes if {
	d := decide({"key": {"expires_at": "2026-11-27T10:00:01Z"}})
	d.allow == true
}

test_unreadable_expiry_counts_as_expired if {
	d := decide({"key": {"expires_at": "tomorrow"}})
	d.reasons[0].code == "expired"
}

# Times in the gateway's own format are compared as text; the others are parsed.
# A day after the 28th is parsed (the shape alone cannot tell that April has no 31st):
test_an_expiry_on_a_day_no_month_lacks_is_compared_as_text if {
	d := decide({"key": {"expires_at": "2026-11-28T00:00:00Z"}})
	d.allow == true
}

test_an_expiry_late_in_the_month_is_compared_as_an_instant if {
	d := decide({"key": {"expires_at": "2026-11-30T00:00:00Z"}})
	d.allow == true
}

test_an_impossible_day_counts_as_expired if {
	d := decide({"key": {"expires_at": "2026-11-31T00:00:00Z"}})
	d.reasons[0].code == "expired"
}

# A year parse_rfc3339_ns cannot represent in nanoseconds fails closed, as before.
test_an_expiry_beyond_2262_counts_as_expired if {
	d := decide({"key": {"expires_at": "2300-01-01T00:00:00Z"}})
	d.reasons[0].code == "expired"
}

test_an_expiry_in_2261_is_compared_as_text if {
	d := decide({"key": {"expires_at": "2261-12-01T00:00:00Z"}})
	d.allow == true
}

test_a_request_late_in_the_month_is_compared_as_an_instant if {
	d := decide({"request": {"time": "2026-11-30T10:00:00Z"}, "key": {"expires_at": "2026-11-30T10:00:00Z"}})
	d.reasons[0].code == "expired"
}

test_rotated_token_in_its_grace_period_passes if {
	d := decide({"key": {"token_expires_at": "2026-11-27T10:05:00Z"}})
	d.allow == true
}

test_rotated_token_after_its_grace_period_is_401 if {
	d := decide({"key": {"token_expires_at": "2026-11-27T10:00:00Z"}})
	d.status == 401
	startswith(d.message, "Unauthorized: Invalid LLMGateway API token.")
	d.reasons[0].code == "token_rotated"
}

# 11:30 at UTC+1 is 10:30Z, after the request's 10:00Z; 10:30 at UTC+1 is before it.
test_a_rotated_token_grace_with_an_offset_compares_as_an_instant if {
	d := decide({"key": {"token_expires_at": "2026-11-27T11:30:00+01:00"}})
	d.allow == true
	refused := decide({"key": {"token_expires_at": "2026-11-27T10:30:00+01:00"}})
	refused.reasons[0].code == "token_rotated"
}

test_usage_at_the_limit_is_401 if {
	d := decide({"key": {"usage": "10", "usage_limit": "10.00"}})
	d.status == 401
	d.message == "Unauthorized: LLMGateway API key reached its usage limit."
}

test_usage_below_the_limit_passes if {
	d := decide({"key": {"usage": "9.99", "usage_limit": "10"}})
	d.allow == true
}

budget(amount, usage, reserved) := {
	"amount": amount,
	"period": "day",
	"usage": usage,
	"reserved": reserved,
	"window_start": "2026-11-27T00:00:00Z",
	"resets_at": "2026-11-28T00:00:00Z",
}

test_key_window_at_its_budget_is_401_with_the_period_message if {
	d := decide({"key": {"period_budget": budget("5", "5.00", "0")}})
	d.status == 401
	d.message == "Unauthorized: LLMGateway API key reached its current period usage limit."
	d.reasons[0].code == "period_budget"
	contains(d.reasons[0].message, "2026-11-28T00:00:00Z")
}

test_in_flight_reservations_alone_never_refuse_for_a_budget if {
	d := decide({"key": {"period_budget": budget("5", "4.99", "100")}})
	d.allow == true
}

test_the_usage_limit_answers_before_the_key_budget if {
	d := decide({"key": {"usage": "1", "usage_limit": "1", "period_budget": budget("5", "5", "0")}})
	d.message == "Unauthorized: LLMGateway API key reached its usage limit."
}

test_project_window_at_its_budget_is_403 if {
	d := decide({"project": {"period_budget": budget("0", "0", "0")}})
	d.status == 403
	d.message == "Project has reached its period spend budget."
	d.reasons[0].code == "project_period_budget"
}

test_the_key_budget_answers_before_the_project_budget if {
	d := decide({
		"key": {"period_budget": budget("1", "1", "0")},
		"project": {"period_budget": budget("1", "1", "0"), "status": "deleted"},
	})
	d.status == 401
}

policy_budget(layer, target, amount, period) := {
	"layer": layer,
	"target": target,
	"id": null,
	"amount": amount,
	"period": period,
}

policy_budget_files := [
	policy_budget("gateway", null, "20", "day"),
	policy_budget("gateway", null, "5", "week"),
	policy_budget("key", "key_1", "100", "month"),
	policy_budget("project", "proj_1", "500", "month"),
]

test_a_policy_budget_for_the_key_wins_over_all_keys if {
	chosen := data.gateway.policy_budgets with input as base with data.gateway.budget_policies.budgets as policy_budget_files
	chosen.key.amount == "100"
	chosen.project.amount == "500"
}

test_policy_budgets_for_all_keys_pick_the_smallest_amount if {
	chosen := data.gateway.policy_budgets with input as with_patch({"key": {"id": "key_2"}, "project": {"id": "proj_2"}}) with data.gateway.budget_policies.budgets as policy_budget_files
	chosen.key.amount == "5"
	chosen.key.period == "week"
	chosen.project == null
}

test_without_policy_budgets_none_applies if {
	chosen := data.gateway.policy_budgets with input as base
	chosen == {"key": null, "project": null}
}

stored_day_budget(amount) := with_patch({"key": {"stored_budget": {"amount": amount, "period": "day"}}})

key_day_budget_file(amount) := [policy_budget("key", "key_1", amount, "day")]

test_a_stricter_policy_file_budget_holds_over_the_stored_one if {
	chosen := data.gateway.effective_budgets with input as stored_day_budget("5") with data.gateway.budget_policies.budgets as key_day_budget_file("3")
	chosen.key == {"amount": "3", "period": "day", "source": "policy", "id": null}
}

test_a_stricter_stored_budget_holds_over_the_policy_files if {
	chosen := data.gateway.effective_budgets with input as stored_day_budget("3") with data.gateway.budget_policies.budgets as key_day_budget_file("5")
	chosen.key == {"amount": "3", "period": "day", "source": "store", "id": null}
}

test_the_stored_budget_applies_without_a_policy_file_budget if {
	chosen := data.gateway.effective_budgets with input as with_patch({"project": {"stored_budget": {"amount": "9", "period": "week"}}})
	chosen == {"key": null, "project": {"amount": "9", "period": "week", "source": "store", "id": null}}
}

test_without_any_budget_none_applies if {
	chosen := data.gateway.effective_budgets with input as base
	chosen == {"key": null, "project": null}
}

test_a_policy_file_budget_applies_where_none_is_stored if {
	chosen := data.gateway.effective_budgets with input as base with data.gateway.budget_policies.budgets as [object.union(policy_budget("project", "proj_1", "500", "month"), {"id": "monthly"})]
	chosen == {"key": null, "project": {"amount": "500", "period": "month", "source": "policy", "id": "monthly"}}
}

test_effective_controls_show_a_policy_files_budget_and_ceilings if {
	controls := data.gateway.effective_controls with input as with_patch({"key": {"rate_limits": {"rpm": 100, "tpm": null, "max_parallel": 4}}}) with data.gateway.budget_policies.budgets as key_day_budget_file("3") with data.gateway.iam_policies.rate_ceilings as [{"layer": "gateway", "rpm": 60, "tpm": null, "max_parallel": null}]
	controls.budgets.key == {"amount": "3", "period": "day", "source": "policy", "id": null}
	controls.rate_limits.key == {"rpm": 60, "tpm": null, "max_parallel": 4}
	controls.rate_limits.project == null
}

test_budgets_of_different_periods_hold_the_policy_files if {
	chosen := data.gateway.effective_budgets with input as stored_day_budget("1") with data.gateway.budget_policies.budgets as [policy_budget("key", "key_1", "50", "month")]
	chosen.key.source == "policy"
	chosen.key.period == "month"
}

test_archived_project_is_410 if {
	d := decide({"project": {"status": "deleted"}})
	d.status == 410
}

test_body_error_is_400_with_the_proxy_message if {
	d := decide({"request": {"body_error": "Invalid JSON body"}})
	d.status == 400
	d.message == "Invalid JSON body"
}

test_missing_model_is_400 if {
	d := decide({"request": {"model": null}})
	d.status == 400
	contains(d.message, "`model` is required")
}

test_unknown_model_is_400 if {
	d := decide({"request": {"model": "no-such-model"}})
	d.status == 400
	d.message == "Unsupported model: no-such-model"
}

test_unknown_provider_for_a_model_is_400 if {
	d := decide({"request": {"model": "anthropic/gpt-4"}})
	d.message == "Unsupported model: anthropic/gpt-4"
}

# ---- check 7: IAM rules -------------------------------------------------------------

test_denied_model_is_403 if {
	d := decide({"key": {"iam_rules": [rule("no-gpt4", "deny_models", ["gpt-4*"])]}})
	d.status == 403
	d.message == "Access denied: Model gpt-4 is in the denied models list"
	d.reasons[0].rule_id == "no-gpt4"
}

test_model_outside_the_allowed_list_is_403 if {
	d := decide({"project": {"iam_rules": [rule("small", "allow_models", ["gpt-4o-mini"])]}})
	d.status == 403
	d.message == "Access denied: Model gpt-4 is not in the allowed models list"
	d.reasons[0].rule_id == "small"
}

test_two_allow_rules_in_a_layer_name_no_rule if {
	rules := [rule("a", "allow_models", ["gpt-4o-mini"]), rule("b", "allow_models", ["o3-mini"])]
	d := decide({"key": {"iam_rules": rules}})
	d.status == 403
	d.reasons[0].rule_id == null
}

test_inactive_rules_are_ignored if {
	inactive := object.union(rule("no-gpt4", "deny_models", ["gpt-4"]), {"status": "inactive"})
	d := decide({"key": {"iam_rules": [inactive]}, "project": {"iam_rules": [inactive]}})
	d.allow == true
}

test_operation_outside_the_allowed_list_is_403 if {
	d := decide({"key": {"iam_rules": [rule("emb", "allow_operations", ["embeddings"])]}})
	d.message == "Access denied: Operation chat.completions is not in the allowed operations list"
}

test_denied_operation_is_403 if {
	d := decide({"key": {"iam_rules": [rule("no-chat", "deny_operations", ["chat.completions"])]}})
	d.message == "Access denied: Operation chat.completions is in the denied operations list"
}

test_explicit_provider_outside_the_allowed_list_is_403 if {
	d := decide({"request": {"model": "openrouter/gpt-4"}, "key": {"iam_rules": [rule("oa", "allow_providers", ["openai"])]}})
	d.message == "Access denied: Provider openrouter is not in the allowed providers list"
}

test_allowed_providers_narrow_the_candidates if {
	d := decide({"key": {"iam_rules": [rule("or", "allow_providers", ["openrouter"])]}, "gateway": {"credentialed_providers": ["openai", "openrouter"]}})
	d.allow == true
	d.provider == "openrouter"
}

test_denied_explicit_provider_is_403 if {
	d := decide({"request": {"model": "openrouter/gpt-4"}, "key": {"iam_rules": [rule("no-or", "deny_providers", ["openrouter"])]}})
	d.message == "Access denied: Provider openrouter is in the denied providers list"
}

test_no_provider_left_after_iam_is_403 if {
	d := decide({"key": {"iam_rules": [rule("none", "deny_providers", ["openai", "openrouter"])]}})
	d.message == "Access denied: No providers are allowed for model gpt-4 after applying IAM rules."
	d.reasons[0].code == "no_provider"
}

test_yaml_rules_apply_as_the_gateway_layer if {
	yaml_rule := object.union(rule("gw", "deny_models", ["gpt-4"]), {"layer": "gateway"})
	d := data.gateway.decision with input as base with data.gateway.iam_policies.rules as [yaml_rule]
	d.status == 403
	d.reasons[0].rule_id == "gw"
}

# ---- check 7b: custom rules -----------------------------------------------------------

test_custom_rule_denies_with_its_status if {
	custom := [{"message": "Weekend", "status": 451}, {"message": "After hours"}]
	d := data.gateway.decision with input as base with data.gateway.custom_deny as custom
	d.status == 403
	d.message == "After hours"
	count(d.reasons) == 2
}

# ---- check 7c: the provider must serve the request's API -----------------------------------

test_messages_go_only_to_a_provider_serving_that_api if {
	d := decide({
		"request": {"operation": "messages", "model": "claude-sonnet-4"},
		"gateway": {"credentialed_providers": ["anthropic", "openrouter"]},
	})
	d.allow
	d.provider == "anthropic"
}

test_counting_tokens_is_governed_as_the_messages_operation if {
	d := decide({
		"request": {"operation": "messages.count_tokens", "model": "mock-model"},
		"key": {"iam_rules": [rule("no-claude-code", "deny_operations", ["messages"])]},
	})
	d.status == 403
	d.message == "Access denied: Operation messages is in the denied operations list"
}

test_a_model_no_provider_serves_through_the_api_is_400 if {
	d := decide({"request": {"operation": "messages", "model": "gpt-4"}})
	d.status == 400
	d.message == "Model gpt-4 is not served through /v1/messages by any of its allowed providers; they serve /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses"
}

# ---- check 8: credentials ---------------------------------------------------------------

test_api_keys_mode_without_a_key_is_400 if {
	d := decide({"project": {"mode": "api-keys"}})
	d.status == 400
	startswith(d.message, "No provider key set for any of the providers that support model gpt-4.")
}

test_no_credential_anywhere_is_400 if {
	d := decide({"gateway": {"credentialed_providers": []}})
	d.status == 400
	d.message == "No available provider could be found for model gpt-4"
}

test_credits_mode_without_credits_is_402 if {
	d := decide({"project": {"mode": "credits"}, "organization": {"credits": "0"}})
	d.status == 402
	d.message == "Organization org_1 has insufficient credits"
}

test_hybrid_mode_without_credits_is_402 if {
	d := decide({"organization": {"credits": "-1.50"}})
	d.status == 402
	d.message == "No API key set for provider and organization has insufficient credits"
}

# ---- the models list ----------------------------------------------------------------------

test_models_list_shows_what_the_key_may_use if {
	rules := [rule("small", "allow_models", ["gpt-4o-mini", "mock-model"])]
	d := decide({"request": {"operation": "models.list", "model": null}, "key": {"iam_rules": rules}})
	d.allow == true
	d.models == ["gpt-4o-mini", "mock-model"]
	d.model == null
}

test_models_list_after_authentication_only if {
	d := decide({"request": {"operation": "models.list", "model": null, "token_present": false}})
	d.status == 401
}

# ---- check 3r: rate limits ----------------------------------------------------------

window(limits, counts) := object.union(limits, counts)

counted(requests, tokens, parallel, retry) := {
	"requests_in_window": requests,
	"tokens_in_window": tokens,
	"parallel": parallel,
	"retry_after_seconds": retry,
}

test_rate_limits_not_counted_yet_allow_and_are_enforced_at_admission if {
	d := decide({"key": {"rate_limits": {"rpm": 1, "tpm": 10, "max_parallel": 1}}})
	d.allow == true
	d.rate_limits == {"key": {"rpm": 1, "tpm": 10, "max_parallel": 1}, "project": null}
}

test_no_rate_limits_say_so if {
	d := decide({})
	d.rate_limits == {"key": null, "project": null}
}

test_rpm_reached_is_429_with_when_to_retry if {
	d := decide({"key": {"rate_limits": window({"rpm": 2}, counted(2, 0, 0, 12))}})
	d.status == 429
	d.reasons[0].code == "rate_limit_requests"
	d.message == "Rate limit reached for API key key_1 on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in 12s."
}

test_rpm_reached_without_a_retry_time if {
	d := decide({"key": {"rate_limits": window({"rpm": 1}, counted(1, 0, 0, null))}})
	d.message == "Rate limit reached for API key key_1 on requests per min (RPM): Limit 1, Used 1, Requested 1."
}

test_tpm_counts_the_requests_bound if {
	d := decide({
		"request": {"token_bound": 30},
		"key": {"rate_limits": window({"tpm": 100}, counted(3, 80, 0, 9))},
	})
	d.status == 429
	d.reasons[0].code == "rate_limit_tokens"
	d.message == "Rate limit reached for API key key_1 on tokens per min (TPM): Limit 100, Used 80, Requested 30. Please try again in 9s."
}

test_tpm_reached_says_when_every_token_has_left_the_window if {
	d := decide({
		"request": {"token_bound": 30},
		"key": {"rate_limits": object.union(window({"tpm": 100}, counted(3, 80, 0, 9)), {"tokens_retry_after_seconds": 50})},
	})
	d.reasons[0].code == "rate_limit_tokens"
	d.message == "Rate limit reached for API key key_1 on tokens per min (TPM): Limit 100, Used 80, Requested 30. Please try again in 50s."
}

test_a_request_larger_than_the_tpm_is_too_large if {
	d := decide({
		"request": {"token_bound": 300},
		"key": {"rate_limits": window({"tpm": 100}, counted(0, 0, 0, null))},
	})
	d.reasons[0].code == "rate_limit_tokens"
	startswith(d.message, "Request too large for API key key_1 on tokens per min (TPM): Limit 100, Requested 300.")
}

test_max_parallel_reached if {
	d := decide({"project": {"rate_limits": window({"max_parallel": 2}, counted(2, 0, 2, 5))}})
	d.status == 429
	d.reasons[0].code == "max_parallel"
	d.message == "Too many parallel requests for project proj_1: Limit 2, In flight 2. Please try again when one of them has finished."
}

test_policy_ceilings_lower_the_stored_limits if {
	ceilings := [
		{"layer": "gateway", "rpm": 5, "tpm": null, "max_parallel": null},
		{"layer": "project", "rpm": null, "tpm": null, "max_parallel": 3},
	]
	d := data.gateway.decision with input as with_patch({"key": {"rate_limits": {"rpm": 10, "tpm": null, "max_parallel": null}}}) with data.gateway.iam_policies.rate_ceilings as ceilings
	d.rate_limits == {"key": {"rpm": 5, "tpm": null, "max_parallel": null}, "project": {"rpm": null, "tpm": null, "max_parallel": 3}}
}

test_a_policy_ceiling_applies_without_stored_limits_once_counted if {
	ceilings := [{"layer": "key", "rpm": 1, "tpm": null, "max_parallel": null}]
	d := data.gateway.decision with input as with_patch({"key": {"rate_limits": window({"rpm": 1}, counted(1, 0, 0, 30))}}) with data.gateway.iam_policies.rate_ceilings as ceilings
	d.status == 429
	allowed := data.gateway.decision with input as base with data.gateway.iam_policies.rate_ceilings as ceilings
	allowed.allow == true
	allowed.rate_limits.key.rpm == 1
}

test_a_negative_tpm_refuses_before_anything_is_counted if {
	d := decide({"key": {"rate_limits": {"rpm": null, "tpm": -1, "max_parallel": null}}})
	d.status == 429
	startswith(d.message, "Request too large for API key key_1 on tokens per min (TPM): Limit -1, Requested 0.")
}

test_limits_missing_from_the_window_read_as_none if {
	d := decide({"key": {"rate_limits": {"rpm": 3}}})
	d.allow == true
	d.rate_limits.key == {"rpm": 3, "tpm": null, "max_parallel": null}
}

test_a_policy_ceiling_alone_refuses_a_request_too_large if {
	ceilings := [{"layer": "key", "rpm": null, "tpm": 10, "max_parallel": null}]
	d := data.gateway.decision with input as with_patch({"request": {"token_bound": 50}}) with data.gateway.iam_policies.rate_ceilings as ceilings
	d.status == 429
	startswith(d.message, "Request too large for API key key_1 on tokens per min (TPM): Limit 10, Requested 50.")
}

# An allowed request's decision carries each window's own limits, whichever is set.
test_a_key_window_with_only_tpm_or_only_max_parallel_is_admitted_under_it if {
	tpm := decide({"key": {"rate_limits": {"rpm": null, "tpm": 100, "max_parallel": null}}})
	tpm.rate_limits.key == {"rpm": null, "tpm": 100, "max_parallel": null}
	parallel := decide({"key": {"rate_limits": {"rpm": null, "tpm": null, "max_parallel": 2}}})
	parallel.rate_limits.key == {"rpm": null, "tpm": null, "max_parallel": 2}
}

test_a_project_window_is_admitted_under_its_own_limits if {
	rpm := decide({"project": {"rate_limits": {"rpm": 7, "tpm": null, "max_parallel": null}}})
	rpm.rate_limits == {"key": null, "project": {"rpm": 7, "tpm": null, "max_parallel": null}}
	tpm := decide({"project": {"rate_limits": {"rpm": null, "tpm": 70, "max_parallel": null}}})
	tpm.rate_limits.project == {"rpm": null, "tpm": 70, "max_parallel": null}
	parallel := decide({"project": {"rate_limits": {"rpm": null, "tpm": null, "max_parallel": 3}}})
	parallel.rate_limits.project == {"rpm": null, "tpm": null, "max_parallel": 3}
	partial := decide({"project": {"rate_limits": {"tpm": 9}}})
	partial.rate_limits.project == {"rpm": null, "tpm": 9, "max_parallel": null}
	none := decide({"project": {"rate_limits": {"rpm": null, "tpm": null, "max_parallel": null}}})
	none.rate_limits == {"key": null, "project": null}
}

test_a_negative_project_tpm_refuses_before_anything_is_counted if {
	d := decide({"project": {"rate_limits": {"rpm": null, "tpm": -1, "max_parallel": null}}})
	d.status == 429
	startswith(d.message, "Request too large for project proj_1 on tokens per min (TPM): Limit -1, Requested 0.")
}

test_a_window_whose_limits_are_all_null_admits_without_rate_limits if {
	d := decide({"key": {"rate_limits": {"rpm": null, "tpm": null, "max_parallel": null}}})
	d.allow == true
	d.rate_limits == {"key": null, "project": null}
}

test_a_policy_ceiling_without_a_tpm_still_looks_and_finds_no_refusal if {
	ceilings := [{"layer": "gateway", "rpm": 5, "tpm": null, "max_parallel": null}]
	d := data.gateway.decision with input as with_patch({"key": {"rate_limits": {"rpm": 10, "tpm": 100, "max_parallel": null}}}) with data.gateway.iam_policies.rate_ceilings as ceilings
	d.allow == true
	d.rate_limits.key == {"rpm": 5, "tpm": 100, "max_parallel": null}
}

# The proxy's own window: every limit and every count present, the counts null until
# the store has counted them (its first decision).
proxy_window(limits) := object.union(limits, {
	"requests_in_window": null,
	"tokens_in_window": null,
	"parallel": null,
	"retry_after_seconds": null,
	"tokens_retry_after_seconds": null,
})

first_decision(key_limits) := with_patch({
	"request": {"token_bound": null},
	"key": {"rate_limits": proxy_window(key_limits)},
	"project": {"rate_limits": null},
})

test_a_first_decision_of_a_key_with_its_own_limits_finds_no_refusal_in_one_body if {
	limits := {"rpm": 5, "tpm": 100, "max_parallel": 2}
	data.gateway.key_window_alone_uncounted with input as first_decision(limits)
	d := data.gateway.decision with input as first_decision(limits)
	d.allow == true
	d.rate_limits == {"key": limits, "project": null}
}

test_a_first_decision_of_a_key_without_a_tpm_or_with_a_zero_tpm_finds_no_refusal_in_one_body if {
	no_tpm := {"rpm": 5, "tpm": null, "max_parallel": null}
	data.gateway.key_window_alone_uncounted with input as first_decision(no_tpm)
	d := data.gateway.decision with input as first_decision(no_tpm)
	d.rate_limits == {"key": no_tpm, "project": null}
	zero_tpm := {"rpm": null, "tpm": 0, "max_parallel": 3}
	data.gateway.key_window_alone_uncounted with input as first_decision(zero_tpm)
	zero := data.gateway.decision with input as first_decision(zero_tpm)
	zero.allow == true
	zero.rate_limits == {"key": zero_tpm, "project": null}
}

test_a_negative_tpm_in_the_proxys_window_still_refuses_before_anything_is_counted if {
	limits := {"rpm": 5, "tpm": -1, "max_parallel": null}
	not data.gateway.key_window_alone_uncounted with input as first_decision(limits)
	d := data.gateway.decision with input as first_decision(limits)
	d.status == 429
	startswith(d.message, "Request too large for API key key_1 on tokens per min (TPM): Limit -1, Requested 0.")
}

test_counts_a_token_bound_a_project_window_or_a_ceiling_are_looked_at_in_full if {
	limits := {"rpm": 1, "tpm": 100, "max_parallel": null}
	counted_input := object.union(first_decision(limits), {"key": {"rate_limits": counted(1, 0, 0, 7)}})
	not data.gateway.key_window_alone_uncounted with input as counted_input
	refused := data.gateway.decision with input as counted_input
	refused.reasons[0].code == "rate_limit_requests"

	bound := object.union(first_decision(limits), {"request": {"token_bound": 500}})
	not data.gateway.key_window_alone_uncounted with input as bound
	too_large := data.gateway.decision with input as bound
	startswith(too_large.message, "Request too large for API key key_1 on tokens per min (TPM): Limit 100, Requested 500.")

	shared := object.union(first_decision(limits), {"project": {"rate_limits": proxy_window({"rpm": 9, "tpm": null, "max_parallel": null})}})
	not data.gateway.key_window_alone_uncounted with input as shared
	both := data.gateway.decision with input as shared
	both.rate_limits == {"key": limits, "project": {"rpm": 9, "tpm": null, "max_parallel": null}}

	ceilings := [{"layer": "gateway", "rpm": null, "tpm": 50, "max_parallel": null}]
	not data.gateway.key_window_alone_uncounted with input as first_decision(limits) with data.gateway.iam_policies.rate_ceilings as ceilings
	lowered := data.gateway.decision with input as first_decision(limits) with data.gateway.iam_policies.rate_ceilings as ceilings
	lowered.rate_limits.key == {"rpm": 1, "tpm": 50, "max_parallel": null}
}

test_a_period_budget_reached_refuses_the_key_or_the_project if {
	spent := {"amount": "5.00", "period": "day", "usage": "5.00", "reserved": "0", "window_start": "2026-11-27T00:00:00Z", "resets_at": "2026-11-28T00:00:00Z"}
	key := decide({"key": {"period_budget": spent}})
	key.status == 401
	project := decide({"project": {"period_budget": spent}})
	project.status == 403
	left := object.union(spent, {"usage": "4.99"})
	decide({"key": {"period_budget": left}, "project": {"period_budget": left}}).allow == true
}
