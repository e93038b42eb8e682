"""On-segment detail for own addresses: when to read the kernel, when to probe, and limits.

:meth:`SegmentLocator.lookup` for one address:

1. reads the kernel's route and neighbour entry (:func:`~edgeagent.takedown.segment.read_route`
   in a thread; nothing is sent). An address behind a router stops here: the detail
   names the next hop, and no probe is ever sent for it;
2. on a directly connected segment, decides on an ARP/ND probe by ``mode``: ``never``;
   ``when-not-cached`` (only when the kernel has no MAC for it); ``always``;
3. never probes an address outside the own prefixes (``refused``), nor more than
   ``probes_per_minute`` (a token bucket; ``rate-limited``); both are counted;
4. probes in a thread, at most :data:`MAX_PROBES_IN_FLIGHT` at once, each bounded by
   ``probe_timeout`` seconds (``answered`` or ``timed-out``, counted).

It never raises for a lookup problem: the detail says what happened, and the caller
(a ticket being opened) goes on regardless. Logs never name the address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from edgeagent.api.auth import RateLimiter
from edgeagent.logs import fields
from edgeagent.metrics import Metrics
from edgeagent.takedown.segment import (
    ProbeMode,
    SegmentDetail,
    probe_mac,
    read_route,
)
from edgeagent.takedown.space import OwnSpace

log = logging.getLogger(__name__)

MAX_PROBES_IN_FLIGHT = 4
MAX_READS_IN_FLIGHT = 16
# A netlink read answers in microseconds; this only guards against a wedged kernel call.
READ_TIMEOUT_SECONDS = 5.0
# How long past its own timeout a probe's thread may take before it counts as timed out.
PROBE_GRACE_SECONDS = 2.0


class SegmentLocator:
    """See the module docstring. ``read``/``probe`` default to the kernel and scapy."""

    def __init__(
        self,
        own: OwnSpace,
        mode: ProbeMode,
        *,
        probe_timeout: float = 1.0,
        probes_per_minute: int = 30,
        metrics: Metrics | None = None,
        read: Callable[[str], SegmentDetail] = read_route,
        probe: Callable[[str, str, float], str] = probe_mac,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.own = own
        self.mode = mode
        self.probe_timeout = probe_timeout
        self.metrics = metrics
        self._read = read
        self._probe = probe
        self._limiter = RateLimiter(probes_per_minute, clock)
        self._probes = asyncio.Semaphore(MAX_PROBES_IN_FLIGHT)
        self._reads = asyncio.Semaphore(MAX_READS_IN_FLIGHT)

    async def lookup_many(self, addresses: Iterable[str]) -> tuple[SegmentDetail, ...]:
        """One detail per distinct address, in input order."""
        unique = list(dict.fromkeys(addresses))
        return tuple(await asyncio.gather(*(self.lookup(a) for a in unique)))

    async def lookup(self, address: str) -> SegmentDetail:
        """Where ``address`` sits (see the module docstring)."""
        try:
            async with self._reads, asyncio.timeout(READ_TIMEOUT_SECONDS):
                detail = await asyncio.to_thread(self._read, address)
        except Exception as exc:  # the ticket opens without the detail, never fails
            log.warning("route lookup failed", extra=fields(error=type(exc).__name__))
            return SegmentDetail(address, datetime.now(UTC), error="route lookup failed")
        if not detail.on_segment or self.mode == "never":
            return detail
        if self.mode == "when-not-cached" and detail.mac:
            return detail
        if address not in self.own:
            self._refused("outside-own-prefixes")
            return detail.with_probe("refused")
        if self._limiter.take(None) > 0:
            self._refused("rate-limit")
            return detail.with_probe("rate-limited")
        return await self._probe_once(detail)

    async def _probe_once(self, detail: SegmentDetail) -> SegmentDetail:
        m = self.metrics
        async with self._probes:
            try:
                async with asyncio.timeout(self.probe_timeout + PROBE_GRACE_SECONDS):
                    mac = await asyncio.to_thread(
                        self._probe, detail.address, detail.interface, self.probe_timeout
                    )
            except TimeoutError:
                mac = ""
            except Exception as exc:  # no CAP_NET_RAW, interface gone, ...
                log.warning("on-segment probe not sent", extra=fields(error=type(exc).__name__))
                self._refused("send-error")
                return detail.with_probe("failed")
        if m is not None:
            m.takedown_probes_sent.inc()
        if not mac:
            if m is not None:
                m.takedown_probes_timed_out.inc()
            return detail.with_probe("timed-out")
        if m is not None:
            m.takedown_probes_answered.inc()
        return detail.with_probe("answered", mac, datetime.now(UTC))

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.takedown_probes_refused.labels(reason=reason).inc()
