"""URL and name canonicalisation, lookup expressions and hashing.

Every list entry and every request is reduced to one canonical form here, and only that
form is compared or hashed. There is one canonicaliser for the whole agent: feeds,
decisions, the DNS compiler and the proxy helper all call these functions.

Host names (:func:`canonical_name`)
    Lower-case A-labels (IDNA2008 with UTS 46 mapping, non-transitional, via the ``idna``
    package; never the stdlib ``"idna"`` codec, which is IDNA2003 and maps ``ß`` to ``ss``),
    no trailing dot. The result only contains ``[a-z0-9._-]`` and is safe to write as an
    owner name in a zone file. ``_`` is accepted in labels because real lists and real DNS
    names (``_dmarc``, ``foo_bar.example``) contain it; IDNA would refuse such names. Pure
    LDH labels with ``--`` in positions 3-4 (other than ``xn--``) are accepted as the DNS
    accepts them; ``xn--`` labels must be valid, canonical Punycode. A name whose last
    label is numeric (``192.0.2.1``, ``3221225985``, ``a.0x1f``) is refused: resolvers and
    browsers treat it as an IPv4 address. A single label (``com``) is a valid *name*; the
    guardrails, not this module, refuse blocking it.

URLs (:func:`canonical_url`) follow the Safe Browsing v4 "URLs and Hashing"
canonicalisation: trim whitespace, drop tab/CR/LF, drop the fragment, percent-unescape the
whole URL until stable, host dots and IPv4 forms normalised, path ``.``/``..``/``//``
resolved, then bytes <= 0x20, >= 0x7f, ``#`` and ``%`` re-escaped with upper-case hex.
The query is kept as given (re-escaped likewise). Output: ``scheme://host[:port]/path[?query]``.

Deliberate differences from Safe Browsing:

1. Hosts become IDNA2008 A-labels (SB only lower-cases), so IDN entries match what a
   browser puts on the wire and what the DNS side blocks.
2. The host must be a valid host name (see above), a valid IPv4 address (any SB form:
   decimal, octal, hex, fewer than four parts) or a bracketed IPv6 literal (compressed
   form, no zone id; an IPv4-mapped one, ``[::ffff:192.0.2.1]``, is that IPv4
   address). SB keeps anything, escaped (``http://%20leadingspace.example/``,
   ``http://host%23.example/``); here those raise :class:`InvalidTarget`.
3. Non-default ports are kept in the canonical URL (SB drops every port); ``:80`` for
   http and ``:443`` for https are dropped. Lookup expressions never contain the port,
   as in SB, so hashed SB-style lists (which have no ports) match on any port: an entry
   for ``a.example:8080/x`` also matches ``a.example/x``.
4. Only ``http`` and ``https`` are accepted (SB has no scheme rule); a missing scheme
   means ``http``. ``http:a.example`` and ``http:///a.example`` are read as
   ``http://a.example`` (as browsers do). Userinfo is dropped.
5. Backslashes before the query are read as ``/`` (as browsers do for http/https).
6. The URL is unescaped as a whole before it is split, as the spec text says; so an
   escaped ``?`` (``%3F``) starts the query and ``%2F`` separates path segments.
   Google's C++ client unescapes host and path separately after parsing.
7. Input longer than 8192 characters is refused. Percent-unescaping is linear in the
   input length (SB's naive "unescape until stable" loop is quadratic).
8. Empty query: ``/q?`` keeps the ``?`` (as SB does); an empty path becomes ``/``.

Lookup expressions (:func:`lookup_expressions`) are SB's host-suffix x path-prefix
strings without scheme and port, in SB's order, at most 5 x 6 = 30. Host suffixes are the
exact host plus up to four suffixes formed from the last five labels (none for IP hosts;
IPv6 hosts appear bracketed). Path prefixes are the exact path with query, the exact path
without query, then ``/`` and up to three more directory prefixes (each ending in ``/``).
As in SB, an expression matches on the listed host and its subdomains
(``a.example/x`` is among the expressions of ``http://b.a.example/x``).

URL entries: :func:`url_expression` (host + path + canonical query) is hashed for ``url``
scope; :func:`url_prefix_expression` (host + path, query dropped) for ``url-prefix`` scope.
A url-prefix entry is matched *as given* (never widened to a directory). Through
:func:`lookup_expressions` it is found when its path ends in ``/`` and has at most three
segments (``/``, ``/a/``, ``/a/b/``, ``/a/b/c/``), or when it equals the request's exact
path; :func:`url_prefix_indexable` says which. Other prefixes need string-prefix matching.

Matching rules (the proxy index, :mod:`edgeagent.proxy.index`, implements them). Host
and path compare canonically (any scheme, any port). The canonical query
(:func:`query_params`) is the query split at ``&``, empty parameters dropped, ``+`` read
as a space (``%20``), ``name`` read as ``name=``, sorted, duplicates dropped; ``?`` or
``?&`` with no parameter left is no query.

- A ``url`` block entry **without a query** matches its path with any query or none
  (``p``, ``p?``, ``p?&``, ``p?a=1``). It names the resource: a static origin serves the
  same file whatever the query, and a list that meant one query would have listed it.
- A ``url`` block entry **with a query** matches when each of its parameters is among the
  request's; order and extra parameters do not matter. ``page.php?id=1`` blocks
  ``page.php?x=2&id=1`` (an origin ignores parameters it does not read, and a client can
  add any) and ``page.php?id=2&id=1`` (which value wins is the origin's choice), never
  ``page.php?id=2`` or ``page.php``.
- A ``url`` **allow** entry matches only its own canonical query: an exception carves out
  exactly what it names, never more.
- A ``url-prefix`` entry matches its path exactly, with or without a trailing ``/``, and
  every path below it at a ``/`` boundary, with any query: ``/dir`` matches ``/dir``,
  ``/dir/``, ``/dir/x``, ``/dir?x``, never ``/directory``.

Requests are read every way an origin may read them (:func:`request_urls`), and a request
is listed when any reading is listed:

1. the URL itself;
2. the URL cut at its first ``#``, raw or escaped (``%23``). A client may put a fragment in
   the request line; Squid hands it to its helper as ``%23`` but sends it to the origin
   raw, and origins drop it. A literal ``%23`` is a real character to the origin, but the
   helper cannot tell the two apart, so both readings count;
3. each of these with path parameters (``;`` to the end of a segment) removed before dot
   segments are resolved, as servlet containers read them (``/a;x/b`` is ``/a/b``,
   ``/a/..;x/b`` is ``/b``).

Reading too much can only refuse a sibling named like a listed page followed by ``#...``
or ``;...``; reading too little lets the listed page through.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

import idna

from edgeagent.errors import InvalidTarget, short_hash

MAX_URL_LENGTH = 8192
"""Longest URL accepted, in characters, before canonicalisation."""

_MAX_NAME_OCTETS = 253
_MAX_LABEL_OCTETS = 63
_MAX_NAME_INPUT = 1024  # cap before UTS 46 mapping (which may delete ignored code points)

# Fast path: ASCII LDH (+ "_") labels of 1-63 characters, one optional trailing dot.
# Labels are separated by a literal dot, so matching is linear (no nested ambiguity).
_FAST_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_ASCII_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_SAFE_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_HEX_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]*")
_FORBIDDEN_NAME_CHARS = frozenset(";$@\\\"'()*/:,<>[]{}|^`~!#%&+=?")

_SCHEME = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT_AFTER_COLON = re.compile(rb"[0-9]*(?:[/?\\]|$)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NEEDS_ESCAPE = re.compile(rb"[\x00-\x20\x7f-\xff#%]")
_ESCAPES = {i: b"%%%02X" % i for i in range(256)}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def short_ref(text: str) -> str:
    """Short stable hash naming an entry in logs, metrics and errors."""
    return short_hash(text)


# --------------------------------------------------------------------------- names


def canonical_name(text: str) -> str:
    """Return ``text`` as a canonical host name: lower-case A-labels, no trailing dot.

    One trailing dot is accepted and removed. Raises :class:`InvalidTarget` with a plain
    reason for anything that is not a valid host name (see the module docstring). The
    result matches ``[a-z0-9_-]{1,63}(\\.[a-z0-9_-]{1,63})*`` and is at most 253 octets.
    """
    if _FAST_NAME.fullmatch(text):
        name = text.lower()
        if name[-1] == ".":
            name = name[:-1]
        _check_ascii_name(name, text)
        return name
    return _slow_name(text)


def _slow_name(text: str) -> str:
    """Diagnose and, for non-ASCII names, IDNA-encode what the fast path did not accept."""
    if not text:
        raise InvalidTarget("empty name", text)
    if text == ".":
        raise InvalidTarget("name is the root", text)
    if len(text) > _MAX_NAME_INPUT:
        raise InvalidTarget("name longer than 253 octets", text)
    _check_name_chars(text)
    if text.isascii():
        name = text.lower()
    else:
        try:
            name = idna.uts46_remap(text, std3_rules=False)
        except idna.IDNAError as exc:
            # The idna message quotes the input; keep it out of ours.
            raise InvalidTarget("name is not valid under UTS 46", text) from exc
        _check_name_chars(name)  # mapping may produce ASCII punctuation (fullwidth "@")
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidTarget("name is the root", text)
    labels = name.split(".")
    out: list[str] = []
    for label in labels:
        if not label:
            raise InvalidTarget("empty label", text)
        if label.isascii():
            if len(label) > _MAX_LABEL_OCTETS:
                raise InvalidTarget("label longer than 63 octets", text)
            if not _ASCII_LABEL.fullmatch(label):
                raise InvalidTarget("character not allowed in a host name", text)
            out.append(label)
            continue
        try:
            alabel = idna.encode(label, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            if "too long" in str(exc).lower():
                raise InvalidTarget("label longer than 63 octets", text) from exc
            raise InvalidTarget("label is not valid under IDNA2008", text) from exc
        out.append(alabel)
    result = ".".join(out)
    _check_ascii_name(result, text)
    if not _SAFE_NAME.fullmatch(result):  # defensive: the zone-safety promise
        raise InvalidTarget("character not allowed in a host name", text)
    return result


def _check_name_chars(text: str) -> None:
    """Refuse characters that can never be part of a host name, with a specific reason."""
    for ch in text:
        if ch.isspace():
            raise InvalidTarget("whitespace in name", text)
        if ch == "*":
            raise InvalidTarget("wildcard '*' not allowed in a name", text)
        cat = unicodedata.category(ch)
        if cat == "Cc":
            raise InvalidTarget("control character in name", text)
        if cat == "Cs":
            raise InvalidTarget("name is not valid Unicode", text)
        if ch in _FORBIDDEN_NAME_CHARS:
            if ch in ":[]" and _is_ip_literal(text):
                raise InvalidTarget("IP address literal, not a host name", text)
            raise InvalidTarget(f"character {ch!r} not allowed in a host name", text)


def _check_name_chars_in(host: str, text: str) -> None:
    """:func:`_check_name_chars` on ``host``, reporting ``text`` as the target."""
    try:
        _check_name_chars(host)
    except InvalidTarget as exc:
        raise InvalidTarget(exc.reason, text) from exc


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _check_ascii_name(name: str, text: str) -> None:
    """Checks on a lower-case ASCII name whose labels are 1-63 chars of ``[a-z0-9_-]``."""
    if len(name) > _MAX_NAME_OCTETS:
        raise InvalidTarget("name longer than 253 octets", text)
    if name[0] == "-" or name[-1] == "-" or ".-" in name or "-." in name:
        raise InvalidTarget("label starts or ends with a hyphen", text)
    last = name[name.rfind(".") + 1 :]
    if last.isdigit() or _HEX_NUMBER.fullmatch(last):
        try:
            ipv4 = _parse_ipv4(name)
        except InvalidTarget as exc:
            raise InvalidTarget(exc.reason, text) from exc
        if ipv4 is not None:
            raise InvalidTarget("IP address literal, not a host name", text)
        raise InvalidTarget("numeric top-level label (read as an IPv4 address)", text)
    if "xn--" in name:
        for label in name.split("."):
            if label.startswith("xn--") and not _valid_alabel(label):
                raise InvalidTarget("invalid A-label (xn--)", text)


@functools.lru_cache(maxsize=4096)
def _valid_alabel(label: str) -> bool:
    """True if ``label`` is valid, canonical Punycode of a valid IDNA2008 U-label."""
    try:
        idna.ulabel(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def _parse_ipv4(host: str) -> str | None:
    """Dotted quad for an IPv4 address in any inet_aton form, else ``None``.

    Parts may be decimal, octal (leading ``0``) or hex (``0x``); with fewer than four
    parts the last one fills the remaining bytes. Returns ``None`` when a part is not a
    number; raises :class:`InvalidTarget` when all parts are numbers but out of range.
    """
    parts = host.split(".")
    if len(parts) > 4:
        # Numeric-looking but too many parts: not an address (callers refuse the name).
        return None
    values: list[int] = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:], 16
            if digits and not _HEX_NUMBER.fullmatch("0x" + digits):
                return None
            if not digits:
                values.append(0)
                continue
        elif len(part) > 1 and part[0] == "0":
            digits, base = part[1:], 8
            if not digits.isdigit() or not digits.isascii() or "8" in digits or "9" in digits:
                return None
        else:
            digits, base = part, 10
            if not digits.isdigit() or not digits.isascii():
                return None
        values.append(int(digits, base))
    last = values.pop()
    if any(v > 255 for v in values) or last >= 256 ** (4 - len(values)):
        raise InvalidTarget("invalid IPv4 address", host)
    number = last
    for i, v in enumerate(values):
        number |= v << (8 * (3 - i))
    return str(ipaddress.IPv4Address(number))


# --------------------------------------------------------------------------- URLs


class _Parts(NamedTuple):
    """A canonical URL in pieces; ``path`` and ``query`` already escaped."""

    scheme: str
    host: str  # name, dotted quad, or bracketed IPv6
    is_ip: bool
    port: str  # "" when default or absent
    path: str
    query: str | None  # None: no "?"; "": "?" with nothing after it


def canonical_url(text: str) -> str:
    """Canonical ``scheme://host[:port]/path[?query]`` of ``text`` (see module docstring).

    Raises :class:`InvalidTarget` for an unsupported scheme, a missing or invalid host, an
    invalid port or input longer than :data:`MAX_URL_LENGTH`. Idempotent.
    """
    return _format(_parse(text))


def _format(p: _Parts) -> str:
    port = f":{p.port}" if p.port else ""
    query = "" if p.query is None else f"?{p.query}"
    return f"{p.scheme}://{p.host}{port}{p.path}{query}"


def _parse(text: str) -> _Parts:
    r = _split(text, text)
    return _finish(r, r.path, r.query)


class _Raw(NamedTuple):
    """A URL split but not yet resolved: ``path`` and ``query`` unescaped bytes."""

    scheme: str
    host: str
    is_ip: bool
    port: str
    path: bytes  # starts with "/", "\\" read as "/", dot segments not resolved
    query: bytes | None


def _finish(r: _Raw, path: bytes, query: bytes | None) -> _Parts:
    """Canonical pieces of ``r``'s host with ``path`` (resolved here) and ``query``."""
    q = None if query is None else _escape(query)
    return _Parts(r.scheme, r.host, r.is_ip, r.port, _escape(_resolve_path(path)), q)


