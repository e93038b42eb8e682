"""Fetch a feed over HTTP(S) with hard limits: the bytes or a reason, never a hang.

Contract of :func:`fetch`:

- time: a connect timeout and a per-read timeout, *and* a total deadline over all
  attempts, *and* an optional minimum average rate. aiohttp's ``sock_read`` restarts on
  every chunk, so a server dripping a byte at a time never trips it; the deadline and the
  rate check do.
- size: ``max_bytes`` on the wire (checked against Content-Length first, then while
  streaming) and ``max_decompressed_bytes`` after gzip, decompressed in bounded steps
  (``max_length``) so a bomb never inflates more than one step past the cap.
- gzip is recognised by ``Content-Encoding`` or by the magic bytes; a stream that ends
  before the gzip trailer is refused as truncated. Exactly one layer is decoded: nested
  gzip comes out as binary and the parser refuses it.
- ``200`` with an HTML body (a captive portal, a login or error page) is refused: a list
  is never HTML. ``304`` returns ``not_modified`` and no body.
- retries: connection errors, timeouts of one attempt, 408/429/5xx are retried with
  exponential backoff and full jitter, bounded by ``retries`` and by the deadline; other
  4xx and every limit breach fail at once (retrying a bomb only wastes time).
- errors are :class:`edgeagent.errors.FeedError` with a short reason; URLs of feeds are
  configuration, not list entries, but query strings may carry secrets, so only the
  host appears in messages.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from edgeagent.errors import FeedError
from edgeagent.feeds.base import BasicAuth, BearerAuth, FeedSpec

__all__ = ["FetchResult", "fetch", "make_session", "ssl_context"]

_GZIP_MAGIC = b"\x1f\x8b"
_STEP = 1 << 20  # decompress at most this much per call: bounds a bomb's overshoot
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A fetched body (``None`` when the server said 304) and the validators to send next."""

    body: bytes | None
    status: int
    etag: str = ""
    last_modified: str = ""
    bytes_wire: int = 0
    bytes_decoded: int = 0
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.body is None


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def ssl_context(spec: FeedSpec) -> ssl.SSLContext | None:
    """A TLS context with the feed's CA and client certificate (``None``: aiohttp default)."""
    if spec.ca_file is None and spec.client_cert is None:
        return None
    ctx = ssl.create_default_context(cafile=str(spec.ca_file) if spec.ca_file else None)
    if spec.client_cert is not None:
        cc = spec.client_cert
        ctx.load_cert_chain(
            str(cc.cert_file), str(cc.key_file) if cc.key_file else None, cc.key_password
        )
    return ctx


