"""The proxy's hashed index: digests of list entries, never the entries themselves.

Written by :mod:`edgeagent.proxy.indexwriter` (whole, or by change) and read by the Squid
helper through :class:`IndexReader`. The proxy host only ever holds this file: one
SHA-256 digest per entry, so a stolen index does not reveal the list.

What is hashed (``scope`` tag, a NUL, then the canonical expression)::

    url         "url\\0"    + canon.url_expression(value)  host + path [+ "?" + canonical query]
    url-prefix  "prefix\\0" + host + path, trailing "/" removed   ("/" stays "/")
    host        "host\\0"   + name
    domain      "domain\\0" + name
    (marker)    "urlhost\\0" + host of every url / url-prefix block (CONNECT accounting)
    (marker)    "urlq\\0" + host + path of every url block with a query
    (marker)    "urlp\\0" + host + path + "?" + each parameter of such a block

Scope tags keep the four kinds apart: a ``host`` entry never matches a subdomain, a
``domain`` entry matches the name and every subdomain, ``url`` and ``url-prefix`` entries
match as :mod:`edgeagent.canon` says ("Matching rules", any scheme, any port), on every
reading of the request (:func:`edgeagent.canon.request_urls`; listed when any reading
is). A prefix entry is stored without its trailing slash so that ``/a/b/`` and ``/a/b``
are one prefix and the request side needs one probe per path segment. ``ip``/``cidr``
entries are not the proxy's business (routes/RPZ).

How a request's query is probed: the exact canonical query (block or allow), the path
alone (a block without a query matches every query), and, when the path has a ``urlq``
marker, every combination of the request's parameters that have a ``urlp`` marker (a
block with a query matches when its parameters are among the request's). A request
carrying more than :data:`MAX_LISTED_PARAMS` such parameters is refused outright rather
than costing 2**n probes: no real page needs more listed parameters of one path.

Optional *hashed* digests (untagged SHA-256 of Safe Browsing lookup expressions, from a
hashed URL list feed) are stored alongside; they are probed with
:func:`edgeagent.canon.lookup_expressions` only when the index holds any.

File layout (little-endian), version 2 (version 1 hashed the query as given)::

    header   magic "EAPXIDX1", version u32, prefix_bits u32, count u64,
             policy_version u64, per-kind counts 6 x u32, filter_bits u32,
             sources_len u32, sha256 of everything after the header (32 bytes)
    table    (2**prefix_bits + 1) x u32: index of the first digest whose top
             prefix_bits bits are >= the slot; slot i's digests are [table[i], table[i+1])
    digests  count x 32 bytes, sorted
    tags     count x u16: bits 0-11 source number, bits 12-13 kind (block/allow/marker)
    filter   2**filter_bits bits: bit (crc32(tagged expression) mod 2**filter_bits) is
             set for every tagged entry; a clear bit proves "not listed" without hashing
    sources  UTF-8 source labels joined by "\\n" (feed names, "decision"; not secret)

Memory: 32 + 2 bytes per entry, the table (0.5-1 byte per entry: its width follows the
count) and the filter (0.5-1 byte per entry), i.e. <= 40 bytes per entry. The filter is a
one-hash Bloom filter over CRC-32 (4-8 bits per entry, so most probes of an unlisted
request cost one CRC and one byte read instead of a SHA-256); it reveals nothing the
digests do not (anyone holding the file can test a guessed URL against them anyway).
Marker digests add one entry per distinct host with URL-level blocks, and one per path and
parameter of url blocks with a query. The file is mmapped read-only.
Allow entries win over blocks (like the RPZ exception zone, which is consulted first).
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from edgeagent import canon
from edgeagent.errors import EdgeAgentError, InvalidTarget
from edgeagent.model import Scope

MAGIC = b"EAPXIDX1"
VERSION = 2
INDEX_MODE = 0o640
MAX_PREFIX_PROBES = 32
"""Longest path depth probed for url-prefix entries (deeper paths use their first 32)."""
MAX_LISTED_PARAMS = 8
"""Most request parameters with a ``urlp`` marker on one path that are combined (2**8 - 1
probes); a request with more is refused as listed."""

_HEADER = struct.Struct("<8sIIQQ6III32s")
HEADER_SIZE = _HEADER.size
_PAIR = struct.Struct("<II")
_TAG = struct.Struct("<H")

KIND_BLOCK = 0
KIND_ALLOW = 1
KIND_MARKER = 2
_KIND_SHIFT = 12
_SOURCE_MASK = 0x0FFF
MAX_SOURCES = _SOURCE_MASK + 1

# Per-kind counters in the header, in this order.
_COUNT_NAMES = ("url", "url-prefix", "host", "domain", "hashed", "allow")

_SOURCE_CHARS = re.compile(r"[^a-z0-9_.-]+")


class IndexFileError(EdgeAgentError):
    """An index file that cannot be used (missing, truncated, wrong magic or checksum)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"proxy index {path}: {reason}")