def _split(s: str, text: str) -> _Raw:
    """Split URL ``s`` after unescaping it; errors name ``text`` (the caller's input)."""
    if len(text) > MAX_URL_LENGTH:
        raise InvalidTarget(f"URL longer than {MAX_URL_LENGTH} characters", text[:64])
    s = s.strip()
    if "\t" in s or "\r" in s or "\n" in s:
        s = s.replace("\t", "").replace("\r", "").replace("\n", "")
    cut = s.find("#")
    if cut >= 0:
        s = s[:cut]
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTarget("URL is not valid Unicode", text) from exc
    if b"%" in raw:
        raw = _unescape(raw)

    scheme = "http"
    m = _SCHEME.match(raw)
    if m and _is_scheme(raw, m):
        scheme = m.group(1).decode("ascii").lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidTarget("only http and https URLs are supported", text)
        raw = raw[m.end() :]

    q = raw.find(b"?")
    head, query = (raw, None) if q < 0 else (raw[:q], raw[q + 1 :])
    if b"\\" in head:
        head = head.replace(b"\\", b"/")
    head = head.lstrip(b"/")
    slash = head.find(b"/")
    authority, path = (head, b"/") if slash < 0 else (head[:slash], head[slash:])

    hostport = authority[authority.rfind(b"@") + 1 :]
    if hostport.startswith(b"["):
        end = hostport.find(b"]")
        if end < 0:
            raise InvalidTarget("unterminated IPv6 literal", text)
        host_b, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(b":"):
            raise InvalidTarget("invalid host", text)
        port_b = rest[1:]
    else:
        colon = hostport.rfind(b":")
        host_b, port_b = (hostport, b"") if colon < 0 else (hostport[:colon], hostport[colon + 1 :])

    host, is_ip = _url_host(host_b, text)
    return _Raw(scheme, host, is_ip, _port(port_b, scheme, text), path, query)


