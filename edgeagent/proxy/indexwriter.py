"""Writing the proxy index, and keeping it up to date by change instead of rebuilding it.

The file format and what is hashed are described in :mod:`edgeagent.proxy.index`.

:class:`IndexModel` holds, for every digest in the index, which records put it there (an
entry's own digest, or a marker several entries share): a digest stays while any record
holds it, and its tag is chosen from its records alone (an allow wins over blocks, then
the lowest tag), so the result does not depend on the order entries arrive in.
:meth:`IndexModel.change` takes the next :class:`~edgeagent.model.DesiredState` and
returns an :class:`IndexEdit`: the digests removed and added and the filter bits to set,
at the cost of the changed entries (the states are compared by object identity first:
entries that survive a policy version are the same objects).

:func:`apply_edit` turns the bytes of one index into the bytes of the next: the digest and
tag arrays are spliced, the slot table shifted, filter bits set (a removed entry's bit
stays set: the filter only ever says "maybe"), the header rewritten. The centre and every
edge run the same function on the same bytes, so they end with the same file, which
:func:`index_digest` names. A full :func:`build_index` lays the same digests out afresh
(the filter then has no stale bits), so it is the start of a new chain of edits.
"""

from __future__ import annotations

import array
import hashlib
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeagent.atomic import write_atomic
from edgeagent.bulk import paced
from edgeagent.entrydiff import blocks_changed, changed
from edgeagent.model import DesiredState, Entry, Scope
from edgeagent.proxy.index import (
    _COUNT_NAMES,
    _HEADER,
    _KIND_SHIFT,
    _T_URLHOST,
    HEADER_SIZE,
    INDEX_MODE,
    KIND_ALLOW,
    KIND_BLOCK,
    KIND_MARKER,
    MAGIC,
    MAX_SOURCES,
    VERSION,
    IndexFileError,
    IndexReader,
    _key,
    _query_markers,
    entry_key,
    source_label,
)

