"""RPZ publishing: one release, every publisher, verification, status.

:class:`RpzPublishing` is built by the RPZ enforcer (:mod:`edgeagent.rpz.enforcer`) from
the compiler's settings, the publishers and the resolver verifier.

:meth:`RpzPublishing.publish` (called from a worker thread on every policy change) takes
the next serial, persists it before anything is published (in the store, central state
every agent on it shares: a restart, or a new leader whatever its clock says, continues
upward from the last serial any agent handed out; without a store, a 0600 file in the
state directory), compiles the zone text
once, and hands the same release to every publisher *in parallel*: each verifies against
its own resolvers, and a failing publisher never stops the others. A state whose version
was already published everywhere is not published again (cheap when nothing changed);
publishers that failed get the same release again on the next call.

:meth:`RpzPublishing.repair_drift` (run before every verify) asks each publisher whether
its artefact was changed behind its back; if one was, the current state goes out again as
a new release (a new serial, so a resolver that already loaded the edited file takes the
repaired one), and ``edgeagent_drift_repairs_total{artefact=<publisher>}`` counts it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.atomic import write_atomic
from edgeagent.enforcement.base import SerialRecord
from edgeagent.errors import EdgeAgentError, PublishError
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import CompileStats, RpzSettings, StatsCounter
from edgeagent.rpz.publishers.base import (
    Publisher,
    PublishResult,
    ZoneRelease,
    send_notify,
)
from edgeagent.rpz.verify import VerificationState, Verifier
from edgeagent.rpz.zonetext import next_serial, serial_gt

if TYPE_CHECKING:
    from edgeagent.metrics import Metrics

log = logging.getLogger(__name__)

SERIAL_FILE = "rpz-serial.json"


@dataclass(frozen=True, slots=True)
class CachedRelease(ZoneRelease):
    """A release whose zone texts are compiled once and shared by every publisher.

    ``policy_chunks``/``exception_chunks`` hold the streamed text (a few tens of bytes
    per record); the record form for ``bind-update`` is still produced on demand.
    """

    policy_chunks: tuple[str, ...] = ()
    exception_chunks: tuple[str, ...] = ()

    def policy_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        return iter(self.policy_chunks)

    def exception_text(self, counter: StatsCounter | None = None) -> Iterator[str]:
        return iter(self.exception_chunks)


def compile_release(
    state: DesiredState, settings: RpzSettings, serial: int
) -> tuple[CachedRelease, CompileStats]:
    """Compile both zone texts once; return the shareable release and its figures."""
    counter = StatsCounter()
    plain = ZoneRelease(state, settings, serial)
    policy = tuple(plain.policy_text(counter))
    exception = tuple(plain.exception_text(counter))
    release = CachedRelease(state, settings, serial, policy, exception)
    return release, counter.freeze()


@dataclass(slots=True)
class PublisherStatus:
    """What one publisher did last (mutable; copied into :meth:`RpzPublishing.status`)."""

    kind: str
    serial: int | None = None  # last serial published successfully
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    pending: bool = False  # the current release has not reached it yet

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "serial": self.serial,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "up": self.last_error is None and self.serial is not None,
        }


@dataclass(slots=True)
class _Current:
    version: int
    release: CachedRelease
    stats: CompileStats
    published_at: float
    done: set[str] = field(default_factory=set)


class SerialStore:
    """The last serial handed out, in a small 0600 JSON file written atomically: where it
    is kept without a store (a :class:`~edgeagent.enforcement.base.SerialRecord`), and
    where agents before the store kept it (read once to continue above it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rpz_serial(self) -> int | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PublishError("rpz", f"unreadable serial file: {type(exc).__name__}") from exc
        serial = data.get("serial") if isinstance(data, dict) else None
        if not isinstance(serial, int) or not 0 <= serial < 1 << 32:
            raise PublishError("rpz", "serial file holds no valid serial")
        return serial

    def save_rpz_serial(self, serial: int) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"serial": serial}) + "\n", 0o600)