def _is_scheme(raw: bytes, m: re.Match[bytes]) -> bool:
    """Tell ``scheme:`` from ``host:port`` (``a.example:8080/x`` has no scheme)."""
    if m.group(1).lower() in (b"http", b"https"):
        return True
    end = m.end()
    if raw[end : end + 2].replace(b"\\", b"/") == b"//":
        return True
    return _PORT_AFTER_COLON.match(raw, end) is None


def unescape_until_stable(raw: bytes) -> bytes:
    """Percent-unescape ``raw`` until no ``%XX`` is left (the step :func:`canonical_url`
    applies to the whole URL); the proxy's path filter uses it on request paths."""
    return _unescape(raw) if b"%" in raw else raw


def resolve_path(path: bytes) -> bytes:
    """``.``/``..``/``//`` resolution of an unescaped path starting with ``/`` (as in
    :func:`canonical_url`)."""
    return _resolve_path(path)


def _unescape(raw: bytes) -> bytes:
    """Percent-unescape until no ``%XX`` is left (SB's "until stable").

    A few whole-string passes cover real URLs quickly; deeper nesting (``%252525...``)
    switches to a linear pass so a hostile URL cannot cost quadratic time.
    """
    for _ in range(4):
        new = unquote_to_bytes(raw)
        if new == raw or b"%" not in new:
            return new
        raw = new
    return _unescape_linear(raw)