IndexBytes = bytes | bytearray | mmap.mmap  # an index file's content, in memory or mapped
_COPY_CHUNK = 1 << 22  # bytes :func:`assembled` copies at once (about a millisecond)
_MARKER_NAME = len(_COUNT_NAMES)  # the name number of marker records (not counted)
_NAME_SHIFT = 16  # a record is tag | name number << 16


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What :func:`write_index` wrote: counts only, nothing identifying an entry."""

    path: Path
    count: int
    policy_version: int
    counts: dict[str, int]
    size_bytes: int


@dataclass(frozen=True, slots=True)
class IndexEdit:
    """From the index at ``base`` to the index at ``version``.

    ``removes`` are digests that leave (applied first), ``adds`` digests that enter with
    their tag, ``bloom`` the CRC-32 of every tagged key added (the filter bits to set),
    ``counts`` and ``sources`` the new header counts and source labels.
    """

    base: int
    version: int
    removes: tuple[bytes, ...]
    adds: tuple[tuple[bytes, int], ...]
    bloom: tuple[int, ...]
    counts: tuple[int, ...]
    sources: tuple[str, ...]

    @property
    def changes(self) -> int:
        return len(self.removes) + len(self.adds)


# --------------------------------------------------------------------------- records


def _entry_records(entry: Entry, kind: int) -> Iterator[tuple[bytes, bytes | None, int]]:
    """(digest, tagged key or None, name number) of every record ``entry`` puts in the
    index as ``kind`` (block or allow)."""
    ind = entry.indicator
    if ind.scope.is_address:
        return
    if ind.scope is Scope.URL_HASH:  # already a digest of a lookup expression
        if kind == KIND_BLOCK:
            digest = bytes.fromhex(ind.value)
            if len(digest) != 32:
                raise IndexFileError("<build>", "hashed entry is not a 32-byte SHA-256 digest")
            yield digest, None, _COUNT_NAMES.index("hashed")
        return
    key = entry_key(ind.scope, ind.value)
    if kind == KIND_ALLOW:
        yield hashlib.sha256(key).digest(), key, _COUNT_NAMES.index("allow")
        return
    yield hashlib.sha256(key).digest(), key, _COUNT_NAMES.index(ind.scope.value)
    if ind.scope.is_url:
        expr = key[key.index(b"\0") + 1 :].decode("utf-8")
        markers = [_key(_T_URLHOST, expr.split("/", 1)[0])]
        if ind.scope is Scope.URL:
            markers.extend(_query_markers(expr))
        for marker in markers:
            yield hashlib.sha256(marker).digest(), marker, _MARKER_NAME


def _record_kind(entry_kind: int, name: int) -> int:
    return KIND_MARKER if name == _MARKER_NAME else entry_kind


# --------------------------------------------------------------------------- model


@dataclass(slots=True)
class IndexModel:
    """Every digest of the index with the records that hold it (see the module docstring).

    ``records[digest]`` is one record (``tag | name << 16``) or a dict record -> count.
    """

    version: int = 0
    records: dict[bytes, int | dict[int, int]] = field(default_factory=dict)
    crcs: list[int] = field(default_factory=list)  # of every key ever added (full build)
    sources: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0] * len(_COUNT_NAMES))
    state: DesiredState | None = None

    @classmethod
    def of(
        cls,
        state: DesiredState,
        hashed: Iterable[tuple[bytes, str]] = (),
        aliases: Iterable[Entry] = (),
        extra: tuple[Entry, ...] = (),
    ) -> IndexModel:
        """The model of ``state`` plus optional hashed SB digests (digest, source),
        IP-literal alias blocks (:mod:`edgeagent.proxy.aliases`; no two equal) and
        ``extra`` blocks listed in every version (the canary: :meth:`change` keeps them,
        so a million-entry state is never copied to add one)."""
        model = cls(version=state.version)
        touched: dict[bytes, tuple[int, int]] = {}
        for kind, entries in (
            (KIND_BLOCK, state.blocks),
            (KIND_BLOCK, extra),
            (KIND_ALLOW, state.allows),
            (KIND_BLOCK, aliases),
        ):
            model._add(entries, kind, touched, model.crcs)
        hashed_name = _COUNT_NAMES.index("hashed")
        for digest, source in hashed:
            if len(digest) != 32:
                raise IndexFileError("<build>", "hashed entry is not a 32-byte SHA-256 digest")
            tag = (KIND_BLOCK << _KIND_SHIFT) | model._source_number(source_label(source))
            model._hold(digest, tag | hashed_name << _NAME_SHIFT, touched)
        for digest in model.records:
            for name in model._names(digest):
                model.counts[name] += 1
        model.state = state
        return model

    def _source_number(self, label: str) -> int:
        try:
            return self.sources.index(label)  # a handful of labels, looked up per source
        except ValueError:
            if len(self.sources) >= MAX_SOURCES:
                raise IndexFileError("<build>", f"more than {MAX_SOURCES} sources") from None
            self.sources.append(label)
            return len(self.sources) - 1

    def _add(
        self,
        entries: Iterable[Entry],
        kind: int,
        touched: dict[bytes, tuple[int, int]],
        crcs: list[int],
    ) -> None:
        by_source: dict[str, int] = {}  # millions of entries share a handful of sources
        for entry in entries:
            number = by_source.get(entry.source)
            if number is None:
                number = by_source[entry.source] = self._source_number(source_label(entry.source))
            for digest, key, name in _entry_records(entry, kind):
                tag = (_record_kind(kind, name) << _KIND_SHIFT) | number
                self._hold(digest, tag | name << _NAME_SHIFT, touched)
                if key is not None:
                    crcs.append(zlib.crc32(key))

    def _remove(
        self, entries: Iterable[Entry], kind: int, touched: dict[bytes, tuple[int, int]]
    ) -> None:
        for entry in entries:
            number = self._source_number(source_label(entry.source))
            for digest, _, name in _entry_records(entry, kind):
                tag = (_record_kind(kind, name) << _KIND_SHIFT) | number
                self._release(digest, tag | name << _NAME_SHIFT, touched)

    def _remember(self, digest: bytes, touched: dict[bytes, tuple[int, int]]) -> None:
        if digest not in touched:
            held = digest in self.records
            touched[digest] = (self.tag(digest) if held else -1, self._name_bits(digest))

    def _hold(self, digest: bytes, record: int, touched: dict[bytes, tuple[int, int]]) -> None:
        self._remember(digest, touched)
        held = self.records.get(digest)
        if held is None:
            self.records[digest] = record
        elif isinstance(held, int):
            self.records[digest] = {held: 2} if held == record else {held: 1, record: 1}
        else:
            held[record] = held.get(record, 0) + 1

    def _release(self, digest: bytes, record: int, touched: dict[bytes, tuple[int, int]]) -> None:
        self._remember(digest, touched)
        held = self.records.get(digest)
        if held is None:
            raise IndexFileError("<model>", "a removed entry was not in the index")
        if isinstance(held, int):
            if held != record:
                raise IndexFileError("<model>", "a removed entry was not in the index")
            del self.records[digest]
            return
        left = held.get(record, 0) - 1
        if left < 0:
            raise IndexFileError("<model>", "a removed entry was not in the index")
        if left:
            held[record] = left
        else:
            del held[record]
        if len(held) == 1 and next(iter(held.values())) == 1:
            self.records[digest] = next(iter(held))
        elif not held:
            del self.records[digest]

    def _held(self, digest: bytes) -> Iterable[int]:
        held = self.records.get(digest)
        if held is None:
            return ()
        return (held,) if isinstance(held, int) else held.keys()

    def tag(self, digest: bytes) -> int:
        """The stored tag of a held digest: an allow record's if any, else the lowest."""
        tags = [r & 0xFFFF for r in self._held(digest)]
        allows = [t for t in tags if t >> _KIND_SHIFT == KIND_ALLOW]
        return min(allows) if allows else min(tags)

    def _names(self, digest: bytes) -> set[int]:
        return {r >> _NAME_SHIFT for r in self._held(digest)} - {_MARKER_NAME}

    def _name_bits(self, digest: bytes) -> int:
        return sum(1 << n for n in self._names(digest))

    def change(
        self,
        state: DesiredState,
        aliases: tuple[Iterable[Entry], Iterable[Entry]] = ((), ()),
    ) -> IndexEdit:
        """Move the model to ``state`` and return the edit from the previous version.

        ``aliases`` are the alias blocks gone and come meanwhile
        (:meth:`edgeagent.proxy.aliases.AliasBook.take`). ``state`` may be the current
        state itself: an edit of aliases only, from and to the same version.
        """
        old = self.state
        if old is None:
            raise IndexFileError("<model>", "no state to change from")
        touched: dict[bytes, tuple[int, int]] = {}
        bloom: list[int] = []
        for kind, (gone, came) in (
            (KIND_BLOCK, blocks_changed(old, state)),
            (KIND_ALLOW, changed(old.allows, state.allows)),
        ):
            self._remove(paced(gone), kind, touched)
            self._add(paced(came), kind, touched, bloom)
        self._remove(aliases[0], KIND_BLOCK, touched)
        self._add(aliases[1], KIND_BLOCK, touched, bloom)
        removes: list[bytes] = []
        adds: list[tuple[bytes, int]] = []
        for digest, (old_tag, old_names) in paced(touched.items()):
            new_tag = self.tag(digest) if digest in self.records else -1
            new_names = self._name_bits(digest)
            for n in range(len(_COUNT_NAMES)):
                self.counts[n] += (new_names >> n & 1) - (old_names >> n & 1)
            if new_tag == old_tag:
                continue
            if old_tag >= 0:
                removes.append(digest)
            if new_tag >= 0:
                adds.append((digest, new_tag))
        edit = IndexEdit(
            base=self.version,
            version=state.version,
            removes=tuple(sorted(removes)),
            adds=tuple(sorted(adds)),
            bloom=tuple(sorted(set(bloom))),
            counts=tuple(self.counts),
            sources=tuple(self.sources),
        )
        self.version, self.state = state.version, state
        return edit

    def render(self) -> bytes:
        """The whole index file for the model (a fresh layout)."""
        chosen = {digest: self.tag(digest) for digest in self.records}
        return layout(chosen, self.crcs, tuple(self.counts), tuple(self.sources), self.version)


