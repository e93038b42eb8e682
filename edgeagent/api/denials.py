"""Denied requests: a budget per source, and their audit records aggregated.

A flood of requests with a wrong token must cost neither a store read nor an audit row
each. Two parts:

- :class:`SourceBudget`: a token bucket per source (the client address) that only denied
  requests spend. A source over budget is answered ``429`` before its token is looked up
  (a token verified moments ago, still in the authenticator's cache, passes). Sources
  are kept as a keyed hash (HMAC with a random per-process key: the table cannot be
  reversed by hashing every address) and only until their bucket has refilled.
- :class:`DenialLedger`: the first denial of a kind (actor, route, status, reason) in an
  interval is audited at once, so one failed attempt shows at once; the rest of that
  interval are counted and audited as one row with the count when the interval ends
  (:func:`edgeagent.api.app.create_app` runs the flush). Every row's ``count`` says how
  many denials it stands for.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edgeagent.api.auth import RateLimiter

_SOURCE_HASH_BYTES = 16


class SourceBudget:
    """How many denied requests a source may make: ``per_minute``, bursts up to that."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._buckets = RateLimiter(per_minute, clock)
        self._key = os.urandom(32)

    def source(self, remote: str | None) -> bytes:
        """The keyed hash standing for a client address (never kept in the clear)."""
        text = (remote or "").encode("utf-8", "surrogatepass")
        return hmac.new(self._key, text, hashlib.sha256).digest()[:_SOURCE_HASH_BYTES]

    def wait(self, source: bytes) -> float:
        """0 while ``source`` may still be denied; else seconds until it may again."""
        return self._buckets.wait(source)

    def spend(self, source: bytes) -> None:
        """Count one denied request against ``source``."""
        self._buckets.take(source)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class DenialKind:
    """What a denial audit row says, apart from its count."""

    actor: str
    subject: str
    status: int
    reason: str

    def detail(self, count: int) -> dict[str, object]:
        return {"status": self.status, "reason": self.reason, "count": count}


class DenialLedger:
    """Counts denials per kind between flushes (thread-safe)."""

    def __init__(self) -> None:
        self._counts: dict[DenialKind, int] = {}
        self._lock = threading.Lock()

    def record(self, kind: DenialKind) -> bool:
        """Count one denial; True when it is the first of its kind since the last flush
        (audit it now), False when it is counted for the next flush."""
        with self._lock:
            seen = self._counts.get(kind)
            if seen is None:
                self._counts[kind] = 0
                return True
            self._counts[kind] = seen + 1
            return False

    def drain(self) -> list[tuple[DenialKind, int]]:
        """The kinds with denials not yet audited and their counts; starts a new interval."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return [(kind, n) for kind, n in counts.items() if n]
