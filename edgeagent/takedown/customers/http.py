"""``kind = "http"``: an IPAM endpoint answering ``GET url`` with the JSON export shape."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import model_validator

from edgeagent.configtypes import EnvName, HttpUrl, SecretFile, one_secret, read_secret
from edgeagent.takedown.customers.base import (
    Assignment,
    CustomerSource,
    CustomerSourceConfig,
    ExportError,
    ExportProblem,
)
from edgeagent.takedown.customers.json import parse_json
from edgeagent.takedown.customers.rows import MAX_EXPORT_BYTES


class HttpIpamConfig(CustomerSourceConfig):
    """``url`` and an optional bearer token (``token_file`` or ``token_env``)."""

    kind: Literal["http"]
    url: HttpUrl
    token_file: SecretFile | None = None
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret(self) -> HttpIpamConfig:
        one_secret(self, "token", required=False)
        return self


@dataclass(frozen=True, slots=True)
class HttpIpam(CustomerSource):
    """An IPAM endpoint answering ``GET url`` with the JSON export shape.

    ``token`` (if any) is sent as ``Authorization: Bearer``. Total deadline ``timeout``
    seconds (aiohttp's read timeout restarts per chunk), body capped at 256 MiB.
    """

    KIND = "http"
    Config = HttpIpamConfig

    url: str
    token: str | None = None
    timeout: float = 30.0
    name: str = "ipam"

    @classmethod
    def from_config(cls, config: CustomerSourceConfig, *, name: str) -> HttpIpam:
        assert isinstance(config, HttpIpamConfig)
        given = config.token_file is not None or config.token_env is not None
        token = read_secret(config.token_file, config.token_env) if given else None
        return cls(config.url, token, name=name)

    async def load(self) -> list[Assignment]:
        import aiohttp

        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with asyncio.timeout(self.timeout):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(self.url, headers=headers) as resp,
                ):
                    if resp.status != 200:
                        raise ExportError(
                            self.name, [ExportProblem(0, f"HTTP status {resp.status}")]
                        )
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > MAX_EXPORT_BYTES:
                            raise ExportError(
                                self.name, [ExportProblem(0, "answer larger than 256 MiB")]
                            )
        except TimeoutError:
            raise ExportError(self.name, [ExportProblem(0, "timed out")]) from None
        except aiohttp.ClientError as exc:
            raise ExportError(self.name, [ExportProblem(0, type(exc).__name__)]) from None
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ExportError(self.name, [ExportProblem(0, "not UTF-8")]) from None
        return parse_json(self.name, text)
