"""Hot reload of the policy directory and catalog with the real engine."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from proxy.config import default_policy_dir
from proxy.documents import InputDocument, RequestDocument
from proxy.policy import PolicyHolder, PolicyLoadError


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), target)
    return target


def _no_token_decision(holder: PolicyHolder) -> tuple[int, str]:
    request = RequestDocument(
        operation="models.list", token_present=False, time="2026-11-27T10:00:00Z", client_ip="::1"
    )
    decision = holder.current.decide(InputDocument(request=request))
    assert decision is not None
    return decision.status, decision.message


def _touch_later(path: Path) -> None:
    """Make the change visible to an mtime check even on coarse file-system clocks."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_bad_policy_keeps_the_old_one_and_logs_the_location(
    policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))
    before = holder.current
    assert _no_token_decision(holder)[0] == 401
    broken = policy_dir / "broken.rego"
    broken.write_text("package gateway\n\nallow if {\n  input.x ==\n}\n")
    with caplog.at_level(logging.ERROR, logger="gateway.policy"):
        assert holder.reload() is False
    assert holder.current is before
    assert re.search(r"broken\.rego:\d+:\d+", caplog.text), caplog.text
    assert _no_token_decision(holder)[0] == 401


def test_a_misspelt_input_path_fails_the_reload_against_the_input_schema(
    policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))
    before = holder.current
    rego = policy_dir / "gateway.rego"
    rego.write_text(rego.read_text().replace("input.request.model", "input.reqest.model", 1))
    with caplog.at_level(logging.ERROR, logger="gateway.policy"):
        assert holder.reload() is False
    assert holder.current is before
    assert re.search(
        r"gateway\.rego:\d+:\d+: rego_type_error: undefined ref: input\.reqest", caplog.text
    ), caplog.text
    assert "input.schema.json" in caplog.text


def test_good_change_is_swapped_in(policy_dir: Path) -> None:
    holder = PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))
    rego = policy_dir / "gateway.rego"
    text = rego.read_text()
    old = "Unauthorized: No API key provided."
    assert old in text
    rego.write_text(text.replace(old, "Unauthorized: bring a key."))
    assert holder.reload() is True
    status, message = _no_token_decision(holder)
    assert status == 401 and message.startswith("Unauthorized: bring a key.")


def test_bad_catalog_keeps_the_old_policy(
    policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))
    before = holder.current
    (policy_dir / "catalog.yaml").write_text("models: [\n")
    with caplog.at_level(logging.ERROR, logger="gateway.policy"):
        assert holder.reload() is False
    assert holder.current is before
    assert "catalog.yaml:" in caplog.text


def test_a_bad_policy_at_start_is_an_error(policy_dir: Path) -> None:
    (policy_dir / "broken.rego").write_text("package gateway\nx := \n")
    with pytest.raises(PolicyLoadError, match=r"broken\.rego:\d+:\d+"):
        PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))


def test_watch_reloads_on_file_change(policy_dir: Path) -> None:
    holder = PolicyHolder(str(policy_dir), str(policy_dir / "catalog.yaml"))
    before = holder.current
    rego = policy_dir / "gateway.rego"

    async def scenario() -> None:
        watcher = asyncio.create_task(holder.watch(0.01))
        try:
            rego.write_text(rego.read_text().replace("No API key provided.", "Key needed."))
            _touch_later(rego)
            for _ in range(1000):
                if holder.current is not before:
                    break
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()

    asyncio.run(scenario())
    assert holder.current is not before
    assert _no_token_decision(holder)[1].startswith("Unauthorized: Key needed.")


def test_without_the_schema_file_the_input_document_types_are_the_schema(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import proxy.policy
    from policy_engine.typecheck import parse_input_schema
    from policy_engine.typecheck.types import Obj

    monkeypatch.setattr(proxy.policy, "INPUT_SCHEMA_FILE", tmp_path / "absent.json")
    text, name = proxy.policy.input_schema_text()
    assert "InputDocument" in name
    kind = parse_input_schema(text, name).type
    assert isinstance(kind, Obj) and kind.prop("request") is not None