# --------------------------------------------------------------------------- layout


def _prefix_bits(count: int) -> int:
    """Table width: four to eight digests per slot (one C-level search), 8 to 22 bits."""
    return max(8, min(22, count.bit_length() - 3))


def _filter_bits(count: int) -> int:
    """Filter width: 4 to 8 bits per entry (power of two), 2**16 to 2**28 bits."""
    return max(16, min(28, (8 * count).bit_length() - 1))


@dataclass(frozen=True, slots=True)
class _Shape:
    """The header fields besides the counts: slot and filter widths, digest count."""

    bits: int
    fbits: int
    count: int


def _header(
    shape: _Shape, version: int, counts: tuple[int, ...], source_blob: bytes, body_sha: bytes
) -> bytes:
    return _HEADER.pack(
        MAGIC,
        VERSION,
        shape.bits,
        shape.count,
        version,
        *counts,
        shape.fbits,
        len(source_blob),
        body_sha,
    )


def layout(
    chosen: dict[bytes, int],
    crcs: Iterable[int],
    counts: tuple[int, ...],
    sources: tuple[str, ...],
    version: int,
) -> bytes:
    """Lay out an index file: ``chosen`` digest -> tag, ``crcs`` of the tagged keys."""
    digests = sorted(chosen)
    count = len(digests)
    bits = _prefix_bits(count)
    shift = 32 - bits
    slots = 1 << bits
    # starts[s] = first index whose slot >= s.
    slot_of = [int.from_bytes(d[:4], "big") >> shift for d in digests]
    table = array.array("I", [0]) * (slots + 1)
    pos = 0
    for slot in range(slots + 1):
        while pos < count and slot_of[pos] < slot:
            pos += 1
        table[slot] = pos
    tags = array.array("H", [chosen[d] for d in digests])
    fbits = _filter_bits(count)
    fmask = (1 << fbits) - 1
    bloom = bytearray(1 << (fbits - 3))
    for crc in crcs:
        h = crc & fmask
        bloom[h >> 3] |= 1 << (h & 7)
    source_blob = "\n".join(sources).encode("utf-8")
    body = b"".join((_le(table), b"".join(digests), _le(tags), bytes(bloom), source_blob))
    head = _header(
        _Shape(bits, fbits, count), version, counts, source_blob, hashlib.sha256(body).digest()
    )
    return head + body