def _newest(a: int | None, b: int | None) -> int | None:
    """The newer of two serials (RFC 1982); ``None`` stands for none."""
    if a is None or (b is not None and serial_gt(b, a)):
        return b
    return a


class RpzPublishing:
    """Compile, publish to every enabled publisher, verify every resolver, report."""

    def __init__(
        self,
        rpz: RpzSettings,
        publishers: Sequence[Publisher[Any]],
        verifier: Verifier,
        state_dir: Path,
        metrics: Metrics | None = None,
        *,
        serials: SerialRecord | None = None,
        fence: Callable[[str], None] | None = None,
    ) -> None:
        self.rpz = rpz
        self.publishers = list(publishers)
        # Checked by each publisher right before it applies (the leader epoch, as for
        # the proxy index and the routes): see Publisher.publish.
        self.fence = fence
        self.verifier = verifier
        self.metrics = metrics
        legacy = SerialStore(state_dir / SERIAL_FILE)
        self.serials: SerialRecord = legacy if serials is None else serials
        self._lock = threading.Lock()
        self._current: _Current | None = None
        self._last_serial = _newest(self.serials.rpz_serial(), legacy.rpz_serial())
        self._status = {p.name: PublisherStatus(p.KIND) for p in self.publishers}

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start what the publishers serve themselves (``http-notify``'s zone server)."""
        for p in self.publishers:
            await p.start()

    async def close(self) -> None:
        for p in self.publishers:
            await p.close()

    # -- publishing -----------------------------------------------------------------------
    def missing(self) -> tuple[str, ...]:
        """Publishers the current release has not reached yet."""
        cur = self._current
        return tuple(p.name for p in self.publishers if cur is None or p.name not in cur.done)

    def publish(self, state: DesiredState) -> list[PublishResult]:
        """Publish ``state`` to every publisher still missing it; return the successes.

        Failures are recorded (status, metrics, log) and retried with the same release
        on the next call; they never stop the other publishers. If a publisher finds its
        target already at or past the release's serial (a store restored from an old
        backup, another writer), the state is re-released once with a serial above it.
        """
        with self._lock:
            return self._publish_locked(state)

    def _publish_locked(self, state: DesiredState) -> list[PublishResult]:
        results: list[PublishResult] = []
        for _round in range(2):
            cur = self._current
            floor = self._pending_floor(cur)
            if cur is None or cur.version != state.version or floor is not None:
                cur = self._current = self._new_release(state, floor)
            todo = [p for p in self.publishers if p.name not in cur.done]
            if not todo:
                break
            with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                outcomes = list(pool.map(self._publish_one, todo, [cur.release] * len(todo)))
            for p, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, PublishResult):
                    cur.done.add(p.name)
                    results.append(outcome)
            self._note_publisher_serials()
            if self._pending_floor(cur) is None:
                break
        return results

    def repair_drift(self) -> tuple[str, ...]:
        """Publish the current state again if a publisher's artefact was changed behind
        its back; return those publishers' names."""
        with self._lock:
            cur = self._current
            if cur is None:
                return ()
            drifted = tuple(p.name for p in self.publishers if p.name in cur.done and p.drifted())
            if not drifted:
                return ()
            for name in drifted:
                log.warning(
                    "publisher %s: artefact changed behind the agent; publishing again", name
                )
                if self.metrics is not None:
                    self.metrics.drift_repairs.labels(artefact=name).inc()
            state = cur.release.state
            self._current = self._new_release(state)
            self._publish_locked(state)
            return drifted

    def _pending_floor(self, cur: _Current | None) -> int | None:
        """A serial some not-yet-published target already has at or above ``cur``'s.

        ``None`` when the current release can still go out as it is.
        """
        if cur is None:
            return None
        best: int | None = None
        for p in self.publishers:
            if p.name in cur.done:
                continue
            seen = p.seen_serial
            ahead = seen is not None and not serial_gt(cur.release.serial, seen)
            if ahead and seen is not None and (best is None or serial_gt(seen, best)):
                best = seen
        return best

    def _new_release(self, state: DesiredState, floor: int | None = None) -> _Current:
        # Above every serial handed out: ours, the store's (another agent may have led
        # since we last published) and what a target already has.
        base = _newest(_newest(self._last_serial, self.serials.rpz_serial()), floor)
        serial = next_serial(base)
        # Persist before anything is published: a restart must never reuse a serial.
        self.serials.save_rpz_serial(serial)
        self._last_serial = serial
        release, stats = compile_release(state, self.rpz, serial)
        if self.metrics is not None:
            self.metrics.rpz_serial.set(serial)
            self.metrics.rpz_not_enforceable.set(stats.not_enforceable_at_dns)
        self.verifier.note_published(serial)
        return _Current(state.version, release, stats, time.time())

    def _publish_one(self, p: Publisher[Any], release: ZoneRelease) -> PublishResult | str:
        st = self._status[p.name]
        started = time.monotonic()
        try:
            result = p.publish(release, self.fence)
        except EdgeAgentError as exc:
            reason = exc.reason if isinstance(exc, PublishError) else type(exc).__name__
            return self._failed(p, st, reason)
        except Exception as exc:  # a bug in one plug-in must not stop the others
            log.exception("publisher %s crashed", p.name)
            return self._failed(p, st, f"unexpected {type(exc).__name__}")
        st.serial, st.last_success, st.pending = release.serial, time.time(), False
        st.last_error = st.last_error_at = None
        if self.metrics is not None:
            self.metrics.publisher_up.labels(publisher=p.name).set(1)
            self.metrics.publish_seconds.labels(publisher=p.name).observe(
                time.monotonic() - started
            )
        log.info("publisher %s: serial %d live", p.name, release.serial)
        return result

    def _failed(self, p: Publisher[Any], st: PublisherStatus, reason: str) -> str:
        st.last_error, st.last_error_at = reason, time.time()
        if self.metrics is not None:
            self.metrics.publisher_up.labels(publisher=p.name).set(0)
            self.metrics.publish_failures.labels(publisher=p.name).inc()
        log.warning("publisher %s failed: %s", p.name, reason)
        return reason

    def _note_publisher_serials(self) -> None:
        # bind-update may have used serials above the release's (a diff split into several
        # UPDATEs): the next release must be newer than every one of them.
        for p in self.publishers:
            live = p.live_serial
            if live is not None and (
                self._last_serial is None or serial_gt(live, self._last_serial)
            ):
                self._last_serial = live
                self.serials.save_rpz_serial(live)

    def nudge(self, names: Sequence[str]) -> int:
        """NOTIFY the named resolvers of both zones (they are behind and may have missed
        the primary's NOTIFY, e.g. while they were down); how many acknowledged."""
        wanted = set(names)
        targets = [rc.target for rc in self.verifier.resolvers if rc.target.name in wanted]
        acknowledged = 0
        for t in targets:
            zones = (self.rpz.zone, self.rpz.exception_zone)
            sent = [send_notify(zone, t.host, t.port) for zone in zones]  # both, always
            acknowledged += all(sent)
        if targets:
            log.info("notified %d lagging resolvers, %d acknowledged", len(targets), acknowledged)
        return acknowledged

    # -- verification and status ----------------------------------------------------------
    def verify_all(self) -> VerificationState:
        """Query every resolver's canary now; updates metrics and :attr:`verification`."""
        return self.verifier.check()

    @property
    def verification(self) -> VerificationState:
        """The last verification (for ``/readyz``): not ready while a resolver is stale."""
        return self.verifier.last

    def status(self) -> dict[str, Any]:
        """For ``/v1/status``: per publisher and per resolver, no list data."""
        cur = self._current
        stats = cur.stats if cur is not None else None
        return {
            "serial": self._last_serial,
            "policy_version": cur.version if cur is not None else None,
            "published_at": cur.published_at if cur is not None else None,
            "not_enforceable_at_dns": stats.not_enforceable_at_dns if stats else 0,
            "records": stats.records if stats else 0,
            "publishers": {n: s.to_dict() for n, s in sorted(self._status.items())},
            "verification": self.verifier.last.to_dict(),
        }
