"""The edge role: one change to a large proxy index, the bytes it costs per proxy, and
decision -> refused at every proxy through real agents and Squids.

Register in ``bench/__init__.py`` (REGISTRY) with::

    def _edge_fleet(quick: bool) -> list[Row]:
        from bench import edge_fleet
        return edge_fleet.rows(quick)

Index figures (in process, the real functions): the centre keeps the index by change
(:class:`~edgeagent.proxy.indexwriter.IndexModel`), one URL decision is the change; the
edge's time is what its agent does with the delta: decode, splice
(:func:`~edgeagent.proxy.indexwriter.apply_edit`, which also hashes the new body for the
header), check the digest and install (temp, check, fsync, rename): the follower's own
``install``. Its CPU time is measured apart from the wall time (the fsync waits for the
disk, not the CPU).

Fleet figures: :class:`edgeagent.lab.edges.EdgeFleet` (a central agent, three Squid
proxies each with an edge agent, loopback); each decision is timed from the POST until
every proxy answers the page with the stop-page redirect (polled every 20 ms).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import Row
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.proxy.indexwriter import (
    IndexModel,
    apply_edit,
    encode_edit,
    index_digest,
    install_index,
)

ANCHOR_CHANGE = "goal: one change in a 1,000,000-entry index <= 50 ms of agent time at the edge"
ANCHOR_BYTES = "goal: <= 2 KB per change per proxy (delta), beside the full index"
ANCHOR_FLEET = "goal: decision -> refused at every proxy p99 <= 3 s"


def _state(n: int) -> DesiredState:
    """Hotline-like: pages, ten per host."""
    blocks = tuple(
        Entry(Indicator(Scope.URL, f"http://h{i // 10}.site.test/p/{i}.html"), Action.BLOCK, "iwf")
        for i in range(n)
    )
    return DesiredState(1, blocks, ())


def index_rows(n: int, changes: int = 20) -> list[Row]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeagent.metrics import Metrics
    from edgeagent.proxy.artefact import Artefact, sign
    from edgeagent.proxy.follower import FollowSettings, IndexFollower

    key = Ed25519PrivateKey.generate()
    state = _state(n)
    model = IndexModel.of(state)
    data = model.render()
    centre_ms: list[float] = []
    edge_cpu_ms: list[float] = []
    edge_wall_ms: list[float] = []
    delta_bytes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        install_index(data, path, body_hashed=True)
        # The edge agent's own code path: verify, splice, check the digest, install.
        settings = FollowSettings("http://127.0.0.1:9", "-", key.public_key(), "bench")
        edge = IndexFollower(settings, path, Metrics())
        for k in range(changes):
            page = Entry(
                Indicator(Scope.URL, f"http://new{k}.site.test/x.html"),
                Action.BLOCK,
                f"decision:{k}",
            )
            base = state.version
            state = replace(state, version=base + 1, blocks=(*state.blocks, page))
            t0 = time.perf_counter()
            edit = model.change(state)
            data = apply_edit(data, edit)
            centre_ms.append(1000 * (time.perf_counter() - t0))
            body = encode_edit(edit)
            delta_bytes.append(len(body))
            artefact = sign(Artefact("delta", base, state.version, index_digest(data), body), key)
            w0, c0 = time.perf_counter(), time.process_time()
            edge.install(artefact)
            edge_cpu_ms.append(1000 * (time.process_time() - c0))
            edge_wall_ms.append(1000 * (time.perf_counter() - w0))
        if edge.state.digest != index_digest(data):
            raise AssertionError("edge and centre disagree")
    label = f"{n:,}-entry index"
    return [
        Row(
            f"one change, {label}: edge agent CPU to the new index (median)",
            round(statistics.median(edge_cpu_ms), 1),
            "ms",
            "<= 50 ms",
            ANCHOR_CHANGE,
        ),
        Row(
            f"one change, {label}: edge wall time incl. fsync (median)",
            round(statistics.median(edge_wall_ms), 1),
            "ms",
            "",
            ANCHOR_CHANGE,
        ),
        Row(
            f"one change, {label}: centre, model + splice (median)",
            round(statistics.median(centre_ms), 1),
            "ms",
            "",
            "was a whole rebuild: 8.4 s at 1,000,000 entries",
        ),
        Row(
            "bytes per change per proxy (delta, one URL decision)",
            max(delta_bytes),
            "bytes",
            "<= 2048",
            ANCHOR_BYTES,
        ),
        Row(f"full index, {label}", len(data), "bytes", "", ANCHOR_BYTES),
    ]


def fleet_rows(decisions: int, proxies: int = 3) -> list[Row]:
    from edgeagent.lab.daemons import HOST
    from edgeagent.lab.edges import EdgeFleet, refused, wait_for

    root = Path(tempfile.mkdtemp(prefix="edgeagent-bench-edges-"))
    origin = f"http://news.site.test:{_closed_port()}"
    fleet = EdgeFleet(root, {"news.site.test": HOST, "canary.edgeagent.example": HOST})
    seconds: list[float] = []
    try:
        fleet.start(proxies)
        version = fleet.policy_version()
        for edge in fleet.edges:
            wait_for(edge.name, lambda e=edge: e.version() == version, 30)
        for k in range(decisions):
            url = f"{origin}/bench-{k}.html"
            started = time.monotonic()
            fleet.block_url(url, f"BENCH-{k}")
            for edge in fleet.edges:
                port = edge.squid.proxy_port
                wait_for(edge.name, lambda port=port, url=url: refused(port, url), 10)
            seconds.append(time.monotonic() - started)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)
    seconds.sort()
    p99 = seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
    n = f"{proxies} proxies, {decisions} decisions"
    return [
        Row(
            f"decision -> refused at every proxy p50 ({n})",
            round(statistics.median(seconds), 3),
            "s",
            "",
            ANCHOR_FLEET,
        ),
        Row(
            f"decision -> refused at every proxy p99 ({n})",
            round(p99, 3),
            "s",
            "<= 3 s",
            ANCHOR_FLEET,
        ),
    ]


def _closed_port() -> int:
    """A port nobody listens on: the stop-page redirect needs no origin."""
    from edgeagent.lab.daemons import free_tcp_port

    return free_tcp_port("127.0.0.1")


def rows(quick: bool) -> list[Row]:
    return [
        *index_rows(100_000 if quick else 1_000_000, 5 if quick else 20),
        *(fleet_rows(3, proxies=1) if quick else fleet_rows(40)),
    ]
