"""The dashboard in headless Chromium against the real `gateway serve` process.

The path the documentation gives users: sign in, open API Keys, Create API Key,
copy the key; then use it, watch usage appear, disable it, restrict it, read why a
request was denied, deactivate the rule, rename the key, set and clear its expiry,
rotate its token, restrict the whole project and deactivate that rule, rename the
project, create and rename an organization, create a project and archive it, read
the audit log, sign out.
Screenshots of the key list and the create dialog are taken on every run; they
replace the ones in docs/screenshots/ only with `UPDATE_SCREENSHOTS=1`, so that an
ordinary test run leaves the working tree clean.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ADMIN_TOKEN = "browser-admin-token-51c0e8"
DOC_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
INVALID_KEY = (
    "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted "
    "or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."
)
CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing; install it with `apt-get install -y chromium chromium-driver`"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Gateway:
    url: str
    log: Path


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """`gateway serve` on a free port with a fresh SQLite database; stopped afterwards."""
    port = _free_port()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_DATABASE": f"sqlite:///{tmp_path / 'gateway.db'}",
    }
    command = [str(Path(sys.executable).with_name("gateway")), "serve"]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server, log)
        yield Gateway(url=url, log=log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`gateway serve` exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"`gateway serve` did not become ready:\n{log.read_text()}")


def _chat(gateway: Gateway, token: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_operator_journey_in_chromium(gateway: Gateway, tmp_path: Path) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    screenshots = DOC_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})

            # Sign in: every dashboard page sends a stranger to the sign-in form.
            page.goto(f"{gateway.url}/dashboard/keys")
            expect(page).to_have_url(f"{gateway.url}/dashboard/signin")
            page.fill("#admin_token", ADMIN_TOKEN)
            page.click("button:has-text('Sign in')")
            expect(page).to_have_url(f"{gateway.url}/dashboard/keys")

            # Create API Key in its dialog; the token is shown once.
            page.click("button:has-text('Create API Key')")
            dialog = page.locator("#create-key-dialog")
            expect(dialog).to_be_visible()
            page.fill("#create-description", "browser test")
            page.fill("#create-limit", "5.00")
            page.screenshot(path=str(screenshots / "create-key-dialog.png"))
            dialog.locator("button:has-text('Create')").click()
            expect(page.locator(".warning")).to_contain_text("It cannot be shown again.")
            token = page.input_value("#new-token")
            assert re.fullmatch(r"llmgtwy_[A-Za-z0-9_-]{40,}", token)
            page.click("button:has-text('Copy')")
            expect(page.locator(".copied")).not_to_be_empty()

            # Use it: the request succeeds and its cost shows up as usage.
            answer = _chat(gateway, token)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["role"] == "assistant"
            page.click("text=I have stored the key")
            row = page.locator("tr", has_text="browser test")
            expect(row.locator(".badge")).to_have_text("Active")
            expect(row.locator(".usage-text")).not_to_have_text("$0.00 / $5.00")
            expect(row.locator(".usage-text")).to_contain_text(" / $5.00")
            page.screenshot(path=str(screenshots / "api-keys.png"), full_page=True)
            assert token not in page.content()

            # Disable: the next request is refused with the documented message.
            row.locator("button:has-text('Disable')").click()
            expect(row.locator(".badge")).to_have_text("Inactive")
            refused = _chat(gateway, token)
            assert (refused.status_code, refused.json()) == (
                401,
                {"error": True, "status": 401, "message": INVALID_KEY},
            )
            row.locator("button:has-text('Enable')").click()
            expect(row.locator(".badge")).to_have_text("Active")

            # A deny_models rule gives the documented 403.
            row.locator("a", has_text="browser test").click()
            page.select_option("#rule-type", "deny_models")
            page.fill("#rule-values", "mock-model")
            page.click("button:has-text('Add rule')")
            expect(page.locator("table.rules")).to_contain_text("mock-model")
            denied = _chat(gateway, token)
            assert (denied.status_code, denied.json()) == (
                403,
                {
                    "error": True,
                    "status": 403,
                    "message": "Access denied: Model mock-model is in the denied models list",
                },
            )
            page.reload()
            expect(page.locator("table.activity")).to_contain_text("403")
            # The denial's reason is on the page, not only its status.
            expect(page.locator("table.activity .reason").first).to_have_text(
                "Access denied: Model mock-model is in the denied models list"
            )
            assert token not in page.content()

            # Deactivating the rule keeps it listed but lets the model through again.
            page.click("table.rules button:has-text('Deactivate')")
            expect(page.locator("table.rules")).to_contain_text("Inactive (not applied)")
            assert _chat(gateway, token).status_code == 200

            # Rename the key.
            page.fill("#key-description", "renamed in browser")
            page.click("button:has-text('Rename')")
            expect(page.locator("h1")).to_contain_text("renamed in browser")
            page.screenshot(path=str(screenshots / "key.png"), full_page=True)

            # Expiry: past its expires_at the key gets the documented invalid-token 401;
            # cleared, it works again.
            page.fill("#expires-at", "2020-01-01T00:00:00Z")
            page.click("button:has-text('Save expiry')")
            expect(page.locator("#key-expiry")).to_contain_text("2020-01-01T00:00:00Z")
            expired = _chat(gateway, token)
            assert (expired.status_code, expired.json()) == (
                401,
                {"error": True, "status": 401, "message": INVALID_KEY},
            )
            page.fill("#expires-at", "")
            page.click("button:has-text('Save expiry')")
            expect(page.locator("#key-expiry")).to_have_text("never")
            assert _chat(gateway, token).status_code == 200

            # Rotation without a grace period: the new token works, the old one is refused.
            page.fill("#grace", "0")
            page.click("button:has-text('Rotate token')")
            expect(page.locator("h1")).to_contain_text("New token for this API key")
            old_token, token = token, page.input_value("#new-token")
            assert token != old_token
            assert _chat(gateway, token).status_code == 200
            assert _chat(gateway, old_token).status_code == 401
            page.click("text=I have stored the key")
            page.locator("tr", has_text="renamed in browser").locator("a").first.click()
            expect(page.locator("h1")).to_contain_text("renamed in browser")

            # A project rule applies to every key of the project; deactivated, it does not.
            page.click("dd a:has-text('default')")
            page.fill("#project-name", "Default project")
            page.click("form.rename-form button:has-text('Rename')")
            expect(page.locator("h1")).to_contain_text("Default project")
            page.select_option("#project-rule-type", "deny_models")
            page.fill("#project-rule-values", "mock-*")
            page.click("button:has-text('Add project rule')")
            expect(page.locator("table.project-rules")).to_contain_text("mock-*")
            assert _chat(gateway, token).status_code == 403
            page.screenshot(path=str(screenshots / "project.png"), full_page=True)
            page.click("table.project-rules button:has-text('Deactivate')")
            expect(page.locator("table.project-rules")).to_contain_text("Inactive")
            assert _chat(gateway, token).status_code == 200

            # Organizations and projects: create both, then archive the project.
            page.click("nav a:has-text('Organizations')")
            page.fill("#org-id", "acme")
            page.fill("#org-credits", "25")
            page.click("button:has-text('Create organization')")
            expect(page.locator("tr[data-org-id=acme]")).to_contain_text("$25.00")
            page.fill("input[aria-label='Name of acme']", "Acme Inc")
            page.click("tr[data-org-id=acme] button:has-text('Rename')")
            expect(page.locator("input[aria-label='Name of acme']")).to_have_value("Acme Inc")
            page.screenshot(path=str(screenshots / "organizations.png"), full_page=True)
            page.click("nav a:has-text('Projects')")
            page.fill("#project-id", "research")
            page.select_option("#project-org", "acme")
            page.select_option("#project-mode", "credits")
            page.click("button:has-text('Create project')")
            expect(page.locator("h1")).to_contain_text("Project research")
            expect(page.locator("input[name=mode][value=credits]")).to_be_checked()
            page.check("input[name=confirm][value=archive]")
            page.click("button:has-text('Archive project')")
            expect(page.locator("h1 .badge")).to_have_text("Archived")

            # Sign out: the dashboard is closed again.
            # The audit log lists the dashboard's changes, and never a token.
            page.click("nav a:has-text('Audit log')")
            audit = page.locator("table.audit")
            for action in ("rotate", "set_expiry", "create"):
                expect(audit).to_contain_text(action)
            expect(audit).to_contain_text("dashboard")
            assert token not in page.content() and old_token not in page.content()
            page.screenshot(path=str(screenshots / "audit.png"), full_page=True)

            page.click("button:has-text('Sign out')")
            expect(page).to_have_url(f"{gateway.url}/dashboard/signin")
            page.goto(f"{gateway.url}/dashboard/keys")
            expect(page).to_have_url(f"{gateway.url}/dashboard/signin")
        finally:
            browser.close()
    assert token not in gateway.log.read_text(), "the plain token never reaches the log"
    shots = ("create-key-dialog.png", "api-keys.png", "key.png", "project.png", "organizations.png")
    for name in shots:
        assert (screenshots / name).read_bytes().startswith(b"\x89PNG"), name
