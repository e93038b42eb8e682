"""``[console]``: the NTD console on the control API's listener (under ``/console/``).

Sign-in is with an API token, or with the single sign-on header ``sso_header`` when the
request comes from one of ``trusted_proxies`` (the reverse proxy that authenticated the
person and sets the header to the name of their token). A session ends after
``idle_minutes`` without a request, and at the latest after ``max_hours``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edgeagent.configtypes import ConfigModel, IpNetwork, Items

_Header = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]


class ConsoleSettings(ConfigModel):
    """``[console]``: see the module docstring."""

    enabled: bool = True
    idle_minutes: Annotated[int, Field(ge=1, le=480)] = 15
    max_hours: Annotated[int, Field(ge=1, le=24)] = 10
    sso_header: _Header | None = None
    trusted_proxies: Items[IpNetwork] = ()
    page_size: Annotated[int, Field(ge=10, le=500)] = 50
