"""The roles of the control API and the CLI, ordered.

Apart from :mod:`edgeagent.api.auth` (aiohttp) because every command builds its parser
with them (the lowest role for each ticket change).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Self


class Role(IntEnum):
    """API roles, ordered: a higher role may do everything a lower one may.

    ``PUBLIC`` is not a token role: it marks routes that need no token (health probes)
    and is the role of the anonymous principal.
    """

    PUBLIC = 0
    NOC = 1
    ANALYST = 2
    SUPERVISOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Self:
        """``"analyst"`` -> ``Role.ANALYST``; ``ValueError`` for anything else.

        ``public`` is refused: no token can hold it.
        """
        role = cls.__members__.get(text.strip().upper())
        if role is None or role == 0:
            raise ValueError(f"unknown role {text!r}")
        return role

    @classmethod
    def token_roles(cls) -> tuple[str, ...]:
        """The role names a token may hold, lowest first."""
        return tuple(r.label for r in cls if r)
