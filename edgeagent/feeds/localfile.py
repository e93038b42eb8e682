"""Local file lists: orders the ISP must apply that arrive on paper or by mail.

``FeedSpec.path`` names the file and ``FeedSpec.content`` the list kind inside
(``domain-list``, ``url-list`` with ``format``, or ``hashed-url-list``). The file is read
whole under ``max_decompressed_bytes`` (gzip is recognised by its magic bytes) and then
goes through exactly the same integrity, parse and guardrail steps as a fetched list;
for local feeds ``digest_url`` and ``signature_url`` are file paths (the signature
defaults to ``<path>.sig`` when a public key is set). A file that has not changed
since the live generation (same SHA-256) is reported unchanged without parsing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import ValidationInfo, field_validator

from edgeagent.configtypes import OutputPath
from edgeagent.errors import FeedError
from edgeagent.feeds.base import (
    Feed,
    FeedConfig,
    FeedFormat,
    FeedKind,
    FeedSpec,
    ListFormat,
    list_format,
)

__all__ = ["LocalFileFeed", "LocalFileFeedConfig", "LocalRead", "read"]


@dataclass(frozen=True, slots=True)
class LocalRead:
    body: bytes
    bytes_wire: int
    digest_file: bytes | None
    signature: bytes | None


def _read_capped(feed: str, path: Path, cap: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        raise FeedError(feed, f"cannot read list file ({exc.__class__.__name__})") from exc
    if len(data) > cap:
        raise FeedError(feed, f"list file exceeds {cap} bytes")
    return data


def _gunzip(feed: str, data: bytes, cap: int) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, cap + 1)
    except zlib.error as exc:
        raise FeedError(feed, "corrupt gzip file") from exc
    if len(out) > cap or d.unconsumed_tail:
        raise FeedError(feed, f"list file exceeds {cap} bytes after decompression")
    if not d.eof:
        raise FeedError(feed, "truncated gzip file")
    return out


def read(spec: FeedSpec) -> LocalRead:
    """Read the list file and its optional digest/signature siblings; raise ``FeedError``."""
    if spec.path is None:
        raise FeedError(spec.name, "local-file feed without a path")
    data = _read_capped(spec.name, spec.path, spec.max_bytes)
    wire = len(data)
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(spec.name, data, spec.max_decompressed_bytes)
    digest = sig = None
    if spec.digest_url:
        digest = _read_capped(spec.name, Path(spec.digest_url), 4096)
    if spec.public_key:
        sig_path = (
            Path(spec.signature_url)
            if spec.signature_url
            else spec.path.with_name(spec.path.name + ".sig")
        )
        sig = _read_capped(spec.name, sig_path, 4096)
    return LocalRead(data, wire, digest, sig)


class LocalFileFeedConfig(FeedConfig):
    """A list the ISP keeps itself (e.g. a court order), in the format of ``content``."""

    kind: Literal["local-file"]
    path: OutputPath
    content: Literal["url-list", "hashed-url-list", "domain-list"] = "domain-list"
    format: ListFormat = "lines"

    @field_validator("format")
    @classmethod
    def _format_of_content(cls, value: ListFormat, info: ValidationInfo) -> ListFormat:
        content = info.data.get("content")  # absent when it failed its own check
        return value if content is None else list_format(content, value)


class LocalFileFeed(Feed[LocalFileFeedConfig]):
    KIND = "local-file"
    Config = LocalFileFeedConfig

    @classmethod
    def from_config(cls, name: str, config: LocalFileFeedConfig) -> FeedSpec:
        return replace(
            config.common_spec(name, FeedKind.LOCAL_FILE),
            path=Path(config.path),
            content=FeedKind(config.content),
            format=FeedFormat(config.format),
        )
