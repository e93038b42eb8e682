"""Reveals: showing a masked list entry in full, on purpose, audited, counted per day.

A reveal is one audit row (action ``console.reveal``, subject ``decision:<id>`` or
``ticket:<id>``, the reason in the detail; never the entry). The per-person count of the
day (in the agent's time zone) is what the console shows the person and supervisors; it
is rebuilt from the audit log at start, so a restart does not reset it.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, datetime, time, tzinfo

from edgeagent.store.base import Store

ACTION = "console.reveal"
_SEED_PAGE = 1000


class RevealCounter:
    """Reveals per person for today (thread-safe)."""

    def __init__(self, store: Store, zone: tzinfo) -> None:
        self.store = store
        self.zone = zone
        self._day: date | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _today(self) -> date:
        return datetime.now(self.zone).date()

    def seed(self) -> None:
        """Count today's reveals from the audit log (blocking)."""
        day = self._today()
        since = datetime.combine(day, time(), self.zone)
        seen: set[int] = set()
        counts: Counter[str] = Counter()
        while True:
            rows = self.store.audit_since(since, _SEED_PAGE)
            fresh = [r for r in rows if r.id not in seen]
            for r in fresh:
                seen.add(r.id)
                if r.action == ACTION:
                    counts[r.actor] += 1
            if len(rows) < _SEED_PAGE or not fresh:
                break
            since = rows[-1].at
        with self._lock:
            self._day, self._counts = day, counts

    def record(self, actor: str, subject: str, reason: str) -> int:
        """Audit one reveal (blocking) and return the person's count for today."""
        self.store.append_audit(actor, ACTION, subject, {"reason": reason})
        with self._lock:
            self._roll()
            self._counts[actor] += 1
            return self._counts[actor]

    def of(self, actor: str) -> int:
        with self._lock:
            self._roll()
            return self._counts[actor]

    def everyone(self) -> dict[str, int]:
        with self._lock:
            self._roll()
            return dict(sorted(self._counts.items()))

    def _roll(self) -> None:
        day = self._today()
        if day != self._day:
            self._day, self._counts = day, Counter()
