"""The centre's side of the edge role: the index artefacts it serves and what edges report.

:class:`IndexPublication` holds the index the centre enforces (its bytes, version and
digest) and the edits that led to it from earlier versions (at most ``keep``). For an
edge at version ``since`` it answers (:meth:`IndexPublication.artefact`):

- nothing, when ``since`` and the edge's ``digest`` name the current index (HTTP 304);
- a ``delta``: the edits since ``since`` composed into one, when the chain reaches back
  that far from the very index the edge holds (its digest: after a restart the centre
  lays its index out afresh, and an edit applies only to the bytes it was made from),
  and the delta is smaller than half the index;
- the ``full`` index otherwise (an unknown or too old version, a fresh layout after a
  restart, a feed generation that changed most of the index).

Every artefact is signed (:mod:`edgeagent.proxy.artefact`), and cached until the next
version (the full index's SHA-256 is computed once per version, not once per edge).
:meth:`IndexPublication.wait` is the long poll: it returns as soon as a version newer than
the edge's is published, or after the wait. Edges report the version they installed and
whether their canary saw it (:meth:`IndexPublication.report`); :meth:`members` turns the
reports into ``GET /v1/fleet`` rows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from edgeagent.enforcement.base import FleetMember
from edgeagent.proxy.artefact import Artefact, EdgeReport, sign
from edgeagent.proxy.indexwriter import IndexEdit, compose, encode_edit, index_digest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ENFORCER = "proxy"
EDGE_KIND = "edge"


class IndexPublication:
    """See the module docstring. ``publish``/``advance`` may run in a worker thread;
    :meth:`announce` (event loop) wakes the long polls."""

    def __init__(self, key: Ed25519PrivateKey, *, keep: int = 512, stale_after: float = 120.0):
        self._key = key
        self._lock = threading.Lock()
        self.data = b""
        self.version = -1
        self.digest = ""
        self._edits: deque[tuple[str, IndexEdit]] = deque(maxlen=keep)  # base digest, edit
        self._cache: dict[tuple[int, str], Artefact | None] = {}  # for the current version
        self._event: asyncio.Event | None = None
        self._released = False
        self.reports: dict[str, EdgeReport] = {}
        self.stale_after = stale_after

    # -- the centre's index

    def replace(self, data: bytes, version: int) -> None:
        """A freshly laid out index: earlier versions get the full index."""
        with self._lock:
            self.data, self.version, self.digest = data, version, index_digest(data)
            self._edits.clear()
            self._cache = {}

    def advance(self, edit: IndexEdit, data: bytes) -> None:
        """The index after ``edit`` (from the current version)."""
        with self._lock:
            if edit.base != self.version:
                raise ValueError(f"edit from {edit.base}, publication at {self.version}")
            self._edits.append((self.digest, edit))
            self.data, self.version, self.digest = data, edit.version, index_digest(data)
            self._cache = {}

    def announce(self) -> None:
        """Wake every long poll (call on the event loop after a publish)."""
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def release(self) -> None:
        """The agent is stopping: wake every long poll, and hold none from now on (a
        held poll would keep the stop waiting for its request to finish)."""
        self._released = True
        self.announce()

    async def wait(self, since: int, seconds: float, digest: str = "") -> None:
        """Return when a version other than ``since`` (or, given ``digest``, another
        index at that version: new IP-literal aliases) is published, or after ``seconds``."""
        if self._released or seconds <= 0:
            return
        if self.version != since or (digest and digest != self.digest):
            return
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return

    # -- answers

    def artefact(self, since: int | None, digest: str = "") -> Artefact | None:
        """What an edge holding the index ``since``/``digest`` (``None``: none) needs;
        ``None``: it holds the current one. Blocking (hashing and signing): call from a
        worker thread."""
        with self._lock:
            if self.version < 0:
                raise LookupError("no index published yet")
            key = (-1 if since is None else since, digest)
            if key in self._cache:
                return self._cache[key]
            answer: Artefact | None = None
            if since != self.version or digest != self.digest:
                answer = self._delta(since, digest) or self._full()
            self._cache[key] = answer
            return answer

    def _delta(self, since: int | None, digest: str) -> Artefact | None:
        chain = list(self._edits)
        start = next((i for i, (d, e) in enumerate(chain) if e.base == since and d == digest), None)
        if since is None or start is None:
            return None
        body = encode_edit(compose([e for _, e in chain[start:]]))
        if 2 * len(body) >= len(self.data):
            return None
        return sign(Artefact("delta", since, self.version, self.digest, body), self._key)

    def _full(self) -> Artefact:
        full = self._cache.get((-2, ""))
        if full is None:
            full = sign(Artefact("full", 0, self.version, self.digest, self.data), self._key)
            self._cache[(-2, "")] = full
        return full

    # -- edges

    def report(self, report: EdgeReport) -> None:
        self.reports[report.edge] = report

    def members(self, now: float | None = None) -> tuple[FleetMember, ...]:
        """One ``GET /v1/fleet`` row per edge that ever reported."""
        now = time.time() if now is None else now
        return tuple(
            FleetMember(
                name=r.edge,
                enforcer=ENFORCER,
                kind=EDGE_KIND,
                confirmed=r.version,
                lag=max(0, self.version - r.version) if self.version >= 0 else None,
                canary_ok=r.canary_ok,
                reachable=now - r.at <= self.stale_after,
                checked_at=r.at,
            )
            for r in sorted(self.reports.values(), key=lambda r: r.edge)
        )
