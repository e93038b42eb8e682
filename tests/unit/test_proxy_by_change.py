"""The proxy enforcer moves by the change the policy engine hands over: the canary is
kept by the models (the state is never copied to add it), a state carrying its change
(``DesiredState.delta``) gives the very index a compared one does, and the index's drift
check, recorded from the bytes written, still finds and repairs a damaged file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgeagent.config import BUNDLED_LISTS_DIR
from edgeagent.enforcement.base import EnforcerContext
from edgeagent.entrydiff import blocks_changed, changed
from edgeagent.guard import Guard
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.policy import BasePolicy, apply_changes, merge
from edgeagent.proxy.enforcer import ProxyConfig, ProxyEnforcer, ProxyEnforcerConfig
from edgeagent.proxy.index import IndexReader
from edgeagent.proxy.pathfilter import PathFilter, filter_path
from tests.support.ports import free_port

CANARY = "http://canary.edgeagent.example/edgeagent-canary"


def _guard() -> Guard:
    return Guard.load(Path(BUNDLED_LISTS_DIR) / "protected")


def _url(n: int) -> Entry:
    return Entry(Indicator.parse(Scope.URL, f"http://u{n}.example/page/{n}"), Action.BLOCK, "a")


def _domain(n: int) -> Entry:
    return Entry(Indicator.parse(Scope.DOMAIN, f"d{n}.example"), Action.BLOCK, "a")


def _enforcer(tmp_path: Path, name: str) -> ProxyEnforcer:
    proxy = {
        "enabled": True,
        "index_path": str(tmp_path / name / "index.bin"),
        "stop_page_listen_port": free_port(udp=False),
    }
    config = ProxyEnforcerConfig(proxy=ProxyConfig.model_validate(proxy))
    return ProxyEnforcer.from_config(config, EnforcerContext(tmp_path / name, Metrics()))


def _states() -> tuple[DesiredState, DesiredState]:
    """Version 1, and version 2 made from it by a feed's change (with its delta)."""
    guard = _guard()
    first = merge(1, [*map(_url, range(40)), *map(_domain, range(40))], guard)
    blocks = {e.indicator: e for e in first.blocks}
    removed = [blocks[_url(n).indicator] for n in range(0, 40, 3)]
    removed += [blocks[_domain(n).indicator] for n in range(1, 40, 4)]
    added = [*map(_url, range(100, 120)), *map(_domain, range(100, 110))]
    moved = apply_changes(BasePolicy(first), removed, added, guard)
    assert moved is not None
    return first, replace(moved.state, version=2)


def test_the_index_lists_the_canary_without_a_copy_of_the_state(tmp_path: Path) -> None:
    first, second = _states()
    enforcer = _enforcer(tmp_path, "canary")
    for state in (first, second):
        assert enforcer.write_index(state)
        assert enforcer.published_state is state  # the state itself, not a copy
    with IndexReader.open(enforcer.index_path) as reader:
        assert reader.policy_version == 2
        hit = reader.match(CANARY)
        assert hit is not None
        assert hit.scope == "url"
        assert reader.match("http://u101.example/page/101") is not None
        assert reader.match("http://u3.example/page/3") is None  # removed
        assert reader.match("http://u4.example/page/4") is not None  # kept
        assert reader.match("http://x.d101.example/") is not None
    paths = PathFilter.open(filter_path(enforcer.index_path))
    assert paths.policy_version == 2
    assert paths.wants(b"/edgeagent-canary")
    assert paths.wants(b"/page/101")
    assert not paths.wants(b"/page/3")


def test_a_state_s_delta_names_the_change_a_comparison_finds() -> None:
    first, second = _states()
    delta = second.delta
    assert delta is not None
    assert delta.base is first.blocks
    gone, came = changed(first.blocks, second.blocks)
    by_id = {id(e) for e in gone}, {id(e) for e in came}
    assert ({id(e) for e in delta.gone}, {id(e) for e in delta.came}) == by_id
    assert len(delta.gone) == 14 + 10
    assert len(delta.came) == 30
    handed = blocks_changed(first, second)
    assert ({id(e) for e in handed[0]}, {id(e) for e in handed[1]}) == by_id
    # From any other state the delta does not apply: compared instead.
    other = replace(first, blocks=first.blocks[1:])
    assert {id(e) for e in blocks_changed(other, second)[1]} == {
        id(e) for e in changed(other.blocks, second.blocks)[1]
    }


def test_the_index_moved_by_the_handed_change_is_the_compared_one(tmp_path: Path) -> None:
    first, second = _states()
    handed, compared = _enforcer(tmp_path, "handed"), _enforcer(tmp_path, "compared")
    for enforcer, state in ((handed, second), (compared, replace(second, delta=None))):
        assert enforcer.write_index(first)
        assert enforcer.published_state is first  # the state itself: no copy with the canary
        assert enforcer.write_index(state)
    index = handed.index_path.read_bytes()
    assert index == compared.index_path.read_bytes()
    assert filter_path(handed.index_path).read_bytes() == (
        filter_path(compared.index_path).read_bytes()
    )
    with IndexReader.open(handed.index_path) as reader:
        assert reader.policy_version == 2
        hit = reader.match(CANARY)
        assert hit is not None
        assert hit.scope == "url"
        assert reader.match("http://u101.example/page/101") is not None
        assert reader.match("http://u3.example/page/3") is None  # removed
        assert reader.match("http://u4.example/page/4") is not None  # kept
        assert reader.match("http://x.d101.example/") is not None
    paths = PathFilter.open(filter_path(handed.index_path))
    assert paths.policy_version == 2
    assert paths.wants(b"/edgeagent-canary")
    assert paths.wants(b"/page/101")
    assert not paths.wants(b"/page/3")


def test_a_damaged_index_is_found_and_written_again_byte_for_byte(tmp_path: Path) -> None:
    first, second = _states()
    enforcer = _enforcer(tmp_path, "drift")
    assert enforcer.write_index(first)
    assert enforcer.write_index(second)
    good = enforcer.index_path.read_bytes()
    assert not enforcer.repair_drift()  # nothing changed
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01  # one bit of the body: the header is intact
    enforcer.index_path.write_bytes(bytes(damaged))
    assert enforcer.repair_drift()
    assert enforcer.index_path.read_bytes() == good
    assert not enforcer.repair_drift()
    enforcer.index_path.unlink()
    assert enforcer.repair_drift()
    assert enforcer.index_path.read_bytes() == good
