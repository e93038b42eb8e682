"""The proxy's path filter: a host-blind, conservative "could this request be listed?" test.

Why it exists: Squid's per-request ``external_acl_type`` round trip costs Squid itself
about as much CPU as proxying an unfiltered request (``python -m bench squid_e2e``), so
asking the helper about every URL on a diverted host halves Squid's capacity. The eCAP
adapter in ``prefilter/`` answers Squid's ``wantsUrl(path)`` question in
process from this file, and only requests it cannot rule out go to the helper, which stays
the one place that canonicalises URLs and decides. The filter never decides "listed"; a
wrong "maybe" costs one helper round trip, and a missing or unreadable filter makes the
adapter say "maybe" to everything (the helper then sees every request, as without it).

Host-level entries are not in the filter: ``host``/``domain`` entries and url-prefix
entries for a whole host (path ``/``) are answered by the helper's cached ``--mode host``
ACL on the request host. Hashed (Safe Browsing) entries cannot be reduced to a path, so an
index with any of them gets a filter flagged *match all*.

Keys (what both sides hash): the unescaped, resolved paths of the request's *readings*
(:func:`edgeagent.canon.request_urls`), recovered from the raw path and query as Squid
passes them: percent-unescape until stable, split at the first ``?`` (the query is not
part of any key), ``\\`` read as ``/``; the readings are that path, the path cut at its
first ``#``, and each of those with path parameters removed (``;`` to the end of a
segment); each is then ``.``/``..``/``//`` resolved and left unescaped. For an entry
the same bytes are recovered from its canonical URL by unescaping its path (canonical
paths only escape bytes that unescaping restores). Then::

    url         SHA-256("u\\0" + path)[:8]                         the entry's path, any
                query (the helper weighs the query: an entry with one matches only some)
    url-prefix  SHA-256("p\\0" + path without trailing "/")[:8]  every "/" boundary
                of each request path, and the whole path, is probed (as the index does)

A raw ``#`` is not cut before unescaping: Squid hands it to the helper as ``%23``, which
the helper cannot tell from a literal ``%23``, so both sides read either way.

The adapter refuses to judge (answers "maybe") any raw path with a byte outside
``!``..``~``: whitespace trimming and Unicode decoding are the helper's business.

One canonicaliser: the C++ adapter repeats the path steps of :mod:`edgeagent.canon`
(unescape, split, readings, resolve: about 90 lines), although two implementations drift
apart and a spelling one of them misses is a listed page let through. It is accepted here
because the speed goal cannot be met otherwise (every external-ACL lookup costs Squid half
a request), and it is contained: the adapter never decides "listed", it only hashes, and
the Python functions below are the reference it must equal byte for byte.
``tests/unit/test_pathfilter.py`` checks that every spelling the index lists gets a
"maybe" (property test against the real index), and that the adapter's keys equal these
functions' keys on a generated corpus.

File layout (little-endian), version 2 (version 1 keyed url entries with their query)::

    header  magic "EAPXPTH1", version u32, flags u32 (bit 0: match all), count u64,
            policy_version u64, sha256 of the body (32 bytes)
    body    count x u64 keys (first 8 digest bytes, little-endian), sorted, unique

8 bytes per url/url-prefix entry; written 0640 with the proxy's group, atomically, before
the index. The adapter (option ``index=``) uses a filter only while its policy version
equals the one in the index header; a filter older than the index (not written, not
readable, not yet renamed) could hide a new entry, so until they match again every
request is asked.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgeagent import canon
from edgeagent.atomic import write_atomic
from edgeagent.bulk import paced
from edgeagent.entrydiff import blocks_changed
from edgeagent.errors import EdgeAgentError
from edgeagent.model import DesiredState, Entry, Scope

MAGIC = b"EAPXPTH1"
VERSION = 2
FLAG_MATCH_ALL = 1
FILTER_MODE = 0o640
MAX_PREFIX_PROBES = 32
"""Path boundaries probed for url-prefix entries; the index probes the same number."""

_HEADER = struct.Struct("<8sIIQQ32s")
HEADER_SIZE = _HEADER.size
_URL_TAG = b"u\0"
_PREFIX_TAG = b"p\0"


class PathFilterError(EdgeAgentError):
    """A filter file that cannot be used (missing, truncated, bad magic or checksum)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"proxy path filter {path}: {reason}")


