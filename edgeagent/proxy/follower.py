"""The edge's side: follow the centre's proxy index over HTTP and install it here.

:class:`IndexFollower` long-polls the centre's
``GET /v1/policy/index?since=<version>&digest=<hex>&wait=<s>`` (with
``If-None-Match``). An answer is installed only when the centre's key signed it, it fits
(a delta from the index held here) and the index it yields has the signed digest; then
it is written temp -> check -> fsync -> rename
(:func:`edgeagent.proxy.indexwriter.install_index`) and the Squid helpers pick it up.
Anything else is refused, counted and logged, and the last good index stays.

Fail static: when the centre cannot be reached, the index on disk keeps being enforced
for as long as it takes; the follower retries with backoff, and the time of the last
contact is exported (``edgeagent_edge_last_contact_timestamp_seconds``) for the
staleness alert (an answer counts when it is "current" or installs; an error or a
refused artefact does not). A restarted edge starts from the index on disk and asks for a delta
from its version.

After each install and each canary check the follower reports to the centre
(``POST /v1/policy/index/report``): the version and digest installed, and whether the
proxy canary saw that version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeagent.logs import fields
from edgeagent.proxy.artefact import Artefact, ArtefactError, verify
from edgeagent.proxy.index import IndexFileError, IndexReader
from edgeagent.proxy.indexwriter import (
    IndexBytes,
    decode_edit,
    index_digest,
    install_index,
    map_index,
    splice_edit,
)

if TYPE_CHECKING:
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edgeagent.metrics import Metrics

log = logging.getLogger("edgeagent.proxy.edge")

INDEX_PATH = "/v1/policy/index"
REPORT_PATH = "/v1/policy/index/report"


@dataclass(frozen=True, slots=True)
class FollowSettings:
    """Where the centre is and how to talk to it."""

    central_url: str
    token: str
    public_key: Ed25519PublicKey
    name: str
    wait_seconds: float = 30.0
    retry_max_seconds: float = 30.0
    timeout_seconds: float = 10.0


@dataclass(slots=True)
class FollowState:
    """What the edge holds and how its last exchanges with the centre went."""

    data: IndexBytes = b""  # the installed index, mapped from its file
    version: int = -1
    digest: str = ""
    last_contact: float | None = None  # Unix time of the last answer from the centre
    last_install: float | None = None
    last_error: str = ""
    refused: int = 0
    installs: dict[str, int] = field(default_factory=lambda: {"full": 0, "delta": 0})


class IndexFollower:
    """See the module docstring; :meth:`run` is the loop, :meth:`poll` one exchange."""

    def __init__(
        self,
        settings: FollowSettings,
        index_path: Path,
        metrics: Metrics,
        *,
        group: str | None = None,
    ) -> None:
        self.settings = settings
        self.index_path = index_path
        self.group = group
        self.metrics = metrics
        self.state = FollowState()
        self._session: aiohttp.ClientSession | None = None
        self.installed = asyncio.Event()  # set after each install (tests, reports)
        self._load_last_good()

    def _load_last_good(self) -> None:
        """Start from the index already on disk (verified), if any."""
        try:
            with IndexReader.open(self.index_path) as reader:
                version = reader.policy_version
            data = map_index(self.index_path)
        except (IndexFileError, OSError):
            return
        self.state.data, self.state.version, self.state.digest = data, version, index_digest(data)
        self.metrics.proxy_index_version.labels(where="installed").set(version)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token}"}

    def _http(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if isinstance(self.state.data, mmap.mmap):
            self.state.data.close()
            self.state.data = b""

    async def run(self) -> None:
        """Poll until cancelled; errors are logged and retried with backoff."""
        import aiohttp

        attempt = 0
        while True:
            try:
                await self.poll(self.settings.wait_seconds)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                attempt += 1
                self._failed(f"centre unreachable: {type(exc).__name__}")
                await asyncio.sleep(min(self.settings.retry_max_seconds, 0.5 * 2**attempt))
            except (ArtefactError, IndexFileError) as exc:
                attempt += 1
                self.state.refused += 1
                self.metrics.edge_index_refused.inc()
                self._failed(f"artefact refused: {exc}")
                await asyncio.sleep(min(self.settings.retry_max_seconds, 0.5 * 2**attempt))

    def _failed(self, reason: str) -> None:
        if reason != self.state.last_error:
            log.warning("edge: the last good index stays", extra=fields(error=reason))
        self.state.last_error = reason

    async def poll(self, wait: float) -> bool:
        """One long poll; True when a new index was installed."""
        import aiohttp

        s = self.settings
        params = {"wait": str(int(wait))}
        headers = self._headers()
        if self.state.version >= 0:
            params["since"] = str(self.state.version)
            params["digest"] = self.state.digest
            headers["If-None-Match"] = f'"{self.state.version}-{self.state.digest[:32]}"'
        timeout = aiohttp.ClientTimeout(total=wait + s.timeout_seconds)
        async with self._http().get(
            s.central_url.rstrip("/") + INDEX_PATH, params=params, headers=headers, timeout=timeout
        ) as resp:
            body = await resp.read()
            if resp.status == 304:
                self._contact()
                return False
            if resp.status != 200:
                raise ArtefactError(f"centre answered {resp.status} for the index")
            artefact = Artefact.from_headers(dict(resp.headers), body)
        await asyncio.to_thread(self.install, artefact)
        self._contact()
        await self.report(None)
        return True

    def _contact(self) -> None:
        now = time.time()
        self.state.last_contact = now
        self.metrics.edge_last_contact.set(now)

    def install(self, artefact: Artefact) -> None:
        """Blocking: verify ``artefact`` and install the index it yields, or raise."""
        verify(artefact, self.settings.public_key)
        if artefact.kind == "delta":
            if artefact.base != self.state.version:
                raise ArtefactError(
                    f"delta from version {artefact.base}, edge at {self.state.version}"
                )
            # Spliced from the mapped index and written piece by piece: no copy of the
            # whole index in memory; its body checksum was computed while splicing.
            spliced = splice_edit(self.state.data, decode_edit(artefact.body))
            digest = index_digest(spliced.header)
            if digest != artefact.digest:
                raise ArtefactError(f"index for version {artefact.version}: digest mismatch")
            install_index(spliced, self.index_path, group=self.group, body_hashed=True)
            del spliced  # views into the old mapping
        else:
            digest = index_digest(artefact.body)
            if digest != artefact.digest:
                raise ArtefactError(f"index for version {artefact.version}: digest mismatch")
            install_index(artefact.body, self.index_path, group=self.group)
        data = map_index(self.index_path)
        old = self.state.data
        if isinstance(old, mmap.mmap):
            old.close()
        st = self.state
        st.data, st.version, st.digest = data, artefact.version, digest
        st.last_install, st.last_error = time.time(), ""
        st.installs[artefact.kind] += 1
        self.metrics.proxy_index_version.labels(where="installed").set(artefact.version)
        log.info(
            "edge: index installed",
            extra=fields(version=artefact.version, kind=artefact.kind, bytes=len(artefact.body)),
        )

    async def report(self, canary_ok: bool | None) -> None:
        """Tell the centre what is installed here (errors are logged, never raised)."""
        import aiohttp

        st = self.state
        body = {
            "edge": self.settings.name,
            "version": st.version,
            "digest": st.digest,
            "canary_ok": canary_ok,
            "error": st.last_error[:200],
        }
        try:
            async with self._http().post(
                self.settings.central_url.rstrip("/") + REPORT_PATH,
                data=json.dumps(body),
                headers={**self._headers(), "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
            ) as resp:
                await resp.read()
                if resp.status != 204:
                    log.warning("edge: report refused", extra=fields(status=resp.status))
                else:
                    self._contact()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("edge: report not delivered", extra=fields(error=type(exc).__name__))
