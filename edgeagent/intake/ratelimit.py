"""Abuse limits of the public pages, held in memory only.

- :class:`SourceLimiter`: at most ``rate`` submissions per ``window`` seconds per source.
  A source is known only as ``HMAC(key, address)`` with a key made at start and never
  written anywhere; a source's slot is dropped when its window ends, so nothing about a
  sender outlives ``window`` seconds, and the process never holds the address itself.
- :class:`DailyCap`: at most ``cap`` accepted submissions per UTC day across all sources;
  when it is reached new submissions are refused until midnight UTC and the caller raises
  the alert metric.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SourceLimiter:
    def __init__(
        self, rate: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.window = window
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._slots: dict[bytes, tuple[float, int]] = {}  # keyed hash -> (window start, n)

    def _source_key(self, address: str) -> bytes:
        return hmac.new(self._key, address.encode("utf-8", "replace"), hashlib.sha256).digest()[:16]

    def allow(self, address: str) -> bool:
        """Count one submission from ``address``; ``False`` if over the limit."""
        now = self._clock()
        self._expire(now)
        key = self._source_key(address)
        start, count = self._slots.get(key, (now, 0))
        if count >= self.rate:
            return False
        self._slots[key] = (start, count + 1)
        return True

    def _expire(self, now: float) -> None:
        # Dicts keep insertion order and every slot lives ``window``: the oldest go first.
        for key, (start, _) in list(self._slots.items()):
            if now - start < self.window:
                break
            del self._slots[key]

    def __len__(self) -> int:
        """Sources currently remembered (each for less than ``window`` seconds)."""
        self._expire(self._clock())
        return len(self._slots)


class DailyCap:
    def __init__(self, cap: int, *, today: Callable[[], str] | None = None) -> None:
        self.cap = cap
        self._today = today or (lambda: datetime.now(UTC).date().isoformat())
        self._day = ""
        self._count = 0

    def take(self) -> bool:
        """Count one submission; ``False`` once today's cap is reached."""
        day = self._today()
        if day != self._day:
            self._day, self._count = day, 0
        if self._count >= self.cap:
            return False
        self._count += 1
        return True

    @property
    def reached(self) -> bool:
        return self._day == self._today() and self._count >= self.cap