def filter_path(index_path: str | os.PathLike[str]) -> Path:
    """Where the filter for ``index_path`` lives: beside it, ``.paths`` appended."""
    return Path(f"{os.fspath(index_path)}.paths")


def _key(tag: bytes, data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(tag + data).digest()[:8], "little")


# --------------------------------------------------------------------------- request side


def request_paths(raw: bytes) -> list[bytes] | None:
    """Unescaped, resolved paths of the readings of a raw request path as Squid passes it
    (first the path itself, no duplicates), or ``None`` (judge not).

    ``None`` for anything the filter does not judge: a byte outside ``!``..``~`` or a
    path not starting with ``/``. The C++ adapter implements exactly this function.
    """
    if not raw.startswith(b"/") or any(b < 0x21 or b > 0x7E for b in raw):
        return None
    s = canon.unescape_until_stable(raw)
    q = s.find(b"?")
    head = s if q < 0 else s[:q]
    if b"\\" in head:
        head = head.replace(b"\\", b"/")
    heads = [head]
    cut = head.find(b"#")
    if cut >= 0:
        heads.append(head[:cut])
    for h in list(heads):
        if b";" in h:
            heads.append(canon.strip_path_params(h))
    paths: list[bytes] = []
    for h in heads:
        path = canon.resolve_path(h)
        if path not in paths:
            paths.append(path)
    return paths


def probe_keys(raw: bytes) -> list[int] | None:
    """Keys probed for a raw request path (per reading: url, then prefixes); ``None``:
    judge not."""
    paths = request_paths(raw)
    if paths is None:
        return None
    keys: list[int] = []
    for path in paths:
        keys.append(_key(_URL_TAG, path))
        keys.extend(_key(_PREFIX_TAG, p) for p in canon.prefix_probes(path, MAX_PREFIX_PROBES))
    return keys


# --------------------------------------------------------------------------- entry side


def entry_filter_key(scope: Scope, value: str) -> int | None:
    """Key of a canonical ``url``/``url-prefix`` indicator; ``None`` for host-level ones."""
    if scope is Scope.URL:
        expr = canon.url_expression(value).partition("?")[0]  # any query goes to the helper
        return _key(_URL_TAG, canon.unescape_until_stable(expr[expr.index("/") :].encode("ascii")))
    if scope is Scope.URL_PREFIX:
        expr = canon.url_prefix_expression(value)
        path = expr[expr.index("/") :].rstrip("/")
        if not path:
            return None  # the whole host: the helper's host ACL answers it
        return _key(_PREFIX_TAG, canon.unescape_until_stable(path.encode("ascii")))
    return None


@dataclass(frozen=True, slots=True)
class PathFilterStats:
    """What :func:`write_path_filter` wrote."""

    path: Path
    count: int
    match_all: bool
    size_bytes: int


