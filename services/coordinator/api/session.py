"""The web UI's sign-in, as the API checks it: a signed session cookie (starlette's SessionMiddleware) that
says its holder typed the coordinator's token into the UI's login form.

The cookie never holds the token itself: it holds `proof(token)`, an HMAC of the token, so a cookie made for
one token is worthless once the token changes. The cookie's signing key is SEAL_COORDINATOR_UI_SESSION_SECRET
when set, else derived from the token (whoever could forge it already holds the token), else (no token: the
API is open on loopback anyway) random for this process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import HTTPConnection

COOKIE = "seal_ui"
#: The session's key that holds the proof of sign-in.
AUTH = "auth"
#: Twelve hours: a working day, then the form again.
MAX_AGE_SECONDS = 12 * 3600
#: Only reads ride on the cookie: anything that changes a run comes through the UI's own forms (with their
#: CSRF check) or with the bearer header.
SAFE_METHODS = frozenset({"GET", "HEAD"})


def session_secret(configured: str | None, token: str | None) -> str:
    """The key that signs the cookie: the configured one, else derived from the token, else random."""
    if configured:
        return configured
    if token:
        return hmac.new(token.encode(), b"seal-lab ui session key v1", hashlib.sha256).hexdigest()
    return secrets.token_urlsafe(32)


def proof(token: str) -> str:
    """What a signed-in session holds: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"seal-lab ui signed in v1", hashlib.sha256).hexdigest()


def signed_in(connection: HTTPConnection, token: str | None) -> bool:
    """True when no token is set, or the request's session proves the token was given."""
    if token is None:
        return True
    if "session" not in connection.scope:  # no SessionMiddleware (an app built without the UI)
        return False
    held = connection.session.get(AUTH)
    return isinstance(held, str) and hmac.compare_digest(held, proof(token))
