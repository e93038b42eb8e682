"""IP-literal aliases: the bookkeeping, the index they make and the edges they reach."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeagent.enforcement.base import EnforcerContext
from edgeagent.errors import Fenced
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.aliases import (
    MAX_ADDRESSES,
    AliasBook,
    AliasCounts,
    Resolved,
    alias_entry,
    resolved_of,
)
from edgeagent.proxy.distribution import IndexPublication
from edgeagent.proxy.enforcer import ProxyConfig, ProxyEnforcer, ProxyEnforcerConfig
from edgeagent.proxy.index import IndexReader
from edgeagent.proxy.indexwriter import IndexModel, apply_edit, decode_edit, splice_edit
from tests.support.ports import free_port

PAGE = Entry(Indicator.parse("url", "http://site.test/listed/Page.html"), Action.BLOCK, "iwf")
QUERY = Entry(Indicator.parse("url", "http://site.test/view.php?id=1"), Action.BLOCK, "iwf")
PREFIX = Entry(Indicator.parse("url-prefix", "http://site.test/listed/dir"), Action.BLOCK, "iwf")
OTHER = Entry(Indicator.parse("url", "http://other.test/listed/Page.html"), Action.BLOCK, "ctiru")
NAME = Entry(Indicator.parse("domain", "whole.test"), Action.BLOCK, "iwf")
ON_IP = Entry(Indicator.parse("url", "http://192.0.2.9/x.html"), Action.BLOCK, "iwf")
ALLOW = Entry(Indicator.parse("url", "http://site.test/ok.html"), Action.ALLOW, "decision:1")

V4 = "127.0.0.1"
V6 = "2001:db8::7"


def _book() -> AliasBook:
    return AliasBook(min_ttl=60, max_ttl=3600, retry_seconds=30)


def _state(*blocks: Entry, version: int = 1) -> DesiredState:
    return DesiredState(version, tuple(blocks), (ALLOW,))


def _reader(tmp_path: Path, data: bytes) -> IndexReader:
    path = tmp_path / f"idx-{len(list(tmp_path.iterdir()))}.bin"
    path.write_bytes(data)
    return IndexReader.open(path)


def _listed(reader: IndexReader, url: str) -> bool:
    return reader.match(url) is not None


def test_only_url_level_blocks_on_names_are_resolved() -> None:
    book = _book()
    book.track((PAGE, QUERY, PREFIX, OTHER, NAME, ON_IP, ALLOW))
    assert sorted(book.due(0.0, 10)) == ["other.test", "site.test"]
    assert book.counts().unresolved == 2


def test_every_spelling_of_the_address_is_refused_and_siblings_pass(tmp_path: Path) -> None:
    book = _book()
    state = _state(PAGE, QUERY, PREFIX)
    book.track(state.blocks)
    book.learn({"site.test": Resolved((V4, f"::ffff:{V4}", V6), 300)}, 0.0)
    reader = _reader(tmp_path, IndexModel.of(state, aliases=book.current()).render())
    for host in (
        "127.0.0.1",
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "0x7f000001",
        "2130706433",  # decimal
        "127.1",  # fewer parts
        "[::ffff:127.0.0.1]",
        "[2001:db8::7]",
        "[2001:0DB8:0:0:0:0:0:7]",
    ):
        for target in ("/listed/Page.html", "/listed/./Page.html#x", "/listed/dir/x?y"):
            assert _listed(reader, f"http://{host}:8080{target}"), (host, target)
        assert _listed(reader, f"http://{host}/view.php?id=1&a=2"), host
        for sibling in ("/listed/Sibling.html", "/listed/dirx", "/view.php?id=2", "/"):
            assert not _listed(reader, f"http://{host}{sibling}"), (host, sibling)
    assert not _listed(reader, "http://127.0.0.2/listed/Page.html")  # another address
    assert reader.match_whole_host("127.0.0.1") is None  # the address is not refused whole


def test_a_host_that_moves_loses_its_old_aliases_by_change(tmp_path: Path) -> None:
    book = _book()
    state = _state(PAGE)
    book.track(state.blocks)
    book.learn({"site.test": Resolved(("192.0.2.1",), 60)}, 0.0)
    model = IndexModel.of(state, aliases=book.current())
    data = model.render()
    assert book.due(59.0, 10) == []
    assert book.due(60.0, 10) == ["site.test"]  # TTL over: asked again
    book.learn({"site.test": Resolved(("192.0.2.2",), 60)}, 60.0)
    gone, came = book.take()
    assert [e.indicator.value for e in gone] == ["http://192.0.2.1/listed/Page.html"]
    assert [e.indicator.value for e in came] == ["http://192.0.2.2/listed/Page.html"]
    edit = model.change(state, (gone, came))
    assert (edit.base, edit.version) == (1, 1)  # aliases only: the same policy version
    reader = _reader(tmp_path, apply_edit(data, edit))
    assert not _listed(reader, "http://192.0.2.1/listed/Page.html")
    assert _listed(reader, "http://192.0.2.2/listed/Page.html")
    # The same digests as a whole build of the new state.
    whole = IndexModel.of(state, aliases=book.current())
    assert {d: model.tag(d) for d in model.records} == {d: whole.tag(d) for d in whole.records}


def test_an_entry_that_goes_takes_its_aliases_and_a_shared_alias_stays(tmp_path: Path) -> None:
    book = _book()
    both = _state(PAGE, OTHER)
    book.track(both.blocks)
    book.learn({"site.test": Resolved((V4,), 60), "other.test": Resolved((V4,), 60)}, 0.0)
    model = IndexModel.of(both, aliases=book.current())
    data = model.render()
    assert book.counts().aliases == 1  # one path on one address, from two names
    one = _state(PAGE, version=2)
    book.track(one.blocks)
    assert book.take() == ((), ())  # still held by the page on site.test
    data = apply_edit(data, model.change(one))
    assert _listed(_reader(tmp_path, data), f"http://{V4}/listed/Page.html")
    none = _state(version=3)
    book.track(none.blocks)
    gone, came = book.take()
    assert [e.indicator.value for e in gone] == [f"http://{V4}/listed/Page.html"]
    assert came == ()
    reader = _reader(tmp_path, apply_edit(data, model.change(none, (gone, came))))
    assert not _listed(reader, f"http://{V4}/listed/Page.html")
    assert book.counts() == AliasCounts(0, 0, 0, 0)  # hosts without entries are forgotten
    assert book.due(10_000.0, 10) == []


def test_failures_keep_the_last_addresses_nxdomain_drops_them() -> None:
    book = _book()
    book.track((PAGE,))
    book.learn({"site.test": Resolved((V4,), 5)}, 0.0)
    assert book.due(59.0, 10) == []  # a TTL below min_ttl counts as min_ttl
    book.learn({"site.test": Resolved(failed=True)}, 60.0)
    assert book.failures == 1
    assert book.counts().aliases == 1
    assert book.due(89.0, 10) == []
    assert book.due(90.0, 10) == ["site.test"]
    book.learn({"site.test": resolved_of((), "NXDOMAIN")}, 90.0)
    assert book.counts().aliases == 0
    assert resolved_of((), "resolver 127.0.0.1:53: Timeout").failed
    assert resolved_of((), "no address") == Resolved()
    assert resolved_of([("192.0.2.1", 30), ("192.0.2.2", 10)], "") == Resolved(
        ("192.0.2.1", "192.0.2.2"), 10
    )


def test_never_resolved_hosts_come_first_and_a_name_with_many_addresses_is_capped() -> None:
    book = _book()
    book.track((PAGE,))
    many = (*(f"192.0.2.{i}" for i in range(100, 0, -1)), "not an address")
    book.learn({"site.test": Resolved(many, 600)}, 0.0)
    assert book.counts() == AliasCounts(1, 0, MAX_ADDRESSES, MAX_ADDRESSES)
    assert "http://192.0.2.1/listed/Page.html" in {
        e.indicator.value for e in book.current()
    }  # the lowest addresses
    book.track((PAGE, OTHER))
    assert book.due(700.0, 1) == ["other.test"]
    assert book.due(700.0, 5) == ["other.test", "site.test"]


def test_an_alias_keeps_scope_query_port_and_source() -> None:
    port = Entry(Indicator.parse("url", "http://site.test:8080/a?b=1"), Action.BLOCK, "x")
    assert alias_entry(port, V6).indicator.value == "http://[2001:db8::7]:8080/a?b=1"
    assert alias_entry(PREFIX, V4) == Entry(
        Indicator("url-prefix", "http://127.0.0.1/listed/dir"), Action.BLOCK, "iwf"
    )


def test_edges_get_an_alias_edit_at_the_same_version(tmp_path: Path) -> None:
    """The centre publishes an alias change as an edit from and to one version; an edge at
    that version (with the older digest) gets it as a delta, and its long poll wakes."""
    book = _book()
    state = _state(PAGE)
    book.track(state.blocks)
    model = IndexModel.of(state, aliases=book.current())
    before = model.render()
    publication = IndexPublication(Ed25519PrivateKey.generate())
    publication.replace(before, 1)
    old_digest = publication.digest
    book.learn({"site.test": Resolved((V4,), 60)}, 0.0)
    edit = model.change(state, book.take())
    after = apply_edit(before, edit)
    publication.advance(edit, after)
    artefact = publication.artefact(1, old_digest)
    assert artefact is not None
    assert artefact.kind == "delta"
    assert artefact.version == 1
    spliced = splice_edit(before, decode_edit(artefact.body))
    assert b"".join(spliced.parts) == after
    assert _listed(_reader(tmp_path, after), f"http://{V4}/listed/Page.html")
    asyncio.run(asyncio.wait_for(publication.wait(1, 30, old_digest), 2))
    assert publication.artefact(1, publication.digest) is None


@pytest.mark.parametrize("ttls", [(0, 10), (10, 5)])
def test_alias_ttls_are_checked(ttls: tuple[int, int]) -> None:
    low, high = ttls
    data = {"alias_min_ttl_seconds": low, "alias_max_ttl_seconds": high}
    with pytest.raises(ValueError, match="alias_m"):
        ProxyConfig.model_validate(data)


async def test_the_enforcer_writes_learnt_aliases_and_rebuilds_after_a_failed_write(
    tmp_path: Path,
) -> None:
    """Aliases learnt after a publish go in by the ``ip-aliases`` job at the same version;
    a write refused (here by the fence) keeps the old index, and the next one builds the
    index whole with every alias in force. (The resolution itself, through a real DNS
    server, is in the integration tests.)"""
    refuse: list[bool] = []

    def fence(what: str) -> None:
        if refuse:
            raise Fenced(what, "a deposed leader")

    index = tmp_path / "idx.bin"
    config = ProxyConfig.model_validate(
        {
            "enabled": True,
            "index_path": str(index),
            "alias_resolvers": [{"host": "127.0.0.1", "port": 53}],
        }
    )
    context = EnforcerContext(tmp_path, Metrics(), fence=fence)
    enforcer = ProxyEnforcer(ProxyEnforcerConfig(proxy=config), context)
    book = enforcer.aliases
    assert book is not None
    assert (await enforcer.publish(_state(PAGE, version=4))).ok
    book.learn({"site.test": Resolved((V4,), 60)}, time.monotonic())
    await enforcer.apply_aliases()
    with IndexReader.open(index) as reader:
        assert reader.policy_version == 4
        assert _listed(reader, f"http://{V4}/listed/Page.html")
    refuse.append(True)
    book.learn({"site.test": Resolved(("192.0.2.5",), 60)}, time.monotonic() + 100)
    await enforcer.apply_aliases()
    assert "deposed" in enforcer.last_error
    with IndexReader.open(index) as reader:
        assert _listed(reader, f"http://{V4}/listed/Page.html")  # the old index stays
    refuse.clear()
    await enforcer.apply_aliases()
    with IndexReader.open(index) as reader:
        assert not _listed(reader, f"http://{V4}/listed/Page.html")
        assert _listed(reader, "http://192.0.2.5/listed/Page.html")
        assert _listed(reader, "http://site.test/listed/Page.html")
    assert enforcer.status()["proxy-index"]["ip_aliases"]["aliases"] == 1


def test_check_config_says_aliases_are_on() -> None:
    on = ProxyConfig.model_validate(
        {"enabled": True, "alias_resolvers": [{"host": "192.0.2.53", "port": 53}]}
    )
    assert ProxyEnforcerConfig(proxy=on).summary_lines() == [
        "proxy       on, stop page 451, fail-open, IP-literal aliases"
    ]
    assert ProxyEnforcerConfig(proxy=ProxyConfig(enabled=True)).summary_lines() == [
        "proxy       on, stop page 451, fail-open"
    ]


async def test_a_reload_keeps_the_aliases_known(tmp_path: Path) -> None:
    """The successor built on a reload takes over what the hosts resolved to: its first
    index (written before the old enforcer retires) still refuses the address."""
    index = tmp_path / "idx.bin"

    def sections(status: int) -> ProxyEnforcerConfig:
        proxy = {
            "enabled": True,
            "index_path": str(index),
            "status": status,
            "stop_page_listen_port": free_port(udp=False),
            "alias_resolvers": [{"host": "127.0.0.1", "port": 53}],
        }
        return ProxyEnforcerConfig(proxy=ProxyConfig.model_validate(proxy))

    context = EnforcerContext(tmp_path, Metrics())
    old = ProxyEnforcer(sections(451), context)
    state = _state(PAGE)
    assert (await old.publish(state)).ok
    assert old.aliases is not None
    old.aliases.learn({"site.test": Resolved((V4,), 600)}, time.monotonic())
    await old.apply_aliases()
    reloaded = await old.reload(sections(403), context, state)
    try:
        new = reloaded.enforcer
        assert new is not old
        assert isinstance(new, ProxyEnforcer)
        assert new.aliases is old.aliases
        with IndexReader.open(index) as reader:
            assert _listed(reader, f"http://{V4}/listed/Page.html")
    finally:
        await reloaded.enforcer.close()
