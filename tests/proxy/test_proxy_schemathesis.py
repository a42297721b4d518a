"""Schemathesis against the served OpenAPI schema (`/v1` and `/admin`), bounded.

Every operation gets a bounded number of generated requests, sent with a valid API
key (for `/v1`) or the admin token (for `/admin`); no answer may be a 5xx, and every
answer must match the schema's declared responses and content types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_deployment import Deployment, deployed
from proxy_helpers import make_tenant
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.core.result import Ok
from shipped_policy import ShippedPolicies

ADMIN_TOKEN = "schemathesis-admin-token"
EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def admin_deployment(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("schemathesis"),
        compile_policy=shipped_policies.loader,
        admin_token=ADMIN_TOKEN,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def operations(admin_deployment: Deployment) -> list[Any]:
    """The served schema's `/v1` and `/admin` operations, read once for both tests
    (schemathesis takes seconds of CPU to load the schema)."""
    schema = schemathesis.openapi.from_url(f"{admin_deployment.url}/schema/openapi.json")
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served schema has an invalid operation: {result}"
        found.append(result.ok())
    return [op for op in found if op.path.startswith(("/v1/", "/admin/"))]


def test_openapi_lists_v1_and_admin(operations: list[Any]) -> None:
    paths = {op.path for op in operations}
    assert {"/v1/chat/completions", "/v1/models", "/v1/embeddings"} <= paths
    assert "/admin/keys" in paths and "/admin/keys/{key_id}/iam" in paths


CHECKS = (not_a_server_error, response_schema_conformance, content_type_conformance)


def _exercise(operation: Any, url: str, headers: dict[str, str], failures: list[str]) -> None:
    strategies = [
        operation.as_strategy(),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        *operation.get_strategies_from_examples(),
    ]

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def exercise(case: Any) -> None:
        response = case.call(base_url=url, headers=headers)
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")

    exercise()


def test_no_5xx_and_responses_match_schema(
    admin_deployment: Deployment, operations: list[Any]
) -> None:
    tenant = make_tenant(admin_deployment.admin)
    failures: list[str] = []
    for operation in operations:
        token = ADMIN_TOKEN if operation.path.startswith("/admin/") else tenant.token
        headers = {"Authorization": f"Bearer {token}"}
        _exercise(operation, admin_deployment.url, headers, failures)
    assert failures == []
