"""Key expiry, rotation and the audit log on every backend (issue 13, points 3 and 4)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from store_backends import Backend

from proxy.audit import Actor, AuditedAdmin
from proxy.store import Conflict, StoreError
from proxy.store.base import AuditEntry, KeyActivity


def test_expiry_is_normalised_to_utc_seconds_and_can_be_cleared(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, _ = await store.create_key(
                "default", None, "", expires_at="2027-01-01T01:30:00.5+01:30"
            )
            assert key.expires_at == "2027-01-01T00:00:00Z"
            assert (await store.get_key(key.id)).expires_at == "2027-01-01T00:00:00Z"
            assert (await store.set_key_expiry(key.id, None)).expires_at is None
            with pytest.raises(StoreError, match="2027-01-01T00:00:00Z"):
                await store.set_key_expiry(key.id, "2027-01-01 00:00")  # no zone
            # Past what the policy can compare (64-bit nanoseconds): refused, not expired.
            with pytest.raises(StoreError, match="after 2262-04-11"):
                await store.set_key_expiry(key.id, "2999-01-01T00:00:00Z")
            late = await store.set_key_expiry(key.id, "2262-04-11T23:47:16Z")
            assert late.expires_at == "2262-04-11T23:47:16Z"
        finally:
            await store.close()

    backend.run(body)


def test_rotation_keeps_the_record_and_the_previous_token_for_its_grace(
    backend: Backend,
) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, old = await store.create_key("default", Decimal("5.00"), "ci")
            rotated, new = await store.rotate_key(key.id, 60)
            assert rotated.id == key.id and rotated.usage_limit == Decimal("5.00")
            assert rotated.token_hash == store.hash_token(new) != key.token_hash
            current = await store.key_context(store.hash_token(new))
            previous = await store.key_context(store.hash_token(old))
            assert current is not None and current.token_expires_at is None
            assert previous is not None and previous.key.id == key.id
            assert previous.token_expires_at is not None
            # A second rotation without grace: neither earlier token works any more.
            _, newest = await store.rotate_key(key.id, 0)
            assert await store.key_context(store.hash_token(old)) is None
            assert await store.key_context(store.hash_token(new)) is None
            assert await store.key_context(store.hash_token(newest)) is not None
            await store.set_key_status(key.id, "deleted")
            with pytest.raises(Conflict, match="deleted"):
                await store.rotate_key(key.id, 0)
            with pytest.raises(StoreError, match="grace"):
                await store.rotate_key(key.id, -1)
        finally:
            await store.close()

    backend.run(body)


def test_every_audited_change_is_recorded_once_without_secrets(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            admin = AuditedAdmin(store, Actor(kind="admin-api", client="192.0.2.7"))
            await admin.create_organization("acme", Decimal("1.00"))
            await admin.create_project("web", "acme", "hybrid")
            await admin.set_provider_key("web", "openai", {"value": "sk-very-secret-1234"})
            key, token = await admin.create_key("web", None, "")
            await admin.set_usage_limit(key.id, Decimal("2.50"))
            rule = await admin.add_rule(key.id, "deny_models", ("gpt-4*",))
            await admin.remove_rule(key.id, rule.id)
            _, new_token = await admin.rotate_key(key.id, 30)
            entries = await admin.list_audit(None, None, 100)
            assert [(e.action, e.object_type) for e in entries] == [
                ("create", "organization"),
                ("create", "project"),
                ("set_provider_key", "project"),
                ("create", "key"),
                ("set_usage_limit", "key"),
                ("create", "rule"),
                ("remove", "rule"),
                ("rotate", "key"),
            ]
            assert {(e.actor, e.client) for e in entries} == {("admin-api", "192.0.2.7")}
            limit = entries[4]
            assert (limit.before, limit.after) == ({"usage_limit": None}, {"usage_limit": "2.50"})
            text = repr(entries)
            for secret in (token, new_token, key.token_hash, "sk-very-secret-1234"):
                assert secret not in text
            assert [e.action for e in await admin.list_audit(None, key.id, 100)] == [
                "create",
                "set_usage_limit",
                "rotate",
            ]
            assert len(await admin.list_audit(None, "rule", 100)) == 2
            assert len(await admin.list_audit(None, f"key:{key.id}", 2)) == 2
            assert await admin.list_audit("2999-01-01T00:00:00Z", None, 100) == []
            # A change that fails records nothing.
            with pytest.raises(StoreError):
                await admin.set_usage_limit("key_missing", Decimal(1))
            assert len(await admin.list_audit(None, None, 100)) == len(entries)
        finally:
            await store.close()
        again = backend.open()  # kept in the database: another process sees the same log
        try:
            await again.migrate()
            seen = await again.list_audit(None, None, 100)
            assert len(seen) == 8 and all(isinstance(e, AuditEntry) for e in seen)
        finally:
            await again.close()

    backend.run(body)


def test_key_activity_adds_up_across_flushes_and_keeps_the_latest_use(
    backend: Backend,
) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            first = KeyActivity(
                key_id="key_a",
                requests=2,
                prompt_tokens=10,
                completion_tokens=5,
                last_used_at="2026-12-01T10:00:00Z",
            )
            older = KeyActivity(
                key_id="key_a",
                requests=1,
                prompt_tokens=1,
                completion_tokens=1,
                last_used_at="2026-11-30T10:00:00Z",
            )
            other = KeyActivity(key_id="key_b", requests=1, last_used_at="2026-12-02T00:00:00Z")
            await store.add_key_activity([first, other])
            await store.add_key_activity([older])  # another instance's, a bit older
            totals = await store.key_activity(None)
            assert totals["key_a"] == KeyActivity(
                key_id="key_a",
                requests=3,
                prompt_tokens=11,
                completion_tokens=6,
                last_used_at="2026-12-01T10:00:00Z",
            )
            assert set(await store.key_activity(["key_b"])) == {"key_b"}
        finally:
            await store.close()

    backend.run(body)


def test_renames_and_rule_changes_are_audited_too(tmp_path: Any) -> None:
    from proxy.store import open_store

    async def body() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'audit.db'}")
        try:
            await store.migrate()
            await store.ensure_defaults()
            admin = AuditedAdmin(store, Actor(kind="dashboard", client="198.51.100.2"))
            await admin.rename_organization("default", "Acme")
            await admin.rename_project("default", "Web")
            project_rule = await admin.add_project_rule("default", "deny_models", ("gpt-4*",))
            await admin.set_project_rule_status("default", project_rule.id, "inactive")
            await admin.remove_project_rule("default", project_rule.id)
            key, _ = await admin.create_key("default", None, "old")
            await admin.rename_key(key.id, "new")
            rule = await admin.add_rule(key.id, "allow_models", ("mock-*",))
            await admin.set_rule_status(key.id, rule.id, "inactive")
            entries = await admin.list_audit(None, None, 100)
            assert [(e.action, e.object_type) for e in entries] == [
                ("rename", "organization"),
                ("rename", "project"),
                ("create", "project_rule"),
                ("set_status", "project_rule"),
                ("remove", "project_rule"),
                ("create", "key"),
                ("rename", "key"),
                ("create", "rule"),
                ("set_status", "rule"),
            ]
            assert (entries[6].before, entries[6].after) == (
                {"description": "old"},
                {"description": "new"},
            )
            assert entries[8].after == {"status": "inactive"}
        finally:
            await store.close()

    asyncio.run(body())