def _unescape_linear(raw: bytes) -> bytes:
    """Percent-unescape to the fixed point in one pass over ``raw``.

    Decoding ``%XX`` can only create a new ``%XX`` ending at the decoded byte (``%``
    and the hex digits cannot overlap), so a stack that re-checks its top three bytes
    after every push reaches the same fixed point as repeated whole-string passes.
    """
    out = bytearray()
    for b in raw:
        out.append(b)
        while len(out) >= 3 and out[-3] == 0x25 and out[-2] in _HEX and out[-1] in _HEX:
            value = int(out[-2:].decode("ascii"), 16)
            del out[-3:]
            out.append(value)
    return bytes(out)


def _url_host(host_b: bytes, text: str) -> tuple[str, bool]:
    """Canonical host of a URL and whether it is an IP address."""
    if not host_b:
        raise InvalidTarget("URL has no host", text)
    if host_b.startswith(b"["):
        if b"%" in host_b:
            # ipaddress keeps a zone id (fe80::1%eth0): it names a local interface, not
            # a host, and a "%" in the host would break every canonical form after it.
            raise InvalidTarget("IPv6 literal with a zone id", text)
        try:
            addr = ipaddress.IPv6Address(host_b[1:-1].decode("ascii"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidTarget("invalid IPv6 literal", text) from exc
        if addr.ipv4_mapped is not None:
            # [::ffff:192.0.2.1] reaches 192.0.2.1: one host, one canonical form.
            return str(addr.ipv4_mapped), True
        return f"[{addr.compressed}]", True
    try:
        host = host_b.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTarget("host is not valid UTF-8", text) from exc
    if not host.isascii():
        _check_name_chars_in(host, text)
        # Map first so that fullwidth and ideographic dots become "." before dot cleanup.
        try:
            host = idna.uts46_remap(host, std3_rules=False)
        except idna.IDNAError as exc:
            raise InvalidTarget("host is not valid under UTS 46", text) from exc
    if host.startswith(".") or host.endswith(".") or ".." in host:
        host = ".".join(label for label in host.split(".") if label)
        if not host:
            raise InvalidTarget("URL has no host", text)
    host = host.lower()
    last = host[host.rfind(".") + 1 :]
    if last.isdigit() or _HEX_NUMBER.fullmatch(last):
        try:
            ipv4 = _parse_ipv4(host)
        except InvalidTarget as exc:
            raise InvalidTarget(exc.reason, text) from exc
        if ipv4 is not None:
            return ipv4, True
    try:
        return canonical_name(host), False
    except InvalidTarget as exc:
        raise InvalidTarget(exc.reason, text) from exc


def _port(port_b: bytes, scheme: str, text: str) -> str:
    if not port_b:
        return ""
    if not port_b.isdigit() or len(port_b) > 5:
        raise InvalidTarget("invalid port", text)
    port = int(port_b)
    if port > 65535:
        raise InvalidTarget("invalid port", text)
    return "" if port == _DEFAULT_PORTS[scheme] else str(port)


def _resolve_path(path: bytes) -> bytes:
    """Resolve ``.`` and ``..`` segments, then collapse runs of ``/`` (SB order).

    ``path`` starts with ``/``. A trailing ``.``/``..``/empty segment leaves a trailing
    slash, as in RFC 3986 dot-segment removal.
    """
    if b"/." not in path and b"//" not in path:
        return path
    segments = path.split(b"/")[1:]
    out: list[bytes] = []
    for seg in segments:
        if seg == b".":
            continue
        if seg == b"..":
            if out:
                out.pop()
            continue
        out.append(seg)
    kept = [seg for seg in out if seg]
    if not kept:
        return b"/"
    trailing = segments[-1] in (b"", b".", b"..")
    return b"/" + b"/".join(kept) + (b"/" if trailing else b"")


def _escape(data: bytes) -> str:
    """Escape bytes <= 0x20, >= 0x7f, ``#`` and ``%`` as upper-case ``%XX``."""
    if _NEEDS_ESCAPE.search(data) is None:
        return data.decode("ascii")
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()[0]], data).decode("ascii")