@dataclass(frozen=True, slots=True)
class IndexHit:
    """A listed request: which kind of entry matched and the source label it came from."""

    scope: str  # "url", "url-prefix", "host", "domain" or "hashed"
    source: str
    digest: bytes = b""  # the matched entry's digest (empty for marker hits)


# --------------------------------------------------------------------------- expressions

_T_URL = b"url\0"
_T_PREFIX = b"prefix\0"
_T_HOST = b"host\0"
_T_DOMAIN = b"domain\0"
_T_URLHOST = b"urlhost\0"
_T_URLQ = b"urlq\0"
_T_URLP = b"urlp\0"

# What a probe's hit may decide (``_decide``): blocks and allows, blocks only (a block
# matching more widely than its own expression: an allow matches only its own), or a
# marker standing for a block (too many listed parameters to combine).
_ANY = 0
_BLOCKS = 1
_MARKER_BLOCKS = 2


def _key(tag: bytes, expr: str) -> bytes:
    """The tagged expression whose SHA-256 is stored (and whose CRC-32 feeds the filter)."""
    return tag + expr.encode("utf-8")


def _prefix_key(host: str, path: str) -> str:
    """Canonical url-prefix expression: trailing slashes removed, the root stays ``/``."""
    stripped = path.rstrip("/")
    return host + (stripped or "/")


def entry_key(scope: Scope, value: str) -> bytes:
    """Tagged expression of a canonical indicator ``value`` of ``scope`` (module docstring).

    Raises :class:`InvalidTarget` for address scopes, which the proxy does not enforce.
    """
    if scope is Scope.URL:
        return _key(_T_URL, canon.url_expression(value))
    if scope is Scope.URL_PREFIX:
        expr = canon.url_prefix_expression(value)
        slash = expr.find("/")
        return _key(_T_PREFIX, _prefix_key(expr[:slash], expr[slash:]))
    if scope is Scope.HOST:
        return _key(_T_HOST, value)
    if scope is Scope.DOMAIN:
        return _key(_T_DOMAIN, value)
    raise InvalidTarget("address entries are not enforced by the proxy", value)


def entry_digest(scope: Scope, value: str) -> bytes:
    """SHA-256 of :func:`entry_key`: what the index stores for the entry."""
    return hashlib.sha256(entry_key(scope, value)).digest()


def source_label(source: str) -> str:
    """Stop-page source label of an entry source: ``decision:<id>`` -> ``decision``.

    Labels name feeds (configuration, not list content) and contain only
    ``[a-z0-9_.-]``, so they are safe in a Squid helper reply and a query string.
    """
    base = "decision" if source.startswith("decision:") else source
    label = _SOURCE_CHARS.sub("-", base.lower()).strip("-")[:64]
    return label or "unknown"


# Already-canonical http(s) URLs without port, escapes, dot segments, doubled slashes or
# path parameters: canon.request_urls returns them alone, so the helper skips it (Squid
# hands over such URLs almost always). Host: LDH/_ labels, no "xn--", last label starts
# with a letter (so never an IPv4 form). tests/unit/test_proxy_index.py checks the
# equivalence.
_FAST_URL = re.compile(
    r"https?://"
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"/[!$&'()*+,\-./0-9:=@A-Z_a-z~]*"
    r"(?:\?[^\x00-\x20#%\x7f-\U0010ffff]*)?"
)


def fast_request_urls(url: str) -> list[str]:
    """``canon.request_urls(url)``, skipping the full parse when ``url`` is canonical and
    has a single reading."""
    if _FAST_URL.fullmatch(url) is not None:
        q = url.find("?")
        head = url if q < 0 else url[:q]
        if "/." not in head and "//" not in head[8:] and "xn--" not in head:
            host_end = head.index("/", 8)
            if host_end - head.index("//") - 2 <= 253:
                return [url]
    return canon.request_urls(url)


