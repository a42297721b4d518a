"""The dashboard's doors: sessions, the admin token, CSRF, cookies, and the plain token."""

from __future__ import annotations

import logging
import re

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from dashboard.conftest import (
    ADMIN_TOKEN,
    ORG,
    PROJECT,
    csrf_of,
    make_app,
    run,
    sign_in,
    signin_token,
)
from proxy.dashboard import ROUTE_HANDLERS, InMemoryDecisionLog
from proxy.dashboard.session import SESSION_COOKIE
from proxy.store import Store

Client = TestClient[Litestar]


def _ids(store: Store) -> tuple[str, str]:
    key, _token = run(store.create_key(PROJECT, None, "fixture"))
    rule = run(store.add_rule(key.id, "deny_models", ("gpt-4",)))
    return key.id, rule.id


def _protected_routes(app: Litestar, key_id: str, rule_id: str) -> list[tuple[str, str]]:
    """Every dashboard route except sign-in and static files, with real ids filled in."""
    filled = {
        "key_id": key_id,
        "rule_id": rule_id,
        "project_id": PROJECT,
        "provider": "openai",
        "org_id": ORG,
    }
    routes: list[tuple[str, str]] = []
    for route in app.routes:
        path = route.path
        if not path.startswith("/dashboard") or path.startswith(
            ("/dashboard/signin", "/dashboard/static")
        ):
            continue
        for name, value in filled.items():
            path = re.sub(r"\{" + name + r":str\}", value, path)
        assert "{" not in path, f"fill in the placeholder of {route.path}"
        routes.extend((method, path) for method in sorted(route.methods) if method != "OPTIONS")
    return routes


def test_every_route_without_a_session_redirects_to_sign_in(
    app: Litestar, client: Client, store: Store
) -> None:
    key_id, rule_id = _ids(store)
    routes = _protected_routes(app, key_id, rule_id)
    protected_handlers = [h for h in ROUTE_HANDLERS if not h.opt.get("public")]
    assert len(routes) == len(protected_handlers), routes
    for method, path in routes:
        response = client.request(method, path, follow_redirects=False)
        assert (response.status_code, response.headers.get("location")) == (
            303,
            "/dashboard/signin",
        ), f"{method} {path}"
    assert run(store.get_key(key_id)).status == "active", "nothing changed without a session"


def test_a_forged_or_foreign_session_cookie_is_refused(client: Client) -> None:
    assert sign_in(client).status_code == 303
    cookie = client.cookies.get("gateway_dashboard_session")
    assert cookie
    session_id, expiry, signature = cookie.split(".")
    forged = f"{session_id}.{int(expiry) + 10_000}.{signature}"
    client.cookies.set("gateway_dashboard_session", forged, path="/dashboard")
    response = client.get("/dashboard/keys", follow_redirects=False)
    assert response.headers.get("location") == "/dashboard/signin"


def test_a_session_from_another_admin_token_is_refused(
    store: Store, decision_log: InMemoryDecisionLog, client: Client
) -> None:
    assert sign_in(client).status_code == 303
    cookie = client.cookies.get("gateway_dashboard_session")
    other_app = make_app(store, decision_log, admin_token="a-different-admin-token")
    with TestClient(other_app, base_url="http://127.0.0.1") as other:
        other.cookies.set("gateway_dashboard_session", cookie or "", path="/dashboard")
        response = other.get("/dashboard/keys", follow_redirects=False)
    assert response.headers.get("location") == "/dashboard/signin"


@pytest.mark.parametrize(
    "wrong", ["", "x", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper()]
)
def test_a_wrong_admin_token_is_refused_revealing_nothing(client: Client, wrong: str) -> None:
    response = sign_in(client, wrong)
    assert response.status_code == 401
    assert "gateway_dashboard_session" not in response.headers.get("set-cookie", "")
    assert "Sign-in failed. Check the admin token and try again." in response.text
    assert ADMIN_TOKEN not in response.text
    if wrong:
        assert wrong not in response.text.replace('name="admin_token"', "")
    # The page is the same whatever was typed, apart from its fresh form token.
    other = sign_in(client, "something else entirely")
    strip = re.compile(r'name="signin_token" value="[0-9a-f]+"')
    assert strip.sub("", response.text) == strip.sub("", other.text)
    assert client.get("/dashboard/keys", follow_redirects=False).status_code == 303


def test_repeated_failed_sign_ins_make_the_address_wait(client: Client) -> None:
    for _ in range(10):
        assert sign_in(client, "wrong-token").status_code == 401
    waiting = sign_in(client)  # the right token is not even checked meanwhile
    assert waiting.status_code == 429
    assert 1 <= int(waiting.headers["retry-after"]) <= 300
    assert "Too many failed sign-in attempts from this address" in waiting.text
    assert SESSION_COOKIE not in waiting.cookies
    assert client.get("/dashboard/keys", follow_redirects=False).status_code == 303


