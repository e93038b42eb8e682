"""``[intake]``: the public report page, the appeal page and their abuse limits.

The pages run on a listener of their own (``host``, ``port``), never on the control API's,
so the API can stay behind its firewall and tokens while the pages face the public. The
texts beside the form come from here, in the ISP's words; the defaults use reserved names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edgeagent.configtypes import ConfigModel, HttpUrl, Items, ListenHost, ListenPort, Name
from edgeagent.intake.mail.settings import MailIntakeSettings

_Short = Annotated[str, Field(min_length=1, max_length=200)]
_Long = Annotated[str, Field(min_length=1, max_length=2000)]

DEFAULT_CATEGORIES = (
    "Images or videos of a child being sexually abused",
    "Sexualised images of a child",
    "Live streaming of abuse",
    "Other material I believe is child sexual abuse",
)


class IntakeSettings(ConfigModel):
    """``[intake]``: see the module docstring."""

    enabled: bool = False
    host: ListenHost = "127.0.0.1"
    port: ListenPort = 8642
    operator: _Short = "Your internet provider"
    position: _Long = (
        "We do not allow child sexual abuse material on our network or our services. We "
        "block access to it, have it removed where we host it, and report it."
    )
    handling: _Long = (
        "A trained member of our child protection team reviews every report, never a "
        "machine alone. Material we confirm is blocked or taken down, and we pass the "
        "report to the national hotline and the police."
    )
    hotline_name: _Short = "the national hotline"
    hotline_url: HttpUrl = "https://hotline.example/"
    categories: Annotated[Items[_Short], Field(min_length=1, max_length=20)] = DEFAULT_CATEGORIES
    max_urls: Annotated[int, Field(ge=1, le=100)] = 20
    max_url_length: Annotated[int, Field(ge=64, le=8192)] = 2048
    max_text_chars: Annotated[int, Field(ge=100, le=20_000)] = 4000
    max_form_bytes: Annotated[int, Field(ge=4096, le=1_048_576)] = 65_536
    rate_per_source: Annotated[int, Field(ge=1)] = 10
    rate_window_seconds: Annotated[int, Field(ge=10, le=86_400)] = 600
    daily_cap: Annotated[int, Field(ge=1)] = 2000
    notify_via: Name | None = None  # a [takedown.notifiers.NAME] of kind smtp: tells appellants
    mail: MailIntakeSettings = MailIntakeSettings()  # e-mailed notices (edgeagent.intake.mail)
