"""Bearer tokens, roles and the per-token rate limiter.

Roles are cumulative: ``noc`` < ``analyst`` < ``supervisor`` < ``admin``. A route declares
the lowest role it needs (see :mod:`edgeagent.api.routes`); :func:`authenticate` turns the
``Authorization`` header into a :class:`Principal` or raises :class:`Denied`.

Tokens are looked up by the SHA-256 digest of the presented secret. The lookup compares
digests, never secrets, so its timing tells an attacker nothing about any real secret;
when the store hands back the stored digest we also compare it with
:func:`hmac.compare_digest` as a second, constant-time check.

Audit records of denied attempts name the token (``name``) or ``anonymous`` — never the
presented secret, and never the raw request path (a path may carry a list entry).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web

from edgeagent.roles import Role
from edgeagent.store.base import Store
from edgeagent.tokens import hash_token

_MAX_TOKEN_CHARS = 512  # anything longer is not one of ours; don't even hash it


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit actor) and its role."""

    name: str
    role: Role
    token_id: int


ANONYMOUS = Principal("anonymous", Role.PUBLIC, 0)


class Denied(Exception):
    """Authentication (401) or authorisation (403) failed.

    ``actor`` is the token name, or ``anonymous`` when no valid token was presented.
    ``reason`` is safe to show and to audit.
    """

    def __init__(self, status: int, actor: str, reason: str) -> None:
        self.status = status
        self.actor = actor
        self.reason = reason
        super().__init__(reason)


def bearer_secret(request: web.BaseRequest) -> str | None:
    """The token in ``Authorization: Bearer <token>``, or ``None`` if absent/malformed."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > _MAX_TOKEN_CHARS:
        return None
    return secret


def authenticate(store: Store, secret: str | None) -> Principal:
    """Resolve a presented secret to a principal; raise ``Denied(401)`` if it is not valid.

    Blocking (one store read): call it from a worker thread.
    """
    if secret is None:
        raise Denied(401, "anonymous", "missing or malformed bearer token")
    digest = hash_token(secret)
    token = store.token_by_hash(digest)
    if token is None:
        raise Denied(401, "anonymous", "unknown token")
    stored = getattr(token, "token_hash", None)
    if isinstance(stored, bytes) and not hmac.compare_digest(stored, digest):
        raise Denied(401, "anonymous", "unknown token")
    if token.revoked:
        raise Denied(401, token.name, "token revoked")
    try:
        role = Role.parse(token.role)
    except ValueError:
        raise Denied(403, token.name, "token has no valid role") from None
    return Principal(token.name, role, token.id)


class Authenticator:
    """:func:`authenticate` with a short cache of *valid* tokens.

    Without it every request would queue a store read behind the store's writer; with it
    a known token costs one SHA-256 and a dict lookup on the event loop. Only successful
    lookups are cached (a wrong secret always goes to the store), for ``ttl`` seconds: a
    token revoked with ``edgeagent token revoke`` stops working within ``ttl``.
    """

    _MAX_ENTRIES = 1024

    def __init__(self, store: Store, ttl: float, clock: Callable[[], float]) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str | None) -> Principal | None:
        """The principal for ``secret`` if it was verified less than ``ttl`` ago (cheap)."""
        if secret is None or self.ttl <= 0:
            return None
        digest = hash_token(secret)
        with self._lock:
            hit = self._cache.get(digest)
            if hit is None:
                return None
            if hit[1] <= self._clock():
                del self._cache[digest]
                return None
            return hit[0]

    def forget(self, token_id: int) -> None:
        """Drop token ``token_id`` from the cache (it was revoked in this process)."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0].token_id != token_id}

    def check(self, secret: str | None) -> Principal:
        """Verify against the store (blocking: call from a worker thread) and cache."""
        who = authenticate(self.store, secret)
        if secret is not None and self.ttl > 0:
            with self._lock:
                if len(self._cache) >= self._MAX_ENTRIES:
                    self._cache.clear()
                self._cache[hash_token(secret)] = (who, self._clock() + self.ttl)
        return who


def authorize(who: Principal, needed: Role) -> None:
    """Raise ``Denied(403)`` unless ``who`` holds ``needed`` or a higher role."""
    if who.role < needed:
        raise Denied(403, who.name, f"role {who.role.label} below required {needed.label}")


class RateLimiter:
    """Token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``.

    Thread-safe; ``clock`` is monotonic seconds. A key whose bucket has refilled is the
    same as a key never seen, so such keys are forgotten (at most a minute or two after
    their last request): the table stays as small as the set of recent callers.
    """

    _MAX_KEYS = 65536

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._pruned = clock()

    def take(self, key: object) -> float:
        """Spend one request for ``key``. Returns 0 if allowed, else seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self._MAX_KEYS or now - self._pruned >= 60.0:
                self._forget_refilled(now)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def wait(self, key: object) -> float:
        """Seconds until ``key`` may spend a request (0: now); spends nothing."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: object, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def _forget_refilled(self, now: float) -> None:
        self._pruned = now
        self._buckets = {
            key: (tokens, last)
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate < self.capacity
        }
        if len(self._buckets) > self._MAX_KEYS:
            # A flood from more sources than the table holds: start over rather than
            # grow without bound (each source gets its burst again).
            self._buckets.clear()


LOOKUP_LIMITER = web.AppKey("edgeagent_api_lookup_limiter", RateLimiter)
AUTHENTICATOR = web.AppKey("edgeagent_api_authenticator", Authenticator)