def _query_markers(expr: str) -> list[bytes]:
    """``urlq``/``urlp`` marker keys of a url block's expression (none without a query)."""
    path, sep, query = expr.partition("?")
    if not sep:
        return []
    base = path.encode("utf-8")
    return [_T_URLQ + base] + [_T_URLP + base + b"?" + p.encode() for p in query.split("&")]


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What the helper compares to notice a replaced index (rename gives a new inode)."""

    dev: int
    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class IndexReader:
    """A verified, memory-mapped index. Use :meth:`open`; :meth:`match` answers requests.

    Read-only after open. ``close()`` unmaps the file.
    """

    def __init__(self, path: Path, mm: mmap.mmap, identity: FileIdentity) -> None:
        self.path = path
        self.identity = identity
        self._mm = mm
        fields = _HEADER.unpack_from(mm)
        self.prefix_bits: int = fields[2]
        self.count: int = fields[3]
        self.policy_version: int = fields[4]
        self.counts = dict(zip(_COUNT_NAMES, fields[5:11], strict=True))
        self._shift = 32 - self.prefix_bits
        self._table = HEADER_SIZE
        self._digests = self._table + 4 * ((1 << self.prefix_bits) + 1)
        self._tags = self._digests + 32 * self.count
        self._bloom = self._tags + 2 * self.count
        self._fmask = (1 << fields[11]) - 1
        src_off = self._bloom + (1 << (fields[11] - 3))
        self.sources: tuple[str, ...] = tuple(
            mm[src_off : src_off + fields[12]].decode("utf-8").split("\n")
        )
        c = self.counts
        # Allow entries are counted apart from the blocks of their scope: with any allow
        # in the index every kind of key is probed, or an allow could never be found.
        allows = c["allow"] > 0
        self._any_url = c["url"] > 0 or allows
        self._any_url_block = c["url"] > 0
        self._any_prefix = c["url-prefix"] > 0 or allows
        self._any_host = c["host"] > 0 or allows
        self._any_domain = c["domain"] > 0 or allows
        self._any_hashed = c["hashed"] > 0
        self._any_allow = c["allow"] > 0
        self._any_marker = c["url"] + c["url-prefix"] > 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> IndexReader:
        """Map ``path`` and verify magic, version, sizes and checksum.

        Raises :class:`IndexFileError` (never a partial reader) when the file is unusable.
        """
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise IndexFileError(str(p), f"cannot open: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER_SIZE:
                raise IndexFileError(str(p), "truncated header")
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        try:
            _verify(str(p), mm)
        except BaseException:
            mm.close()
            raise
        identity = FileIdentity(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        return cls(p, mm, identity)

    def close(self) -> None:
        self._mm.close()

    @property
    def content_digest(self) -> str:
        """SHA-256 (hex) of the header, which holds the checksum of the body verified at
        :meth:`open`: it names the whole file's content (``indexwriter.index_digest``)."""
        return hashlib.sha256(self._mm[:HEADER_SIZE]).hexdigest()

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- probing

    def _find(self, digest: bytes) -> int:
        """Tag of ``digest`` or -1. One C-level search inside the digest's table slot."""
        mm = self._mm
        lo, hi = _PAIR.unpack_from(
            mm, self._table + 4 * (int.from_bytes(digest[:4], "big") >> self._shift)
        )
        if lo == hi:
            return -1
        base = self._digests
        pos = mm.find(digest, base + 32 * lo, base + 32 * hi)
        while pos >= 0:
            rel = pos - base
            if rel % 32 == 0:
                return int(_TAG.unpack_from(mm, self._tags + rel // 16)[0])
            # A match straddling two digests: astronomically unlikely, but be exact.
            pos = mm.find(digest, pos + 1, base + 32 * hi)
        return -1

    def _probe(self, key: bytes) -> int:
        """Tag of a tagged expression or -1; the CRC filter answers most misses."""
        h = zlib.crc32(key) & self._fmask
        if not (self._mm[self._bloom + (h >> 3)] >> (h & 7)) & 1:
            return -1
        return self._find(hashlib.sha256(key).digest())

    def contains(self, digest: bytes) -> bool:
        """True if ``digest`` is in the index as any kind (tests, diagnostics)."""
        return self._find(digest) >= 0

    def _keys(self, c: str) -> list[tuple[bytes, str, int]]:
        """Tagged probe keys of canonical URL ``c``, most specific first, each with what
        its hit may decide (``_ANY``, ``_BLOCKS``, ``_MARKER_BLOCKS``)."""
        b = c.encode("ascii")  # canonical URLs are ASCII
        rest = b.index(b"://") + 3
        slash = b.index(b"/", rest)
        authority, tail = b[rest:slash], b[slash:]
        if authority.startswith(b"["):
            host, is_ip = authority[: authority.index(b"]") + 1], True
        else:
            colon = authority.find(b":")
            host = authority if colon < 0 else authority[:colon]
            is_ip = host[host.rfind(b".") + 1 :].isdigit()
        q = tail.find(b"?")
        path = tail if q < 0 else tail[:q]
        keys: list[tuple[bytes, str, int]] = []
        if self._any_url:
            params = () if q < 0 else canon.query_params(tail[q + 1 :].decode("ascii"))
            if not params:
                keys.append((_T_URL + host + path, "url", _ANY))
            else:
                keys.append((_T_URL + host + path + b"?" + "&".join(params).encode(), "url", _ANY))
                if self._any_url_block:
                    keys.append((_T_URL + host + path, "url", _BLOCKS))
                    self._param_keys(host + path, params, keys)
        if self._any_prefix:
            base = _T_PREFIX + host
            keys.append((base + b"/", "url-prefix", _ANY))
            keys += [
                (base + p, "url-prefix", _ANY) for p in canon.prefix_probes(path, MAX_PREFIX_PROBES)
            ]
        if not is_ip:
            self._name_keys(host, keys)
        return keys

    def _param_keys(
        self, host_path: bytes, params: tuple[str, ...], keys: list[tuple[bytes, str, int]]
    ) -> None:
        """Keys of url blocks on ``host_path`` whose parameters are among ``params``."""
        if self._probe(_T_URLQ + host_path) < 0:
            return  # no url block with a query on this path
        base = _T_URLP + host_path + b"?"
        listed = [p for p in params if self._probe(base + p.encode()) >= 0]
        if len(listed) > MAX_LISTED_PARAMS:
            keys.append((_T_URLQ + host_path, "url", _MARKER_BLOCKS))
            return
        url = _T_URL + host_path + b"?"
        for size in range(1, len(listed) + 1):
            for combo in itertools.combinations(listed, size):  # sorted, as entries are
                if combo != params:  # the exact query is probed already
                    keys.append((url + "&".join(combo).encode(), "url", _BLOCKS))

    def _name_keys(self, host: bytes, keys: list[tuple[bytes, str, int]]) -> None:
        if self._any_host:
            keys.append((_T_HOST + host, "host", _ANY))
        if self._any_domain:
            name = host
            while True:
                keys.append((_T_DOMAIN + name, "domain", _ANY))
                dot = name.find(b".")
                if dot < 0:
                    break
                name = name[dot + 1 :]

    def _decide(self, keys: list[tuple[bytes, str, int]]) -> IndexHit | None:
        """Probe ``keys`` in order; first block wins unless an allow that counts is found."""
        hit: IndexHit | None = None
        probe = self._probe
        for key, scope, decides in keys:
            t = probe(key)
            if t < 0:
                continue
            kind = t >> _KIND_SHIFT
            if kind == KIND_ALLOW:
                if decides == _ANY:
                    return None
                continue  # an allow matches its own expression only
            if hit is None and (kind == KIND_BLOCK or decides == _MARKER_BLOCKS):
                n = t & _SOURCE_MASK
                digest = hashlib.sha256(key).digest() if kind == KIND_BLOCK else b""
                hit = IndexHit(
                    scope, self.sources[n] if n < len(self.sources) else "unknown", digest
                )
                if not self._any_allow:
                    return hit
        return hit

    def match(self, url: str) -> IndexHit | None:
        """The entry that lists ``url`` (any spelling, any reading), or ``None``.

        ``url`` is read as :func:`edgeagent.canon.request_urls` reads it; a URL that
        cannot be canonicalised raises :class:`InvalidTarget`. Probes, for each reading:
        the url expressions (module docstring), each ``/``-boundary prefix of the path on
        the exact host (up to :data:`MAX_PREFIX_PROBES`), the exact host, and every name
        suffix for domains. An allow entry among one reading's hits wins for that reading;
        the request is listed when any reading is.
        """
        for c in fast_request_urls(url):
            hit = self._decide(self._keys(c))
            if hit is None and self._any_hashed and not self._any_allow_hit(c):
                for expr in canon.lookup_expressions(c):
                    t = self._find(hashlib.sha256(expr.encode("utf-8")).digest())
                    if t >= 0 and t >> _KIND_SHIFT == KIND_BLOCK:
                        n = t & _SOURCE_MASK
                        label = self.sources[n] if n < len(self.sources) else ""
                        digest = hashlib.sha256(expr.encode("utf-8")).digest()
                        return IndexHit("hashed", label, digest)
            if hit is not None:
                return hit
        return None

    def _any_allow_hit(self, c: str) -> bool:
        if not self._any_allow:
            return False
        return any(
            d == _ANY and self._probe(k) >> _KIND_SHIFT == KIND_ALLOW for k, _, d in self._keys(c)
        )

    @property
    def has_allows(self) -> bool:
        """True if the index holds any allow entry."""
        return bool(self._any_allow)

    def match_whole_host(self, host: str) -> IndexHit | None:
        """The block that covers every URL on ``host``, ignoring allow entries, or None.

        ``host`` entries, ``domain`` entries on it or a parent, and a ``url-prefix`` entry
        for its root path (``/``). ``host`` is a name or an IP literal (bracketed or not),
        without port; names are canonicalised with :func:`edgeagent.canon.canonical_name`.
        The caller decides what allow entries mean (:attr:`has_allows`).
        """
        h = host.strip("[]")
        keys: list[tuple[bytes, str, int]] = []
        if ":" in h or h.replace(".", "").isdigit():
            name = canon.canonical_ip(h)
            hb = (f"[{name}]" if ":" in name else name).encode("ascii")
        else:
            hb = canon.canonical_name(host).encode("ascii")
            self._name_keys(hb, keys)
        if self._any_prefix:
            keys.append((_T_PREFIX + hb + b"/", "url-prefix", _ANY))
        for key, scope, _ in keys:
            t = self._probe(key)
            if t >= 0 and t >> _KIND_SHIFT == KIND_BLOCK:
                n = t & _SOURCE_MASK
                return IndexHit(scope, self.sources[n] if n < len(self.sources) else "unknown")
        return None

    def match_host(self, host: str) -> tuple[IndexHit | None, bool]:
        """For CONNECT: ``(host/domain match or None, host has URL-level entries)``.

        ``host`` is a name or IP literal without port. Names are canonicalised with
        :func:`edgeagent.canon.canonical_name`; IP literals only get the marker check.
        """
        h = host.strip("[]")
        is_ip = ":" in h or h.replace(".", "").isdigit()
        if is_ip:
            name = canon.canonical_ip(h)
            if ":" in name:
                name = f"[{name}]"
            hb = name.encode("ascii")
        else:
            hb = canon.canonical_name(host).encode("ascii")
            keys: list[tuple[bytes, str, int]] = []
            self._name_keys(hb, keys)
            hit = self._decide(keys)
            if hit is not None:
                return hit, False
        marked = self._any_marker and self._probe(_T_URLHOST + hb) >= 0
        return None, marked


def _verify(path: str, mm: mmap.mmap) -> None:
    size = len(mm)
    fields = _HEADER.unpack_from(mm)
    magic, version, bits, count = fields[0], fields[1], fields[2], fields[3]
    if magic != MAGIC:
        raise IndexFileError(path, "not a proxy index (bad magic)")
    if version != VERSION:
        raise IndexFileError(path, f"unsupported index version {version}")
    if not 8 <= bits <= 24:
        raise IndexFileError(path, "bad prefix width")
    fbits = fields[11]
    if not 16 <= fbits <= 28:
        raise IndexFileError(path, "bad filter width")
    expected = HEADER_SIZE + 4 * ((1 << bits) + 1) + 34 * count + (1 << (fbits - 3)) + fields[12]
    if size != expected:
        raise IndexFileError(path, f"size {size} does not match header ({expected})")
    # Release the views before returning: an exported buffer would block mm.close().
    with memoryview(mm) as view, view[HEADER_SIZE:] as body:
        digest = hashlib.sha256(body).digest()
    if digest != fields[13]:
        raise IndexFileError(path, "checksum mismatch")
