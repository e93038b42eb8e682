"""``kind = "webhook"``: an HMAC-signed JSON notice, POSTed to a URL.

``POST`` of :func:`notice_json` as compact JSON; headers ``X-EdgeAgent-Timestamp`` (Unix
seconds) and ``X-EdgeAgent-Signature: sha256=<hex>`` where the MAC is
HMAC-SHA256(secret, timestamp + "." + body). Receivers check it with
:func:`verify_webhook_signature` (constant time) and reject old timestamps. Any 2xx answer counts
as delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import model_validator

from edgeagent.configtypes import EnvName, HttpUrl, Seconds, SecretFile, one_secret, read_secret
from edgeagent.takedown.notifiers.base import Notice, Notifier, NotifierConfig, NotifyError

SIGNATURE_HEADER = "X-EdgeAgent-Signature"
TIMESTAMP_HEADER = "X-EdgeAgent-Timestamp"


class WebhookNotifierConfig(NotifierConfig):
    """HMAC-signed JSON notices to ``url`` (the secret is required)."""

    kind: Literal["webhook"]
    url: HttpUrl
    secret_file: SecretFile | None = None
    secret_env: EnvName | None = None
    timeout_seconds: Seconds = 10.0

    @model_validator(mode="after")
    def _secret(self) -> WebhookNotifierConfig:
        one_secret(self, "secret", required=True)
        return self


def notice_json(n: Notice) -> dict[str, Any]:
    """The notice as JSON: case, customer, URLs with addresses and where they sit,
    deadline, instruction."""
    return {
        "ticket_id": n.ticket_id,
        "kind": n.kind,
        "reference": n.reference,
        "source": n.source,
        "customer_id": n.customer_id,
        "service_id": n.service_id,
        "customer_contact": "" if n.hold else n.customer_contact,
        "forward_to_customer": not n.hold and bool(n.customer_contact),
        "law_enforcement_hold": n.hold,
        "urls": [
            {"url": u, "addresses": list(a)} for u, a in zip(n.urls, n.addresses, strict=True)
        ],
        "notice_received_at": n.notice_received_at.isoformat(),
        "deadline": n.deadline.isoformat(),
        "instruction": n.instruction,
        "segments": [d.to_json() for d in n.segments],
        "idempotency_key": n.idempotency_key,
    }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, *, max_age: float = 300.0
) -> bool:
    """True if ``signature`` matches and ``timestamp`` is within ``max_age`` seconds."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class WebhookNotifier(Notifier):
    """HMAC-signed JSON webhook (see the module docstring)."""

    KIND = "webhook"
    Config = WebhookNotifierConfig

    url: str
    secret: bytes
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    name: str = "webhook"
    hosting_team: bool = True

    @classmethod
    def from_config(cls, config: NotifierConfig, *, name: str) -> WebhookNotifier:
        assert isinstance(config, WebhookNotifierConfig)
        secret = read_secret(config.secret_file, config.secret_env).encode()
        return cls(
            config.url,
            secret,
            config.timeout_seconds,
            name=name,
            hosting_team=config.hosting_team,
        )

    async def send(self, notice: Notice) -> None:
        import aiohttp

        body = json.dumps(notice_json(notice), separators=(",", ":"), sort_keys=True).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.secret, ts, body),
            "Idempotency-Key": notice.idempotency_key,
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        self.url,
                        data=body,
                        headers=headers,
                        ssl=self.ssl_context if self.ssl_context is not None else True,
                    ) as resp,
                ):
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        raise NotifyError(self.name, f"HTTP status {resp.status}")
        except TimeoutError:
            raise NotifyError(self.name, "timed out") from None
        except aiohttp.ClientError as exc:
            raise NotifyError(self.name, type(exc).__name__) from None
