"""CSRF tokens: one per session, derived from the session's secret id.

The token is HMAC-SHA256(session id, purpose). It needs no storage, cannot be
turned back into the session id (which only the HttpOnly cookie carries), and
dies with the session. Every POST of the UI must carry it as the form field
`csrf_token`; it is compared in constant time.

Before login there is no session, so the login form uses a double-submit
token instead: a random value both in a short-lived cookie and in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

FIELD = "csrf_token"
_PURPOSE = b"safeset-webui-csrf-v1"


def token_for_session(session_secret: str) -> str:
    return hmac.new(session_secret.encode("ascii"), _PURPOSE, hashlib.sha256).hexdigest()


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time equality; a missing or empty token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