@dataclass(slots=True)
class PathFilterModel:
    """The filter's keys for a state, kept by change: a new policy version costs its
    changed entries (:func:`edgeagent.entrydiff.changed`), not a walk of every block.

    ``keys[key]`` counts the entries that hold ``key`` (two URLs differing only in their
    query share one); ``hashed`` counts the hashed entries (any of them: match all).
    """

    state: DesiredState
    keys: dict[int, int] = field(default_factory=dict)
    hashed: int = 0

    @classmethod
    def of(cls, state: DesiredState, extra: tuple[Entry, ...] = ()) -> PathFilterModel:
        """The model of ``state``'s blocks and of ``extra`` blocks listed in every
        version (the canary: :meth:`change` keeps them)."""
        model = cls(state)
        model._count(state.blocks, 1)
        model._count(extra, 1)
        return model

    def change(self, state: DesiredState) -> None:
        """Move the model to ``state``."""
        gone, came = blocks_changed(self.state, state)
        self._count(paced(gone), -1)
        self._count(paced(came), 1)
        self.state = state

    def _count(self, entries: Iterable[Entry], sign: int) -> None:
        keys = self.keys
        for entry in entries:
            scope = entry.indicator.scope
            if scope is Scope.URL_HASH:
                self.hashed += sign
            elif scope.is_url:
                key = entry_filter_key(scope, entry.indicator.value)
                if key is not None:
                    left = keys.get(key, 0) + sign
                    if left:
                        keys[key] = left
                    else:
                        del keys[key]

    def render(self, *, any_hashed: bool = False) -> tuple[bytes, bool]:
        """File content; ``(data, match_all)``.

        ``match_all`` when the policy has hashed entries (from the state or
        ``any_hashed``): their paths are unknown, so every request must go to the helper.
        """
        match_all = any_hashed or self.hashed > 0
        ordered = sorted(self.keys)
        body = struct.pack(f"<{len(ordered)}Q", *ordered)
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            FLAG_MATCH_ALL if match_all else 0,
            len(ordered),
            self.state.version,
            hashlib.sha256(body).digest(),
        )
        return header + body, match_all


def build_path_filter(state: DesiredState, *, any_hashed: bool = False) -> tuple[bytes, bool]:
    """File content for ``state``'s blocks; ``(data, match_all)`` (see
    :meth:`PathFilterModel.render`)."""
    return PathFilterModel.of(state).render(any_hashed=any_hashed)


def write_path_filter(
    state: DesiredState | PathFilterModel,
    path: str | os.PathLike[str],
    *,
    group: str | int | None = None,
    any_hashed: bool = False,
) -> PathFilterStats:
    """Build the filter (of a state, or from a model kept by change) and swap it in
    atomically (temp file 0640, verified, renamed)."""
    model = state if isinstance(state, PathFilterModel) else PathFilterModel.of(state)
    data, match_all = model.render(any_hashed=any_hashed)

    def check(tmp: Path) -> None:
        PathFilter.open(tmp)

    write_atomic(path, data, FILTER_MODE, group=group, check=check)
    count = _HEADER.unpack_from(data)[3]
    return PathFilterStats(Path(path), count, match_all, len(data))


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class PathFilter:
    """A verified filter in memory (tests and diagnostics; the adapter has its own)."""

    keys: frozenset[int]
    match_all: bool
    policy_version: int

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PathFilter:
        """Read and verify ``path``; raises :class:`PathFilterError` if unusable."""
        p = os.fspath(path)
        try:
            with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                data = bytes(mm)
        except (OSError, ValueError) as exc:
            raise PathFilterError(p, f"cannot read: {exc}") from exc
        if len(data) < HEADER_SIZE:
            raise PathFilterError(p, "truncated header")
        magic, version, flags, count, policy_version, digest = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise PathFilterError(p, "not a path filter (bad magic)")
        if version != VERSION:
            raise PathFilterError(p, f"unsupported filter version {version}")
        if len(data) != HEADER_SIZE + 8 * count:
            raise PathFilterError(p, f"size {len(data)} does not match header")
        body = data[HEADER_SIZE:]
        if hashlib.sha256(body).digest() != digest:
            raise PathFilterError(p, "checksum mismatch")
        keys = frozenset(struct.unpack(f"<{count}Q", body))
        return cls(keys, bool(flags & FLAG_MATCH_ALL), policy_version)

    def wants(self, raw: bytes) -> bool:
        """What the adapter answers for raw request path ``raw``: True = ask the helper."""
        if self.match_all:
            return True
        keys = probe_keys(raw)
        return keys is None or any(k in self.keys for k in keys)
