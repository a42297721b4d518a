"""Dashboard sign-in: admin token check, signed session cookies, CSRF tokens.

A session cookie is `<session id>.<expiry unix seconds>.<HMAC>`, signed with a key
derived from the admin token. Why signed rather than only server-side: the proxy
may run several worker processes, and each must accept a session another one
issued. Changing the admin token invalidates every session. Sign-out adds the
session id to this process's revocation set and clears the cookie in the browser.

The CSRF token of a session is an HMAC of its id, so every form of that session
carries the same unguessable value and no per-form state is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import msgspec

__all__ = ["SESSION_COOKIE", "SIGNIN_COOKIE", "Session", "SessionSigner", "tokens_match"]

SESSION_COOKIE = "gateway_dashboard_session"
SIGNIN_COOKIE = "gateway_dashboard_signin"
DEFAULT_SESSION_SECONDS = 8 * 60 * 60


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison, so response time reveals nothing about the token."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    expires_at: int
    csrf_token: str


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens for one admin token."""

    def __init__(
        self,
        admin_token: str,
        lifetime_seconds: int = DEFAULT_SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._admin_token = admin_token
        self._key = hmac.new(
            admin_token.encode("utf-8"), b"llm-gateway dashboard session v1", hashlib.sha256
        ).digest()
        self._lifetime = lifetime_seconds
        self._clock = clock
        # session id -> expiry; expired entries are pruned, the cookie is dead anyway.
        self._revoked: dict[str, int] = {}

    @property
    def lifetime_seconds(self) -> int:
        return self._lifetime

    def check_admin_token(self, given: str) -> bool:
        return tokens_match(given, self._admin_token)

    def issue(self) -> tuple[Session, str]:
        """A new session and the cookie value that carries it."""
        session_id = secrets.token_urlsafe(24)
        expires_at = int(self._clock()) + self._lifetime
        payload = f"{session_id}.{expires_at}"
        cookie = f"{payload}.{self._sign(payload)}"
        return Session(
            id=session_id, expires_at=expires_at, csrf_token=self._csrf(session_id)
        ), cookie

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie names, or None when it is missing, forged, expired or revoked."""
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, expires_text, signature = cookie.split(".")
        if not tokens_match(signature, self._sign(f"{session_id}.{expires_text}")):
            return None
        if not expires_text.isdigit() or int(expires_text) <= self._clock():
            return None
        if session_id in self._revoked:
            return None
        return Session(
            id=session_id, expires_at=int(expires_text), csrf_token=self._csrf(session_id)
        )

    def revoke(self, session: Session) -> None:
        now = self._clock()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.id] = session.expires_at

    def signin_nonce(self) -> tuple[str, str]:
        """A (cookie value, form value) pair protecting the sign-in form itself."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._csrf(f"signin:{nonce}")

    def signin_nonce_valid(self, cookie: str | None, form_value: str) -> bool:
        if not cookie:
            return False
        return tokens_match(form_value, self._csrf(f"signin:{cookie}"))

    def csrf_valid(self, session: Session, form_value: str) -> bool:
        return tokens_match(form_value, session.csrf_token)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def _csrf(self, subject: str) -> str:
        return hmac.new(self._key, f"csrf:{subject}".encode(), hashlib.sha256).hexdigest()