def url_host(url: str) -> str:
    """Host (no port) of a canonical URL; IPv6 without brackets.

    ``url`` must be the output of :func:`canonical_url`.
    """
    host = _split_canonical(url)[0]
    return host[1:-1] if host.startswith("[") else host


def _split_canonical(url: str) -> tuple[str, str]:
    """``(host, path_and_query)`` of a canonical URL, port removed."""
    sep = url.find("://")
    if sep < 0 or url[:sep] not in _DEFAULT_PORTS:
        raise InvalidTarget("not a canonical URL", url)
    rest = url[sep + 3 :]
    slash = rest.find("/")
    if slash < 0:
        raise InvalidTarget("not a canonical URL", url)
    authority, tail = rest[:slash], rest[slash:]
    if authority.startswith("["):
        host = authority[: authority.find("]") + 1]
    else:
        host = authority.split(":", 1)[0]
    if not host:
        raise InvalidTarget("not a canonical URL", url)
    return host, tail


# --------------------------------------------------------------------------- requests


def request_urls(text: str) -> list[str]:
    """Canonical URLs an origin may serve for request ``text`` (its *readings*).

    In order, without duplicates: the URL; the URL cut at its first ``#`` (raw or
    ``%23``); each of these with path parameters removed (:func:`strip_path_params`,
    before dot segments are resolved). A raw ``#`` is read as ``%23`` (as Squid hands
    it over), so the first reading keeps it. See the module docstring, "Requests".
    Raises :class:`InvalidTarget` like :func:`canonical_url`.
    """
    r = _split(text.replace("#", "%23"), text) if "#" in text else _split(text, text)
    pieces = [(r.path, r.query)]
    cut = r.path.find(b"#")
    if cut >= 0:
        pieces.append((r.path[:cut], None))
    elif r.query is not None and b"#" in r.query:
        pieces.append((r.path, r.query[: r.query.find(b"#")]))
    for path, query in list(pieces):
        if b";" in path:
            pieces.append((strip_path_params(path), query))
    urls: list[str] = []
    for path, query in pieces:
        url = _format(_finish(r, path, query))
        if url not in urls:
            urls.append(url)
    return urls