def _le(values: array.array[int]) -> bytes:
    """Little-endian bytes of an array (the file's byte order on any host)."""
    if struct.pack("=H", 1) != struct.pack("<H", 1):  # pragma: no cover - big-endian hosts
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def needs_layout(data: IndexBytes) -> bool:
    """True when an index kept by change has outgrown its slot table or filter: their
    widths are more than one bit off what a whole build would choose for its count (a
    bit either way is still within the format's bounds, and avoids relaying out an index
    whose count wavers around a power of two)."""
    f = _HEADER.unpack_from(data)
    count: int = f[3]
    bits: int = f[2]
    fbits: int = f[11]
    return abs(_prefix_bits(count) - bits) > 1 or abs(_filter_bits(count) - fbits) > 1


def index_digest(data: IndexBytes) -> str:
    """The name of an index file's content: SHA-256 of its header, which holds the
    SHA-256 of everything after it (so it covers the whole file)."""
    return hashlib.sha256(data[:HEADER_SIZE]).hexdigest()


def index_file_digest(path: Path) -> str | None:
    """:func:`index_digest` of the index file at ``path`` when the file is whole (layout
    and body checksum verified), ``""`` when it is not, ``None`` when there is none: the
    drift check of an index recorded with the digest of the bytes written
    (:meth:`edgeagent.drift.WrittenFiles.record_as`)."""
    try:
        with IndexReader.open(path) as reader:
            return reader.content_digest
    except IndexFileError:
        return "" if path.exists() else None


# --------------------------------------------------------------------------- edits


def apply_edit(data: IndexBytes, edit: IndexEdit) -> bytes:
    """The index ``edit`` makes of ``data`` (the index at ``edit.base``), as bytes."""
    spliced = splice_edit(data, edit)
    return b"".join(spliced.parts)


def assembled(spliced: Spliced) -> bytearray:
    """The index a splice makes, in one buffer (what :func:`apply_edit` joins), built a
    few MiB at a time: a join of a 40 MB index holds the GIL for the whole copy and its
    page faults (its pieces are views, which keep ``bytes.join`` from releasing it), and
    so would a buffer allocated whole (zeroed under the GIL); the event loop would wait
    that long once per policy version. Appending grows the buffer in place."""
    out = bytearray()
    group: list[bytes | memoryview] = []  # small pieces, joined a few MiB at a time
    grouped = 0
    for part in spliced.parts:
        n = len(part)
        if n < _COPY_CHUNK:
            group.append(part)
            grouped += n
            if grouped >= _COPY_CHUNK:
                out += b"".join(group)
                group, grouped = [], 0
            continue
        if group:
            out += b"".join(group)
            group, grouped = [], 0
        with memoryview(part) as whole:
            for i in range(0, n, _COPY_CHUNK):
                out += whole[i : i + _COPY_CHUNK]
    if group:
        out += b"".join(group)
    return out


