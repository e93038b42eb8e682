"""The proxy index kept by change: edits from one policy version to the next."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.model import Action, DesiredState, Entry, Indicator
from edgeagent.proxy.index import HEADER_SIZE, IndexFileError, IndexReader
from edgeagent.proxy.indexwriter import (
    IndexEdit,
    IndexModel,
    apply_edit,
    build_index,
    compose,
    decode_edit,
    encode_edit,
    index_digest,
)
from tests.support.fuzzing import fuzz_settings

POOL = [
    Entry(Indicator.parse("url", "http://news.site.test/a/listed.html"), Action.BLOCK, "iwf"),
    Entry(Indicator.parse("url", "http://news.site.test/b.html?id=3&x=1"), Action.BLOCK, "iwf"),
    Entry(Indicator.parse("url-prefix", "http://news.site.test/dir/"), Action.BLOCK, "police"),
    Entry(Indicator.parse("domain", "whole.site.test"), Action.BLOCK, "decision:4"),
    Entry(Indicator.parse("host", "one.site.test"), Action.BLOCK, "iwf"),
    Entry(Indicator.parse("url", "http://other.site.test/p.html"), Action.BLOCK, "decision:7"),
    Entry(Indicator.parse("url", "http://other.site.test/q.html"), Action.BLOCK, "iwf"),
    Entry(Indicator.parse("ip", "192.0.2.7"), Action.BLOCK, "iwf"),
]
ALLOWS = [
    Entry(
        Indicator.parse("url", "http://news.site.test/a/listed.html"), Action.ALLOW, "decision:9"
    ),
    Entry(Indicator.parse("host", "fine.site.test"), Action.ALLOW, "decision:10"),
]
PROBES = [
    "http://news.site.test/a/listed.html",
    "http://news.site.test/b.html?x=1&id=3&z=2",
    "http://news.site.test/dir/sub/page",
    "http://deep.whole.site.test/",
    "http://one.site.test/x",
    "http://other.site.test/p.html",
    "http://other.site.test/q.html",
    "http://fine.site.test/",
    "http://unlisted.site.test/",
]


def _state(version: int, blocks: list[int], allows: list[int]) -> DesiredState:
    key = lambda e: (e.indicator.scope.value, e.indicator.value)  # noqa: E731
    return DesiredState(
        version,
        tuple(sorted((POOL[i] for i in set(blocks)), key=key)),
        tuple(sorted((ALLOWS[i] for i in set(allows)), key=key)),
    )


def _answers(data: bytes, tmp: Path) -> list[tuple[str, str] | None]:
    tmp.write_bytes(data)
    with IndexReader.open(tmp) as reader:
        return [None if (m := reader.match(url)) is None else (m.scope, m.source) for url in PROBES]


picks = st.lists(st.integers(0, len(POOL) - 1), max_size=len(POOL))
allow_picks = st.lists(st.integers(0, len(ALLOWS) - 1), max_size=2)


@fuzz_settings(40, 400)
@given(st.lists(st.tuples(picks, allow_picks), min_size=1, max_size=5), picks, allow_picks)
def test_an_index_kept_by_change_answers_as_one_built_whole(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[list[int], list[int]]],
    first_blocks: list[int],
    first_allows: list[int],
) -> None:
    tmp = tmp_path_factory.mktemp("edits") / "i.bin"
    state = _state(1, first_blocks, first_allows)
    model = IndexModel.of(state)
    data = model.render()
    edits: list[IndexEdit] = []
    start = data
    for n, (blocks, allows) in enumerate(steps, start=2):
        state = _state(n, blocks, allows)
        edit = decode_edit(encode_edit(model.change(state)))
        edits.append(edit)
        data = apply_edit(data, edit)
        whole, _ = build_index(state)
        assert _answers(data, tmp) == _answers(whole, tmp)
        IndexReader.open(tmp).close()  # the checksum of the spliced file holds
    # Edits composed do what they do in turn, byte for byte (the edge checks the digest).
    assert index_digest(apply_edit(start, compose(edits))) == index_digest(data)


def test_one_decision_is_a_small_edit_and_both_sides_agree(tmp_path: Path) -> None:
    feed = [
        Entry(Indicator.parse("url", f"http://s{i}.site.test/p{i}.html"), Action.BLOCK, "iwf")
        for i in range(2000)
    ]
    state = DesiredState(1, tuple(feed), ())
    centre = IndexModel.of(state)
    data = centre.render()
    decision = Entry(
        Indicator.parse("url", "http://new.site.test/x.html"), Action.BLOCK, "decision:1"
    )
    nxt = DesiredState(2, (*state.blocks, decision), ())
    edit = centre.change(nxt)
    # The page's digest, its host marker, their filter bits: a few hundred bytes.
    assert (len(edit.adds), len(edit.removes), len(edit.bloom)) == (2, 0, 2)
    assert len(encode_edit(edit)) < 400
    edge = apply_edit(data, edit)
    assert apply_edit(data, decode_edit(encode_edit(edit))) == edge
    tmp = tmp_path / "i.bin"
    tmp.write_bytes(edge)
    with IndexReader.open(tmp) as reader:
        assert reader.policy_version == 2
        assert reader.match("http://new.site.test/x.html") is not None
        assert reader.match("http://s5.site.test/p5.html") is not None
    # Revoked again: the index holds what it held before (the filter keeps a stale bit).
    back = apply_edit(edge, centre.change(replace(state, version=3)))
    tmp.write_bytes(back)
    with IndexReader.open(tmp) as reader:
        assert reader.count == IndexReader.open(_write(tmp_path / "w.bin", data)).count
        assert reader.match("http://new.site.test/x.html") is None


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_an_edit_for_another_version_or_a_tampered_edit_is_refused() -> None:
    state = DesiredState(1, tuple(POOL[:3]), ())
    model = IndexModel.of(state)
    data = model.render()
    edit = model.change(DesiredState(2, tuple(POOL[:4]), ()))
    with pytest.raises(IndexFileError, match="version 1, edit from 5"):
        apply_edit(data, replace(edit, base=5))
    with pytest.raises(IndexFileError, match="already in the index"):
        apply_edit(data, replace(edit, adds=((build_digest(data), 0),)))
    with pytest.raises(IndexFileError, match="not in the index"):
        apply_edit(data, replace(edit, removes=(b"\x01" * 32,)))
    with pytest.raises(IndexFileError, match="does not match"):
        decode_edit(encode_edit(edit)[:-1])


def build_digest(data: bytes) -> bytes:
    """The first digest stored in an index file (the prefix width is at offset 12)."""
    bits = int.from_bytes(data[12:16], "little")
    start = HEADER_SIZE + 4 * ((1 << bits) + 1)
    return data[start : start + 32]


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 22])
def test_an_index_assembled_piece_by_piece_is_the_joined_one(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enforcer copies a splice into one buffer a few MiB at a time (so the event
    loop gets the GIL in between); the bytes are those apply_edit joins, whatever the
    pieces' sizes against the copy size."""
    from edgeagent.proxy import indexwriter

    monkeypatch.setattr(indexwriter, "_COPY_CHUNK", chunk)
    feed = [
        Entry(Indicator.parse("url", f"http://s{i}.site.test/p{i}.html"), Action.BLOCK, "iwf")
        for i in range(3000)
    ]
    state = DesiredState(1, tuple(feed), ())
    model = IndexModel.of(state)
    data = model.render()
    moved = DesiredState(2, (*feed[:1000:7], *feed[1000:2000], *POOL[:3]), ())
    moved = replace(moved, blocks=tuple(sorted(moved.blocks, key=lambda e: e.indicator)))
    edit = model.change(moved)
    assert edit.changes > 100
    joined = apply_edit(data, edit)
    built = indexwriter.assembled(indexwriter.splice_edit(data, edit))
    assert isinstance(built, bytearray)
    assert built == joined
    again = apply_edit(built, model.change(replace(moved, version=3)))  # a buffer splices too
    assert again[HEADER_SIZE:] == joined[HEADER_SIZE:]
