"""Organizations, projects, keys and IAM rules on every backend: CRUD, migrations, decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from store_backends import Backend

from proxy.store import Conflict, NotFound, StoreError
from proxy.tokens import TOKEN_PREFIX, hash_token


def test_migrate_is_idempotent_and_keeps_data(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.create_organization("acme", Decimal("5.50"))
            await store.migrate()
            await store.migrate()
            assert (await store.get_organization("acme")).credits == Decimal("5.50")
        finally:
            await store.close()
        again = backend.open()
        try:
            await again.migrate()
            assert [o.id for o in await again.list_organizations()] == ["acme"]
        finally:
            await again.close()

    backend.run(body)


def test_ensure_defaults_creates_once_and_never_overwrites(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            org = await store.get_organization("default")
            project = await store.get_project("default")
            assert org.credits == Decimal("10.00")
            assert str(org.credits) == "10.00"
            assert (project.mode, project.organization_id, project.status) == (
                "hybrid",
                "default",
                "active",
            )
            await store.set_credits("default", Decimal("3"))
            await store.ensure_defaults()
            assert (await store.get_organization("default")).credits == Decimal("3")
        finally:
            await store.close()

    backend.run(body)


def test_projects_modes_provider_keys_and_archive(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.create_organization("acme", Decimal("1"))
            project = await store.create_project("web", "acme", "api-keys")
            assert (project.mode, project.status, project.provider_keys) == (
                "api-keys",
                "active",
                {},
            )
            await store.set_project_mode("web", "credits")
            await store.set_provider_key("web", "openai", {"env": "OPENAI_KEY"})
            project = await store.set_provider_key("web", "azure", {"value": "sk-secret"})
            assert project.mode == "credits"
            assert project.provider_keys == {
                "openai": {"env": "OPENAI_KEY"},
                "azure": {"value": "sk-secret"},
            }
            project = await store.set_provider_key("web", "azure", None)
            assert project.provider_keys == {"openai": {"env": "OPENAI_KEY"}}
            assert (await store.archive_project("web")).status == "deleted"
            assert [p.id for p in await store.list_projects()] == ["web"]
            with pytest.raises(StoreError, match="already exists"):
                await store.create_project("web", "acme", "hybrid")
            with pytest.raises(NotFound, match="`nope`"):
                await store.create_project("x", "nope", "hybrid")
            with pytest.raises(StoreError, match="mode `free` is unknown"):
                await store.set_project_mode("web", "free")  # type: ignore[arg-type]
        finally:
            await store.close()

    backend.run(body)


def test_keys_are_stored_as_hashes_and_found_by_hash(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, token = await store.create_key("default", Decimal("1000.00"), "ci key")
            assert token.startswith(TOKEN_PREFIX)
            assert len(token) - len(TOKEN_PREFIX) >= 40
            assert key.token_hash == hash_token(token) == store.hash_token(token)
            assert token not in key.display
            assert key.display.startswith(TOKEN_PREFIX) and key.display.endswith(token[-4:])
            context = await store.key_context(store.hash_token(token))
            assert context is not None
            assert context.key.id == key.id
            assert context.key.usage == Decimal(0)
            assert context.key.usage_limit == Decimal("1000.00")
            assert context.reserved == Decimal(0)
            assert context.project.id == "default"
            assert context.organization.credits == Decimal("10.00")
            assert context.rules == ()
            assert await store.key_context(store.hash_token(token + "x")) is None
            fetched = await store.get_key(key.id)
            assert fetched == key
            assert [k.id for k in await store.list_keys("default")] == [key.id]
            assert await store.list_keys("other") == []
        finally:
            await store.close()

    backend.run(body)


def test_key_status_limit_and_rules(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, token = await store.create_key("default", None, "")
            assert (await store.set_key_status(key.id, "inactive")).status == "inactive"
            assert (await store.set_key_status(key.id, "active")).status == "active"
            assert (await store.set_usage_limit(key.id, Decimal("0.10"))).usage_limit == Decimal(
                "0.10"
            )
            assert (await store.set_usage_limit(key.id, None)).usage_limit is None
            rule = await store.add_rule(key.id, "deny_models", ("gpt-4*", "o1"))
            other = await store.add_rule(key.id, "allow_operations", ("chat.completions",))
            assert [r.id for r in await store.list_rules(key.id)] == [rule.id, other.id]
            context = await store.key_context(store.hash_token(token))
            assert context is not None
            assert context.rules[0].values == ("gpt-4*", "o1")
            assert context.rules[0].type == "deny_models"
            assert (await store.set_rule_status(key.id, rule.id, "inactive")).status == "inactive"
            context = await store.key_context(store.hash_token(token))
            assert context is not None and context.rules[0].status == "inactive"
            assert (await store.set_rule_status(key.id, rule.id, "active")).status == "active"
            with pytest.raises(NotFound):
                await store.set_rule_status(key.id, "rule_missing", "active")
            assert (await store.rename_key(key.id, "  batch jobs ")).description == "batch jobs"
            with pytest.raises(StoreError, match="shorten it to 200"):
                await store.rename_key(key.id, "x" * 201)
            await store.remove_rule(key.id, rule.id)
            assert [r.id for r in await store.list_rules(key.id)] == [other.id]
            with pytest.raises(NotFound):
                await store.remove_rule(key.id, rule.id)
            with pytest.raises(StoreError, match="rule type `allow_colours`"):
                await store.add_rule(key.id, "allow_colours", ("red",))  # type: ignore[arg-type]
            with pytest.raises(NotFound, match="key `key_missing`"):
                await store.get_key("key_missing")
            with pytest.raises(StoreError, match="negative"):
                await store.set_usage_limit(key.id, Decimal("-1"))
            assert (await store.set_key_status(key.id, "deleted")).status == "deleted"
        finally:
            await store.close()

    backend.run(body)


def test_a_deleted_key_cannot_be_re_enabled(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, token = await store.create_key("default", None, "")
            await store.set_key_status(key.id, "deleted")
            for status in ("active", "inactive"):
                with pytest.raises(
                    Conflict, match=f"key `{key.id}` is deleted .* create a new key"
                ):
                    await store.set_key_status(key.id, status)
            # Deleting again is harmless; the record and its context stay deleted.
            assert (await store.set_key_status(key.id, "deleted")).status == "deleted"
            assert (await store.get_key(key.id)).status == "deleted"
            context = await store.key_context(store.hash_token(token))
            assert context is not None and context.key.status == "deleted"
            with pytest.raises(NotFound, match="key `key_missing`"):
                await store.set_key_status("key_missing", "active")
        finally:
            await store.close()

    backend.run(body)


def test_money_is_exact(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.create_organization("acme", Decimal("0.3"))
            await store.create_project("p", "acme", "credits")
            key, _ = await store.create_key("p", Decimal("0.3"), "")
            for _ in range(3):
                reservation = await store.reserve(key.id, "acme", Decimal("0.1"))
                assert reservation is not None
                await store.settle(reservation, Decimal("0.1"))
            # 0.1 + 0.1 + 0.1 == 0.3 exactly (a float ledger would let one more through).
            assert (await store.get_key(key.id)).usage == Decimal("0.3")
            assert (await store.get_organization("acme")).credits == Decimal("0.0")
            assert await store.reserve(key.id, None, Decimal("0.1")) is None
            tiny = await store.set_usage_limit(key.id, Decimal("1000000.000001"))
            assert tiny.usage_limit == Decimal("1000000.000001")
        finally:
            await store.close()

    backend.run(body)


def test_names_and_project_rules(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            assert (await store.rename_organization("default", " Acme Inc ")).name == "Acme Inc"
            assert (await store.get_organization("default")).name == "Acme Inc"
            assert (await store.rename_project("default", "Research")).name == "Research"
            assert [p.name for p in await store.list_projects()] == ["Research"]
            with pytest.raises(StoreError, match="shorten it to 100"):
                await store.rename_project("default", "x" * 101)
            _, token = await store.create_key("default", None, "")
            rule = await store.add_project_rule("default", "deny_models", ("gpt-4*",))
            other = await store.add_project_rule("default", "allow_providers", ("mock",))
            listed = await store.list_project_rules("default")
            assert [(r.id, r.type, r.values) for r in listed] == [
                (rule.id, "deny_models", ("gpt-4*",)),
                (other.id, "allow_providers", ("mock",)),
            ]
            off = await store.set_project_rule_status("default", rule.id, "inactive")
            assert off.status == "inactive"
            context = await store.key_context(store.hash_token(token))
            assert context is not None
            assert [(r.id, r.status) for r in context.project_rules] == [
                (rule.id, "inactive"),
                (other.id, "active"),
            ]
            await store.remove_project_rule("default", rule.id)
            assert [r.id for r in await store.list_project_rules("default")] == [other.id]
            with pytest.raises(NotFound):
                await store.remove_project_rule("default", rule.id)
            with pytest.raises(NotFound, match="project `ghost`"):
                await store.add_project_rule("ghost", "deny_models", ("x",))
        finally:
            await store.close()

    backend.run(body)