@dataclass(frozen=True, slots=True)
class Spliced:
    """An index made by :func:`splice_edit`: its pieces in file order (the first is the
    header), views into the old index among them, so the old one must stay mapped until
    the pieces are written."""

    parts: tuple[bytes | memoryview, ...]

    @property
    def header(self) -> bytes:
        return bytes(self.parts[0])


def splice_edit(data: IndexBytes, edit: IndexEdit) -> Spliced:
    """The pieces of the index ``edit`` makes of ``data`` (the index at ``edit.base``):
    written out as they are (:func:`install_index`), the new file costs one pass over the
    old bytes (the checksum) and no copy in memory.

    Raises :class:`IndexFileError` when ``data`` is not at ``edit.base`` or the edit does
    not fit it (a digest to remove is missing, one to add is present).
    """
    f = _HEADER.unpack_from(data)
    bits: int = f[2]
    count: int = f[3]
    version: int = f[4]
    fbits: int = f[11]
    if version != edit.base:
        raise IndexFileError("<edit>", f"index is at version {version}, edit from {edit.base}")
    shift = 32 - bits
    t0 = HEADER_SIZE
    d0 = t0 + 4 * ((1 << bits) + 1)
    g0 = d0 + 32 * count
    b0 = g0 + 2 * count
    pair = struct.Struct("<II")

    def slot(digest: bytes) -> int:
        return int.from_bytes(digest[:4], "big") >> shift

    def position(digest: bytes) -> tuple[int, bool]:
        """(index of the first digest >= ``digest``, whether it is ``digest``)."""
        s = slot(digest)
        lo, hi = pair.unpack_from(data, t0 + 4 * s)
        i = lo
        while i < hi and data[d0 + 32 * i : d0 + 32 * i + 32] < digest:
            i += 1
        return i, i < hi and data[d0 + 32 * i : d0 + 32 * i + 32] == digest

    # (position, order, digest, tag): removes sort before adds at one position.
    edits: list[tuple[int, int, bytes, int]] = []
    # Paced (edgeagent.bulk): a new feed generation edits by a hundred thousand digests.
    for digest in paced(edit.removes):
        i, found = position(digest)
        if not found:
            raise IndexFileError("<edit>", "a digest to remove is not in the index")
        edits.append((i, 0, digest, -1))
    removed = set(edit.removes)
    for digest, tag in paced(edit.adds):
        i, found = position(digest)
        if found and digest not in removed:
            raise IndexFileError("<edit>", "a digest to add is already in the index")
        edits.append((i + 1 if found else i, 1, digest, tag))
    edits.sort()
    digests_view = memoryview(data)[d0:g0]
    tags_view = memoryview(data)[g0:b0]
    digest_parts: list[bytes | memoryview] = []
    tag_parts: list[bytes | memoryview] = []
    at = 0
    for i, order, digest, tag in paced(edits):
        if order == 0:
            digest_parts.append(digests_view[32 * at : 32 * i])
            tag_parts.append(tags_view[2 * at : 2 * i])
            at = i + 1
        else:
            if i > at:
                digest_parts.append(digests_view[32 * at : 32 * i])
                tag_parts.append(tags_view[2 * at : 2 * i])
                at = i
            digest_parts.append(digest)
            tag_parts.append(struct.pack("<H", tag))
    digest_parts.append(digests_view[32 * at :])
    tag_parts.append(tags_view[2 * at :])
    new_count = count - len(edit.removes) + len(edit.adds)
    table = _shift_table(
        data[t0:d0],
        [(slot(d), -1) for d in edit.removes] + [(slot(d), 1) for d, _ in edit.adds],
    )
    fmask = (1 << fbits) - 1
    bloom = bytearray(data[b0 : b0 + (1 << (fbits - 3))])
    for crc in edit.bloom:
        h = crc & fmask
        bloom[h >> 3] |= 1 << (h & 7)
    source_blob = "\n".join(edit.sources).encode("utf-8")
    sha = hashlib.sha256()
    for part in paced((table, *digest_parts, *tag_parts, bloom, source_blob)):
        sha.update(part)
    head = _header(
        _Shape(bits, fbits, new_count), edit.version, edit.counts, source_blob, sha.digest()
    )
    return Spliced((head, table, *digest_parts, *tag_parts, bytes(bloom), source_blob))