def strip_path_params(path: bytes) -> bytes:
    """``path`` with each ``/`` segment cut at its first ``;`` (``/a;x/b;y`` -> ``/a/b``)."""
    return b"/".join(seg.partition(b";")[0] for seg in path.split(b"/"))


def prefix_probes(path: bytes, limit: int) -> list[bytes]:
    """Where a ``url-prefix`` entry (stored without its trailing ``/``) may match ``path``
    (no query): ``path`` up to each ``/`` after the first, then the whole path without
    trailing ``/`` (none for ``/``); at most ``limit`` boundaries, deeper paths end there.
    """
    probes: list[bytes] = []
    pos = 0
    for _ in range(limit):
        pos = path.find(b"/", pos + 1)
        if pos < 0:
            last = path.rstrip(b"/")
            if last:
                probes.append(last)
            break
        probes.append(path[:pos])
    return probes


# --------------------------------------------------------------------------- expressions


def lookup_expressions(text: str) -> list[str]:
    """Safe Browsing host-suffix x path-prefix expressions of ``canonical_url(text)``.

    No scheme, no port; at most 30, deduplicated, in SB order (for each host suffix, from
    the exact host down, each path prefix: exact path with query, exact path, ``/``, then
    directory prefixes). Raises :class:`InvalidTarget` like :func:`canonical_url`.
    """
    p = _parse(text)
    return [host + path for host in _host_suffixes(p) for path in _path_prefixes(p)]


