"""The connection limits a listener enforces, as a value.

Apart from :mod:`edgeagent.connlimits` (which enforces them with aiohttp) so that the
config models can name them without loading aiohttp: every command imports the config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one listener enforces (``[listeners]`` in the config)."""

    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 256


DEFAULT_LIMITS = ConnectionLimits()