def _shift_table(table: bytes | bytearray, moves: list[tuple[int, int]]) -> bytes:
    """The slot table (little-endian u32s) after digests were added (+1) or removed (-1)
    in the given slots: every later slot starts that much further on.

    A run of slots moved by ``d`` is read as one little-endian integer and ``d`` times
    0x...000000010000000100000001 is added to it: each 32-bit lane gets ``d`` and, as
    every result fits its lane (a table entry never goes below 0 or past the count),
    nothing carries or borrows between lanes. Linear and in C, whatever the width.
    """
    moves.sort()
    parts: list[bytes | bytearray] = []
    done = 0  # slots before ``done`` are final
    delta = 0
    for s, step in moves:
        if s + 1 > done:  # slots up to ``s`` move by the digests before ``s`` only
            parts.append(_add_to_lanes(table[4 * done : 4 * (s + 1)], delta))
            done = s + 1
        delta += step
    parts.append(_add_to_lanes(table[4 * done :], delta))
    return b"".join(parts)


def _add_to_lanes(run: bytes | bytearray, delta: int) -> bytes | bytearray:
    if delta == 0 or not run:
        return run
    lanes = len(run) // 4
    ones = int.from_bytes(b"\x01\x00\x00\x00" * lanes, "little")
    return (int.from_bytes(run, "little") + delta * ones).to_bytes(len(run), "little")


def compose(edits: list[IndexEdit]) -> IndexEdit:
    """One edit doing what ``edits`` (consecutive, oldest first) do in turn."""
    if len(edits) == 1:
        return edits[0]
    in_base: dict[bytes, bool] = {}
    final: dict[bytes, int] = {}  # digest -> tag, or -1 when gone
    bloom: set[int] = set()
    for e in edits:
        for digest in e.removes:
            in_base.setdefault(digest, True)
            final[digest] = -1
        for digest, tag in e.adds:
            in_base.setdefault(digest, False)
            final[digest] = tag
        bloom.update(e.bloom)
    removes = sorted(d for d, was in in_base.items() if was)
    adds = sorted((d, t) for d, t in final.items() if t >= 0)
    last = edits[-1]
    return IndexEdit(
        edits[0].base,
        last.version,
        tuple(removes),
        tuple(adds),
        tuple(sorted(bloom)),
        last.counts,
        last.sources,
    )


# --------------------------------------------------------------------------- encoding

_EDIT_MAGIC = b"EAPXEDT1"
_EDIT_HEAD = struct.Struct("<8sQQIII6II")


def encode_edit(edit: IndexEdit) -> bytes:
    """The edit as bytes (digests, tags and CRCs only: nothing readable about an entry)."""
    blob = "\n".join(edit.sources).encode("utf-8")
    head = _EDIT_HEAD.pack(
        _EDIT_MAGIC,
        edit.base,
        edit.version,
        len(edit.removes),
        len(edit.adds),
        len(edit.bloom),
        *edit.counts,
        len(blob),
    )
    return b"".join(
        (
            head,
            *edit.removes,
            *(d for d, _ in edit.adds),
            struct.pack(f"<{len(edit.adds)}H", *(t for _, t in edit.adds)),
            struct.pack(f"<{len(edit.bloom)}I", *edit.bloom),
            blob,
        )
    )


