"""The edge role over the real API: a centre's publication, a follower polling it on loopback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.artefact import Artefact, ArtefactError, sign
from edgeagent.proxy.distribution import IndexPublication
from edgeagent.proxy.follower import FollowSettings, IndexFollower
from edgeagent.proxy.index import IndexReader
from edgeagent.proxy.indexwriter import IndexModel, apply_edit, encode_edit
from tests.support.api import ApiHarness

KEY = Ed25519PrivateKey.generate()
PAGE = "http://news.site.test/listed.html"
FEED = tuple(
    Entry(Indicator.parse("url", f"http://s{i}.site.test/p.html"), Action.BLOCK, "iwf")
    for i in range(50)
)


class Centre:
    """What the proxy enforcer does on the centre, by hand: model, edits, publication."""

    def __init__(self, publication: IndexPublication) -> None:
        self.publication = publication
        self.state = DesiredState(1, FEED, ())
        self.model = IndexModel.of(self.state)
        publication.replace(self.model.render(), 1)

    def decide(self, *entries: Entry) -> None:
        self.state = DesiredState(self.state.version + 1, (*FEED, *entries), ())
        edit = self.model.change(self.state)
        self.publication.advance(edit, apply_edit(self.publication.data, edit))
        self.publication.announce()


@pytest.fixture
def publication() -> IndexPublication:
    return IndexPublication(KEY)


@pytest.fixture
def api_settings(publication: IndexPublication) -> dict[str, Any]:
    return {"edge_feed": lambda: publication}


def _follower(api: ApiHarness, tmp_path: Path, key: Ed25519PrivateKey = KEY) -> IndexFollower:
    assert api.client is not None
    url = str(api.client.make_url("/"))
    settings = FollowSettings(url, api.tokens["noc"], key.public_key(), "edge-a", wait_seconds=5)
    return IndexFollower(settings, tmp_path / "proxy-index.bin", Metrics())


def _listed(path: Path, url: str) -> bool:
    with IndexReader.open(path) as reader:
        return reader.match(url) is not None


async def test_an_edge_installs_the_full_index_then_deltas_at_once(
    api: ApiHarness, publication: IndexPublication, tmp_path: Path
) -> None:
    centre = Centre(publication)
    edge = _follower(api, tmp_path)
    try:
        assert await edge.poll(0)
        assert edge.state.installs == {"full": 1, "delta": 0}
        assert edge.state.digest == publication.digest
        assert not _listed(edge.index_path, PAGE)
        # Current: nothing to send.
        assert not await edge.poll(0)
        # A decision while the edge waits in its long poll arrives at once, as a delta.
        poll = asyncio.create_task(edge.poll(5))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        centre.decide(Entry(Indicator.parse("url", PAGE), Action.BLOCK, "decision:1"))
        assert await poll
        assert time.monotonic() - started < 1.0
        assert edge.state.installs == {"full": 1, "delta": 1}
        assert (edge.state.version, edge.state.digest) == (2, publication.digest)
        assert _listed(edge.index_path, PAGE)
        # Its report shows in the fleet.
        (member,) = publication.members()
        assert (member.name, member.kind, member.confirmed, member.lag) == ("edge-a", "edge", 2, 0)
    finally:
        await edge.close()


async def test_a_restarted_edge_asks_for_a_delta_from_its_index_on_disk(
    api: ApiHarness, publication: IndexPublication, tmp_path: Path
) -> None:
    centre = Centre(publication)
    first = _follower(api, tmp_path)
    await first.poll(0)
    await first.close()
    centre.decide(Entry(Indicator.parse("url", PAGE), Action.BLOCK, "decision:1"))
    again = _follower(api, tmp_path)
    try:
        assert again.state.version == 1
        assert await again.poll(0)
        assert again.state.installs == {"full": 0, "delta": 1}
        assert _listed(again.index_path, PAGE)
    finally:
        await again.close()


async def test_tampered_artefacts_are_refused_and_the_last_good_index_stays(
    api: ApiHarness, publication: IndexPublication, tmp_path: Path
) -> None:
    centre = Centre(publication)
    edge = _follower(api, tmp_path)
    try:
        await edge.poll(0)
        good = edge.index_path.read_bytes()
        centre.decide(Entry(Indicator.parse("url", PAGE), Action.BLOCK, "decision:1"))
        delta = publication.artefact(1, edge.state.digest)
        assert delta is not None
        assert delta.kind == "delta"
        # Signed by someone else.
        forged = sign(replace(delta, signature=b""), Ed25519PrivateKey.generate())
        with pytest.raises(ArtefactError, match="bad signature"):
            edge.install(forged)
        # A body changed on the way (the signature covers its SHA-256).
        with pytest.raises(ArtefactError, match="bad signature"):
            edge.install(replace(delta, body=delta.body[:-1] + b"x"))
        # Signed, but the result is not the index the centre names.
        wrong = sign(Artefact("delta", 1, 2, "0" * 64, delta.body), KEY)
        with pytest.raises(ArtefactError, match="digest mismatch"):
            edge.install(wrong)
        # A full index that is not one.
        junk = sign(Artefact("full", 0, 2, publication.digest, b"EAPXIDX1" + bytes(200)), KEY)
        with pytest.raises(ArtefactError, match="digest mismatch"):
            edge.install(junk)
        assert edge.index_path.read_bytes() == good
        assert edge.state.version == 1
        # The real one still installs.
        edge.install(delta)
        assert _listed(edge.index_path, PAGE)
    finally:
        await edge.close()


async def test_an_edge_with_the_wrong_key_refuses_and_counts(
    api: ApiHarness, publication: IndexPublication, tmp_path: Path
) -> None:
    Centre(publication)
    edge = _follower(api, tmp_path, key=Ed25519PrivateKey.generate())
    task = asyncio.create_task(edge.run())
    try:
        for _ in range(50):
            await asyncio.sleep(0.05)
            if edge.state.refused:
                break
        assert edge.state.refused >= 1
        assert "bad signature" in edge.state.last_error
        assert not edge.index_path.exists()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await edge.close()


async def test_answers_304_when_current_and_full_when_the_chain_is_gone(
    api: ApiHarness, publication: IndexPublication
) -> None:
    centre = Centre(publication)
    first = publication.digest
    current = {"since": "1", "digest": first}
    status, _ = await api.call("GET", "/v1/policy/index", "noc", params=current)
    assert status == 304
    full = publication.artefact(None)
    assert full is not None
    status, _ = await api.call(
        "GET", "/v1/policy/index", "noc", headers={"If-None-Match": full.etag}
    )
    assert status == 304
    centre.decide(Entry(Indicator.parse("url", PAGE), Action.BLOCK, "decision:1"))
    delta = publication.artefact(1, first)
    assert delta is not None
    assert delta.kind == "delta"
    assert len(delta.body) < 2048 < len(publication.data)
    unknown = publication.artefact(7, first)  # a version the centre has no edits from
    assert unknown is not None
    assert unknown.kind == "full"
    # Another index at version 1 (a centre laid out afresh): its edits do not apply.
    other = publication.artefact(1, "0" * 64)
    assert other is not None
    assert other.kind == "full"
    assert len(encode_edit(centre.model.change(replace(centre.state, version=9)))) < 200
    status, body = await api.call("GET", "/v1/policy/index", "noc", params={"wait": "999"})
    assert status == 400
    assert "wait" in str(body)


def test_keygen_writes_a_pair_the_centre_and_edges_load(tmp_path: Path) -> None:
    from edgeagent.cli import main
    from edgeagent.proxy.artefact import load_private_key, load_public_key, verify

    private, public = tmp_path / "index.key", tmp_path / "index.pub"
    args = ["edge", "keygen", "--private", str(private), "--public", str(public)]
    assert main(args) == 0
    assert private.stat().st_mode & 0o777 == 0o600
    signed = sign(Artefact("full", 0, 1, "0" * 64, b"index"), load_private_key(private))
    verify(signed, load_public_key(public))
    assert main(args) == 2  # never overwrites a key
    with pytest.raises(ArtefactError, match=r"not (an Ed25519 public key|a PEM key)"):
        load_public_key(private)


def test_an_edge_config_names_what_it_lacks_and_loads_when_complete(tmp_path: Path) -> None:
    from edgeagent.config import load_config, summary
    from edgeagent.errors import ConfigError
    from edgeagent.proxy.artefact import new_key_pair

    config = tmp_path / "edge.toml"
    base = f'[agent]\nrole = "edge"\nstate_dir = "{tmp_path / "state"}"\n'
    config.write_text(base)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert {p.path for p in info.value.problems} == {
        "edge.central_url",
        "edge.name",
        "edge.public_key_file",
        "edge.token_file",
        "proxy.enabled",
    }
    _, public = new_key_pair()
    (tmp_path / "centre.pub").write_bytes(public)
    (tmp_path / "token").write_text("secret")
    config.write_text(
        base + '[proxy]\nenabled = true\n[edge]\ncentral_url = "https://central.example:8640"\n'
        f'name = "proxy-1"\npublic_key_file = "{tmp_path / "centre.pub"}"\n'
        f'token_file = "{tmp_path / "token"}"\n'
    )
    settings = load_config(config)
    assert "edge        proxy-1 follows https://central.example:8640" in summary(settings)


async def test_a_stopping_centre_answers_its_long_polls_at_once(
    api: ApiHarness, publication: IndexPublication
) -> None:
    Centre(publication)
    current = {"since": "1", "digest": publication.digest, "wait": "60"}
    held = asyncio.create_task(api.call("GET", "/v1/policy/index", "noc", params=current))
    await asyncio.sleep(0.3)
    assert not held.done()  # a current edge is held by its long poll
    assert api.client is not None
    # What aiohttp runs first when the daemon stops, before it waits for requests in flight.
    await api.client.server.app.shutdown()
    status, _ = await asyncio.wait_for(held, 5)
    assert status == 304
    started = time.monotonic()
    status, _ = await api.call("GET", "/v1/policy/index", "noc", params=current)
    assert status == 304
    assert time.monotonic() - started < 5  # a poll arriving while it stops is not held
