"""Issue 12 point 6: with `GATEWAY_SECRET_KEY`, token hashes are keyed and provider keys
given by value are encrypted, on every backend; a database written without the key is
converted (keys on first use, everything by `protect_secrets`)."""

from __future__ import annotations

import secrets

import pytest
from store_backends import Backend

from proxy.secret_box import KEYED_PREFIX, SecretBox, SecretUnavailable, open_source
from proxy.tokens import hash_token

SECRET = secrets.token_urlsafe(32)


def test_a_database_written_without_the_key_is_converted(backend: Backend) -> None:
    box = SecretBox(SECRET)

    async def body() -> None:
        plain = backend.open()
        await plain.migrate()
        await plain.ensure_defaults()
        used, used_token = await plain.create_key("default", None, "used after the switch")
        idle, idle_token = await plain.create_key("default", None, "never used")
        await plain.set_provider_key("default", "openai", {"value": "sk-stored-plain"})
        await plain.set_provider_key("default", "groq", {"env": "GROQ_KEY"})
        assert used.token_hash == hash_token(used_token)
        await plain.close()

        store = backend.open(secrets=box)
        try:
            await store.migrate()
            # Found by its plain digest, converted on the spot.
            context = await store.key_context(store.hash_token(used_token))
            assert context is not None and context.key.id == used.id
            assert context.key.token_hash == box.keyed(hash_token(used_token))
            assert (await store.get_key(used.id)).token_hash == context.key.token_hash
            again = await store.key_context(context.key.token_hash)  # the refresh path
            assert again is not None and again.key.id == used.id

            assert await store.protect_secrets() == (1, 1)
            assert await store.protect_secrets() == (0, 0)
            assert (await store.get_key(idle.id)).token_hash == box.keyed(hash_token(idle_token))
            found = await store.key_context(store.hash_token(idle_token))
            assert found is not None and found.key.id == idle.id

            project = await store.get_project("default")
            assert project.provider_keys["groq"] == {"env": "GROQ_KEY"}
            sealed = project.provider_keys["openai"]
            assert set(sealed) == {"encrypted"} and "sk-stored-plain" not in sealed["encrypted"]
            assert open_source(sealed, box) == "sk-stored-plain"
            with pytest.raises(SecretUnavailable, match="cannot be decrypted"):
                open_source(sealed, SecretBox(secrets.token_urlsafe(32)))
            with pytest.raises(SecretUnavailable, match="GATEWAY_SECRET_KEY is not set"):
                open_source(sealed, None)
        finally:
            await store.close()

    backend.run(body)


def test_new_keys_and_provider_keys_are_protected(backend: Backend) -> None:
    box = SecretBox(SECRET)

    async def body() -> None:
        store = backend.open(secrets=box)
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, token = await store.create_key("default", None, "new")
            assert key.token_hash.startswith(KEYED_PREFIX)
            assert key.token_hash == box.keyed(hash_token(token))
            context = await store.key_context(store.hash_token(token))
            assert context is not None and context.key.id == key.id
            assert await store.key_context(store.hash_token(token + "x")) is None
            project = await store.set_provider_key("default", "openai", {"value": "sk-new"})
            assert set(project.provider_keys["openai"]) == {"encrypted"}
            assert open_source(project.provider_keys["openai"], box) == "sk-new"
        finally:
            await store.close()

    backend.run(body)


def test_a_short_secret_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        SecretBox("too-short")
