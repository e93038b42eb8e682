"""Console sessions: who is signed in, kept in memory only.

A session is created at sign-in with a new random identifier (never one the browser
offered: no session fixation), carried in an ``HttpOnly; SameSite=Strict`` cookie, and
ends after ``idle`` seconds without a request, after ``lifetime`` seconds in any case, at
sign-out, or when the process restarts. Each session has its own CSRF token, which every
form carries back (compared in constant time).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from edgeagent.api.auth import Principal

COOKIE_NAME = "edgeagent_console"
CSRF_FIELD = "csrf_token"
_ID_CHARS = 43  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in person: ``who`` (token name, role, token id) and the session's
    CSRF token; times are monotonic seconds."""

    sid: str
    who: Principal
    csrf: str
    started: float
    last_seen: float
    screened: bool = False  # the privacy screen is on (kept across pages)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    """The live sessions (thread-safe)."""

    _MAX = 10_000

    def __init__(self, idle: float, lifetime: float, clock: Callable[[], float]) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._clock = clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, who: Principal) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), who, secrets.token_urlsafe(32), now, now)
        with self._lock:
            if len(self._by_id) >= self._MAX:
                self._drop_expired(now)
            self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session ``sid`` names (its idle clock restarted), else ``None``."""
        if sid is None or len(sid) != _ID_CHARS:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if self._expired(session, now):
                del self._by_id[sid]
                return None
            session = replace(session, last_seen=now)
            self._by_id[sid] = session
            return session

    def set_screen(self, sid: str, on: bool) -> None:
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None:
                self._by_id[sid] = replace(session, screened=on)

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def end_token(self, token_id: int) -> None:
        """End every session signed in with token ``token_id`` (it was revoked)."""
        with self._lock:
            self._by_id = {k: s for k, s in self._by_id.items() if s.who.token_id != token_id}

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.idle or now - session.started > self.lifetime

    def _drop_expired(self, now: float) -> None:
        self._by_id = {k: s for k, s in self._by_id.items() if not self._expired(s, now)}