def make_session() -> aiohttp.ClientSession:
    """A session suited to feeds: no cookies kept, no automatic decompression."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False
    )


def _where(url: str) -> str:
    return urlsplit(url).hostname or "?"


class _Body:
    """Accumulates a response body under the wire and decoded caps, gunzipping on the fly."""

    def __init__(self, spec: FeedSpec, gzip_hint: bool, max_bytes: int, max_decoded: int) -> None:
        self.spec = spec
        self.max_bytes = max_bytes
        self.max_decoded = max_decoded
        self.wire = 0
        self.out = bytearray()
        self.gzip: bool | None = True if gzip_hint else None  # None: decide on first bytes
        self.inflater: zlib._Decompress | None = None
        self.head = b""

    def feed(self, chunk: bytes) -> None:
        self.wire += len(chunk)
        if self.wire > self.max_bytes:
            raise FeedError(self.spec.name, f"body exceeds {self.max_bytes} bytes on the wire")
        if self.gzip is None:
            self.head += chunk
            if len(self.head) < 2:
                return
            self.gzip = self.head.startswith(_GZIP_MAGIC)
            chunk, self.head = self.head, b""
        if not self.gzip:
            self._emit(chunk)
            return
        self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        while data:
            if self.inflater is None:
                self.inflater = zlib.decompressobj(wbits=31)
            try:
                out = self.inflater.decompress(data, _STEP)
                self._emit(out)
                while self.inflater.unconsumed_tail:
                    out = self.inflater.decompress(self.inflater.unconsumed_tail, _STEP)
                    self._emit(out)
            except zlib.error as exc:
                raise FeedError(self.spec.name, "corrupt gzip stream") from exc
            if self.inflater.eof:
                # a further gzip member may follow (concatenated gzip is valid)
                data = self.inflater.unused_data
                self.inflater = None if data else self.inflater
            else:
                data = b""

    def _emit(self, out: bytes) -> None:
        if len(self.out) + len(out) > self.max_decoded:
            raise FeedError(
                self.spec.name, f"body exceeds {self.max_decoded} bytes after decompression"
            )
        self.out += out

    def finish(self) -> bytes:
        if self.head:  # fewer than two bytes in total
            self._emit(self.head)
        if self.gzip and (self.inflater is None or not self.inflater.eof):
            raise FeedError(self.spec.name, "truncated gzip stream")
        return bytes(self.out)


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


async def _attempt(
    session: aiohttp.ClientSession,
    spec: FeedSpec,
    *,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
    max_decoded: int,
    allow_html: bool,
) -> FetchResult:
    auth = spec.auth if isinstance(spec.auth, BasicAuth) else None
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=spec.connect_timeout,
        sock_connect=spec.connect_timeout,
        sock_read=spec.read_timeout,
    )
    ctx = ssl_context(spec)
    try:
        async with session.get(
            url,
            headers=headers,
            auth=aiohttp.BasicAuth(auth.username, auth.password) if auth else None,
            timeout=timeout,
            ssl=ctx if ctx is not None else True,
            allow_redirects=True,
            max_redirects=3,
            auto_decompress=False,
        ) as resp:
            if resp.status == 304:
                return FetchResult(
                    None, 304, resp.headers.get("ETag", ""), resp.headers.get("Last-Modified", "")
                )
            if resp.status in _RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status}")
            if resp.status != 200:
                raise FeedError(spec.name, f"HTTP {resp.status} from {_where(url)}")
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise FeedError(spec.name, f"Content-Length {length} exceeds {max_bytes} bytes")
            encoding = resp.headers.get("Content-Encoding", "").lower()
            if encoding not in ("", "identity", "gzip", "x-gzip"):
                raise FeedError(spec.name, f"unsupported Content-Encoding {encoding[:20]}")
            body = _Body(spec, encoding in ("gzip", "x-gzip"), max_bytes, max_decoded)
            first = time.monotonic()
            async for chunk in resp.content.iter_any():
                body.feed(chunk)
                if spec.min_rate > 0:
                    elapsed = time.monotonic() - first
                    if elapsed > spec.min_rate_grace and body.wire / elapsed < spec.min_rate:
                        raise FeedError(
                            spec.name,
                            f"transfer slower than {spec.min_rate:.0f} bytes/s "
                            f"({body.wire} bytes in {elapsed:.1f} s)",
                        )
            data = body.finish()
            if not allow_html and _looks_like_html(resp.headers.get("Content-Type", ""), data):
                raise FeedError(spec.name, "HTML page instead of a list")
            return FetchResult(
                data,
                200,
                resp.headers.get("ETag", ""),
                resp.headers.get("Last-Modified", ""),
                body.wire,
                len(data),
            )
    except aiohttp.ClientPayloadError as exc:
        raise _Retryable("connection closed mid-body") from exc
    except (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
        if isinstance(exc, aiohttp.ClientSSLError):
            raise FeedError(spec.name, f"TLS failure with {_where(url)}") from exc
        raise _Retryable(f"{exc.__class__.__name__} from {_where(url)}") from exc


async def fetch(
    spec: FeedSpec,
    session: aiohttp.ClientSession,
    *,
    url: str | None = None,
    etag: str = "",
    last_modified: str = "",
    max_bytes: int | None = None,
    max_decompressed_bytes: int | None = None,
    allow_html: bool = False,
    rng: random.Random | None = None,
) -> FetchResult:
    """Fetch ``url`` (default ``spec.url``) under every limit of ``spec``; raise ``FeedError``."""
    target = url or spec.url
    cap = max_bytes if max_bytes is not None else spec.max_bytes
    cap_decoded = (
        max_decompressed_bytes
        if max_decompressed_bytes is not None
        else spec.max_decompressed_bytes
    )
    headers = {"Accept-Encoding": "gzip", "User-Agent": "edgeagent-feed/1"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    if isinstance(spec.auth, BearerAuth):
        headers["Authorization"] = f"Bearer {spec.auth.token}"
    jitter = rng or random.Random()
    last = "no attempt"
    attempts = 0
    try:
        async with asyncio.timeout(spec.deadline):
            for attempt in range(spec.retries + 1):
                attempts = attempt + 1
                try:
                    result = await _attempt(
                        session,
                        spec,
                        url=target,
                        headers=headers,
                        max_bytes=cap,
                        max_decoded=cap_decoded,
                        allow_html=allow_html,
                    )
                except _Retryable as exc:
                    last = exc.reason
                    if attempt == spec.retries:
                        break
                    ceiling = min(spec.backoff_max, spec.backoff_base * (2**attempt))
                    await asyncio.sleep(jitter.uniform(ceiling / 2, ceiling))
                    continue
                return FetchResult(
                    result.body,
                    result.status,
                    result.etag,
                    result.last_modified,
                    result.bytes_wire,
                    result.bytes_decoded,
                    attempts,
                )
    except TimeoutError:
        raise FeedError(
            spec.name, f"deadline of {spec.deadline:g} s exceeded after {attempts} attempt(s)"
        ) from None
    raise FeedError(spec.name, f"gave up after {attempts} attempt(s): {last}")
