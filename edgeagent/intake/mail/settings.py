"""``[intake.mail]``: the mailbox that e-mailed notices arrive in, and who may send them.

The agent polls ``folder`` of an IMAP mailbox over TLS (the server's certificate is
verified, against ``ca_file`` when given) when ``user`` is set, and takes messages from
the ISP's mail server over LMTP (:mod:`.lmtp`) when ``lmtp_host`` is set; either or
both. A sender is trusted only when its address is one of
``[intake.mail.senders.NAME] address`` AND the message carries a DKIM signature that
verifies for the address's own domain, with the key looked up through ``dkim_resolvers``
(the ISP's validating resolvers; default: the system's) - or, for a sender whose
``smime_ca_file`` is set, an S/MIME signature under that CA bundle by a certificate for
the sender's address (:mod:`.smime`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from edgeagent.configtypes import (
    ConfigModel,
    Email,
    Endpoint,
    EnvName,
    Host,
    InputFile,
    Items,
    Jurisdiction,
    ListenHost,
    ListenPort,
    Name,
    Port,
    Seconds,
    SecretFile,
    Source,
    one_secret,
)
from edgeagent.model import NoticeSource


class MailSenderSettings(ConfigModel):
    """``[intake.mail.senders.NAME]``: one allow-listed sender of notices.

    ``reference_pattern`` finds the case reference in the subject, else in the body (its
    first group if it has one, else the whole match). ``source`` is the decisions'
    notice source (``law-enforcement`` notices are held as the NTD workflow holds them);
    ``jurisdiction`` the authority whose law governs the case. ``smime_ca_file`` (a PEM
    CA bundle) makes an S/MIME signature under that CA, by a certificate for
    ``address``, count as well as DKIM.
    """

    address: Email
    source: Source = NoticeSource.HOTLINE
    reference_pattern: Annotated[str, Field(min_length=1, max_length=200)]
    jurisdiction: Jurisdiction = ""
    reason: Annotated[str, Field(min_length=1, max_length=200)] = "e-mailed notice"
    smime_ca_file: InputFile | None = None

    @field_validator("source")
    @classmethod
    def _external(cls, value: NoticeSource) -> NoticeSource:
        if value in (NoticeSource.PUBLIC, NoticeSource.INTERNAL):
            raise ValueError("must be hotline or law-enforcement")
        return value

    @field_validator("reference_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class MailIntakeSettings(ConfigModel):
    """``[intake.mail]``: see the module docstring."""

    enabled: bool = False
    host: Host = "localhost"
    port: Port = 993
    ca_file: InputFile | None = None
    user: Annotated[str, Field(max_length=200)] = ""
    password_file: SecretFile | None = None
    password_env: EnvName | None = None
    folder: Annotated[str, Field(min_length=1, max_length=200)] = "INBOX"
    poll_seconds: Seconds = 60.0
    timeout_seconds: Seconds = 30.0
    dkim_resolvers: Items[Endpoint] = ()
    max_message_bytes: Annotated[int, Field(ge=4096, le=50_000_000)] = 5_000_000
    max_urls: Annotated[int, Field(ge=1, le=100_000)] = 1000
    lmtp_host: ListenHost | None = None
    lmtp_port: ListenPort = 2424
    ack_via: Name | None = None  # a [takedown.notifiers.NAME] of kind smtp: replies to senders
    senders: dict[Name, MailSenderSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> MailIntakeSettings:
        one_secret(self, "password", required=self.enabled and bool(self.user))
        if self.enabled and not self.user and self.lmtp_host is None:
            raise ValueError("user (IMAP) or lmtp_host is required when enabled")
        seen: dict[str, str] = {}
        for name, sender in self.senders.items():
            other = seen.setdefault(sender.address.lower(), name)
            if other != name:
                raise ValueError(f"senders.{name}.address is the address of senders.{other}")
        return self