def decode_edit(data: bytes) -> IndexEdit:
    """Read :func:`encode_edit`'s bytes; :class:`IndexFileError` when malformed."""
    if len(data) < _EDIT_HEAD.size:
        raise IndexFileError("<edit>", "truncated edit")
    f = _EDIT_HEAD.unpack_from(data)
    if f[0] != _EDIT_MAGIC:
        raise IndexFileError("<edit>", "not an index edit (bad magic)")
    n_rm, n_add, n_bloom, blob_len = f[3], f[4], f[5], f[12]
    at = _EDIT_HEAD.size
    size = at + 32 * n_rm + 34 * n_add + 4 * n_bloom + blob_len
    if len(data) != size:
        raise IndexFileError("<edit>", f"size {len(data)} does not match header ({size})")
    removes = tuple(data[at + 32 * i : at + 32 * i + 32] for i in range(n_rm))
    at += 32 * n_rm
    add_digests = [data[at + 32 * i : at + 32 * i + 32] for i in range(n_add)]
    at += 32 * n_add
    tags = struct.unpack_from(f"<{n_add}H", data, at)
    at += 2 * n_add
    bloom = struct.unpack_from(f"<{n_bloom}I", data, at)
    at += 4 * n_bloom
    sources = tuple(data[at:].decode("utf-8").split("\n")) if blob_len else ()
    return IndexEdit(
        f[1],
        f[2],
        removes,
        tuple(zip(add_digests, tags, strict=True)),
        tuple(bloom),
        tuple(f[6:12]),
        sources,
    )


# --------------------------------------------------------------------------- files


def build_index(
    state: DesiredState, hashed: Iterable[tuple[bytes, str]] = ()
) -> tuple[bytes, dict[str, int]]:
    """Serialise the index for ``state`` (plus optional hashed SB digests) to bytes.

    Returns the file content and per-kind counts (digests holding a record of each kind).
    A digest held by both a block and an allow is stored as the allow; a digest held by
    several sources carries the lowest source number.
    """
    model = IndexModel.of(state, hashed)
    return model.render(), dict(zip(_COUNT_NAMES, model.counts, strict=True))


def install_index(
    data: bytes | bytearray | Spliced,
    path: str | os.PathLike[str],
    *,
    group: str | int | None = None,
    body_hashed: bool = False,
    fence: Callable[[str], None] | None = None,
) -> None:
    """Swap ``data`` in at ``path``: temp file (0640, ``group``), check, fsync, rename.

    The check re-opens the temporary file with :class:`IndexReader` (layout and body
    checksum), so a reader never sees a file it would refuse. With ``body_hashed`` (the
    caller computed the header's body checksum itself: :func:`layout`,
    :func:`splice_edit`) it reads back the header and size only, sparing a second pass
    over a large file. A :class:`Spliced` index is written piece by piece.
    ``fence("the proxy index")``, last before the rename, may refuse it (``Fenced``: a
    deposed leader).
    """
    parts = (
        data.parts
        if isinstance(data, Spliced)
        else (data if isinstance(data, bytes) else memoryview(data),)
    )
    header = bytes(parts[0][:HEADER_SIZE])
    size = sum(len(p) for p in parts)

    def check(tmp: Path) -> None:
        if not body_hashed:
            IndexReader.open(tmp).close()
        else:
            with tmp.open("rb") as f:
                head = f.read(HEADER_SIZE)
                on_disk = os.fstat(f.fileno()).st_size
            if head != header or on_disk != size:
                raise IndexFileError(str(tmp), "written file differs from the index")
        if fence is not None:
            fence("the proxy index")

    write_atomic(path, parts, INDEX_MODE, group=group, check=check)


def map_index(path: str | os.PathLike[str]) -> mmap.mmap:
    """The index file at ``path``, mapped read-only (for the next :func:`splice_edit`)."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def write_index(
    state: DesiredState,
    path: str | os.PathLike[str],
    *,
    group: str | int | None = None,
    hashed: Iterable[tuple[bytes, str]] = (),
    fence: Callable[[str], None] | None = None,
) -> IndexStats:
    """Build the index for ``state`` and install it (:func:`install_index`)."""
    data, counts = build_index(state, hashed)
    install_index(data, path, group=group, fence=fence)
    count = _HEADER.unpack_from(data)[3]
    return IndexStats(Path(path), count, state.version, counts, len(data))


def stats_of(data: bytes | bytearray, path: str | os.PathLike[str]) -> IndexStats:
    """The counts an index file's header holds."""
    f = _HEADER.unpack_from(data)
    return IndexStats(
        Path(path), f[3], f[4], dict(zip(_COUNT_NAMES, f[5:11], strict=True)), len(data)
    )
