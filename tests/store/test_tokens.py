"""Tokens: format and randomness, hashing (plain and keyed), constant-time compare, display."""

from __future__ import annotations

import hashlib
import hmac
import re

from proxy.tokens import TOKEN_PREFIX, display_token, generate_token, hash_token, hashes_match


def test_tokens_have_the_prefix_and_40_url_safe_random_characters() -> None:
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("llmgtwy_")
        assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token.removeprefix(TOKEN_PREFIX))


def test_hash_is_sha256_or_hmac_with_the_server_secret() -> None:
    token = "llmgtwy_" + "a" * 43
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    keyed = hash_token(token, b"server-secret")
    assert keyed == hmac.new(b"server-secret", token.encode(), hashlib.sha256).hexdigest()
    assert keyed != hash_token(token) != hash_token(token, b"other-secret")


def test_hashes_match_compares_whole_digests() -> None:
    digest = hash_token(generate_token())
    assert hashes_match(digest, digest)
    assert not hashes_match(digest, digest[:-1] + ("0" if digest[-1] != "0" else "1"))
    assert not hashes_match(digest, digest[:10])


def test_display_shows_prefix_first_and_last_four_only() -> None:
    token = "llmgtwy_ABCDmiddle-part-that-stays-secret-0123WXYZ"
    shown = display_token(token)
    assert shown == "llmgtwy_ABCD…WXYZ"
    assert "middle" not in shown