def _host_suffixes(p: _Parts) -> list[str]:
    hosts = [p.host]
    if p.is_ip:
        return hosts
    labels = p.host.split(".")
    n = len(labels)
    hosts.extend(".".join(labels[i:]) for i in range(max(1, n - 5), n - 1))
    return hosts


def _path_prefixes(p: _Parts) -> list[str]:
    path = p.path
    paths = [] if p.query is None else [f"{path}?{p.query}"]
    paths.append(path)
    if path != "/":
        paths.append("/")
    pos = 0
    for _ in range(3):
        pos = path.find("/", pos + 1)
        if pos < 0:
            break
        prefix = path[: pos + 1]
        if prefix != path:
            paths.append(prefix)
    return paths


def url_expression(url: str) -> str:
    """Expression hashed for a ``url`` entry: host + path [+ ``?`` + canonical query].

    ``url`` must be canonical. The query is :func:`query_params` joined with ``&`` (no
    ``?`` when none is left), so it equals the first element of ``lookup_expressions(url)``
    only when the query is already in that form.
    """
    host, tail = _split_canonical(url)
    path, _, query = tail.partition("?")
    params = query_params(query)
    return host + path + ("?" + "&".join(params) if params else "")


def query_params(query: str) -> tuple[str, ...]:
    """Canonical parameters of the (escaped, canonical) query of a canonical URL.

    Split at ``&``; empty parameters dropped; ``+`` read as a space (``%20``, as form
    decoding reads it); ``name`` read as ``name=``; sorted; duplicates dropped.
    """
    if not query:
        return ()
    if "+" in query:
        query = query.replace("+", "%20")
    return tuple(sorted({p if "=" in p else p + "=" for p in query.split("&") if p}))


def url_prefix_expression(url: str) -> str:
    """Expression for a ``url-prefix`` entry: host + path of a canonical URL, no query.

    Matched as given (see module docstring and :func:`url_prefix_indexable`).
    """
    host, tail = _split_canonical(url)
    q = tail.find("?")
    return host + (tail if q < 0 else tail[:q])


def url_prefix_indexable(url: str) -> bool:
    """True if a url-prefix entry is found through :func:`lookup_expressions` alone.

    That is when its path is ``/`` or ends in ``/`` with at most three segments; every
    request under it then has the prefix among its expressions. Other prefixes (deeper,
    or not ending in ``/``) only match their exact path through the index; a proxy must
    match them by string prefix.
    """
    path = _split_canonical(url)[1].split("?", 1)[0]
    return path.endswith("/") and path.count("/") <= 4


def expression_hash(expr: str) -> bytes:
    """SHA-256 digest of the UTF-8 expression (full 32 bytes)."""
    return hashlib.sha256(expr.encode("utf-8")).digest()


# --------------------------------------------------------------------------- addresses


def canonical_ip(text: str) -> str:
    """Compressed form of an IPv4 or IPv6 address; surrounding whitespace is ignored.

    Refuses scope ids (``fe80::1%eth0``) and non-standard IPv4 forms (leading zeros).
    """
    value = text.strip()
    if "%" in value:
        raise InvalidTarget("IP address with a scope id", text)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidTarget("not an IP address", text) from exc


def canonical_cidr(text: str) -> str:
    """Canonical ``address/len`` network; host bits set in the input are cleared.

    ``192.0.2.7/24`` becomes ``192.0.2.0/24`` (``strict=False``). A bare address is a
    /32 or /128. Only syntax is checked here; prefix-length limits are the guardrails'.
    """
    value = text.strip()
    if "%" in value:
        raise InvalidTarget("IP prefix with a scope id", text)
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as exc:
        raise InvalidTarget("not an IP prefix", text) from exc


_HEX64 = frozenset("0123456789abcdef")


def canonical_digest(text: str) -> str:
    """A SHA-256 digest as 64 lower-case hex digits (hashed-url-list entries)."""
    value = text.strip().lower()
    if len(value) != 64 or not _HEX64.issuperset(value):
        raise InvalidTarget("not a SHA-256 digest (64 hex digits)", text)
    return value