def test_sign_in_without_its_form_token_is_refused_even_with_the_right_admin_token(
    client: Client,
) -> None:
    signin_token(client)  # the browser holds the sign-in cookie
    response = client.post(
        "/dashboard/signin", data={"admin_token": ADMIN_TOKEN}, follow_redirects=False
    )
    assert response.status_code == 401
    assert "gateway_dashboard_session" not in response.headers.get("set-cookie", "")


def test_session_cookie_is_httponly_strict_and_scoped(client: Client) -> None:
    response = sign_in(client)
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if "gateway_dashboard_session=" in c
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "Path=/dashboard" in cookie
    assert "secure" not in attributes, "plain http on 127.0.0.1 must still be able to sign in"


def test_session_cookie_is_secure_over_tls(app: Litestar) -> None:
    with TestClient(app, base_url="https://127.0.0.1") as tls_client:
        response = sign_in(tls_client)
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if "gateway_dashboard_session=" in c
    )
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


@pytest.mark.parametrize("csrf", [None, "", "0" * 64])
def test_a_form_post_without_the_csrf_token_is_refused(
    signed_in: Client, store: Store, csrf: str | None
) -> None:
    key, _token = run(store.create_key(PROJECT, None, "target"))
    form = {"status": "inactive"} if csrf is None else {"status": "inactive", "csrf_token": csrf}
    response = signed_in.post(f"/dashboard/keys/{key.id}/status", data=form)
    assert response.status_code == 403
    assert "reload the page and submit it again" in response.text
    created = signed_in.post("/dashboard/keys", data={"project": PROJECT, "description": "x"})
    assert created.status_code == 403
    assert run(store.get_key(key.id)).status == "active"
    assert len(run(store.list_keys(PROJECT))) == 1


def test_a_csrf_token_of_another_session_is_refused(
    app: Litestar, signed_in: Client, store: Store
) -> None:
    with TestClient(app, base_url="http://127.0.0.1") as other:
        sign_in(other)
        foreign = csrf_of(other)
    assert foreign != csrf_of(signed_in)
    response = signed_in.post(
        "/dashboard/keys", data={"csrf_token": foreign, "project": PROJECT, "description": "x"}
    )
    assert response.status_code == 403
    assert run(store.list_keys(PROJECT)) == []


def test_sign_out_ends_the_session_even_for_a_replayed_cookie(signed_in: Client) -> None:
    cookie = signed_in.cookies.get("gateway_dashboard_session")
    response = signed_in.post(
        "/dashboard/signout", data={"csrf_token": csrf_of(signed_in)}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/signin")
    assert "Max-Age=0" in response.headers["set-cookie"]
    signed_in.cookies.set("gateway_dashboard_session", cookie or "", path="/dashboard")
    again = signed_in.get("/dashboard/keys", follow_redirects=False)
    assert again.headers.get("location") == "/dashboard/signin"


def test_the_plain_token_is_shown_once_and_never_again_nor_logged(
    signed_in: Client, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = signed_in.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(signed_in), "project": PROJECT, "description": "ci"},
    )
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    tokens = re.findall(r"llmgtwy_[A-Za-z0-9_-]{40,}", created.text)
    assert len(set(tokens)) == 1, "the creation page shows the plain token"
    token = tokens[0]
    assert "It cannot be shown again." in created.text
    key_id = run(store.list_keys(PROJECT))[0].id
    signed_in.post(
        f"/dashboard/keys/{key_id}/rules",
        data={"csrf_token": csrf_of(signed_in), "type": "deny_models", "values": "gpt-4"},
    )
    pages = [
        "/dashboard/keys",
        f"/dashboard/keys?project={PROJECT}",
        f"/dashboard/keys/{key_id}",
        f"/dashboard/keys/{key_id}/delete",
        "/dashboard/projects",
        f"/dashboard/projects/{PROJECT}",
    ]
    for page in pages:
        response = signed_in.get(page)
        assert response.status_code == 200, page
        assert token not in response.text, page
        assert token[8:20] not in response.text, f"{page} shows more than the display prefix"
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert caplog.records, "the run logged something to search"
    assert token not in logged


def test_pages_forbid_framing_and_outside_resources(signed_in: Client) -> None:
    response = signed_in.get("/dashboard/keys")
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "http://" not in response.text.replace("http://127.0.0.1", "")
    assert "https://" not in response.text


def test_static_files_are_an_allow_list(client: Client) -> None:
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/..%2F__init__.py").status_code == 404
    assert client.get("/dashboard/static/session.py").status_code == 404


def test_oversized_form_posts_are_refused(signed_in: Client, store: Store) -> None:
    response = signed_in.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(signed_in), "project": PROJECT, "description": "x" * 100_000},
    )
    assert response.status_code == 413
    assert run(store.list_keys(PROJECT)) == []
