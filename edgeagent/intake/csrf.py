"""CSRF protection for the public forms without keeping anything about the visitor.

Double submit, keyed: the page sets one cookie holding a random value (the only cookie
the pages ever set; session-only, ``HttpOnly``, ``SameSite=Strict``) and puts
``HMAC(key, value)`` in a hidden field. A submission passes only when the field matches
the cookie it came with. The key lives in memory and changes at every start, so forms
older than the process fail (the page is shown again with a fresh token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE_NAME = "csrf"
FIELD_NAME = "csrf_token"


class CsrfTokens:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode("ascii", "replace"), hashlib.sha256).hexdigest()

    def issue(self, cookie: str | None) -> tuple[str, str]:
        """``(cookie, form token)``: the visitor's cookie if it is well formed, else a new one."""
        if cookie is None or len(cookie) != 32 or not cookie.isalnum():
            cookie = secrets.token_hex(16)
        return cookie, self.token_for(cookie)

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or len(token) != 64:
            return False
        return hmac.compare_digest(self.token_for(cookie), token)
