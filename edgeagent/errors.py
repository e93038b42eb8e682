"""One root exception, ``EdgeAgentError``, and structured subclasses.

Every error carries fields a caller can act on (a key path, a reason, a short hash of the
offending entry). Messages never contain a list entry in plain text: use
:func:`edgeagent.errors.short_hash` when an entry must be identified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


def short_hash(text: str) -> str:
    """Short, stable identifier for a list entry, safe to put in logs and messages."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class EdgeAgentError(Exception):
    """Root of every error edgeagent raises on purpose."""


class InvalidTarget(EdgeAgentError, ValueError):
    """A name, URL or address that cannot be a list entry.

    ``reason`` says why in plain words; ``target_hash`` identifies the input without
    revealing it.
    """

    def __init__(self, reason: str, target: str = "") -> None:
        self.reason = reason
        self.target_hash = short_hash(target) if target else ""
        suffix = f" (target {self.target_hash})" if self.target_hash else ""
        super().__init__(f"{reason}{suffix}")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file: where (dotted key path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.reason}"


class ConfigError(EdgeAgentError):
    """A config file that cannot be used; ``problems`` lists every mistake found."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class GuardrailViolation(EdgeAgentError):
    """A change the guardrails refuse or hold. ``target_hash`` names the entry if any."""

    def __init__(self, reason: str, target: str = "") -> None:
        self.reason = reason
        self.target_hash = short_hash(target) if target else ""
        suffix = f" (target {self.target_hash})" if self.target_hash else ""
        super().__init__(f"{reason}{suffix}")


class PublicSuffixRefused(GuardrailViolation):
    """A block of a public suffix or the root: never allowed, no override."""


class ReservedNameRefused(GuardrailViolation):
    """An entry touching the agent's own names (canary, stop page, policy zones): never
    allowed, no override."""


class ProtectedNameRefused(GuardrailViolation):
    """A block touching a protected name: allowed only with a second person's approval."""


class ChangeLimitExceeded(GuardrailViolation):
    """A feed generation that changes more than the configured share: held for approval."""

    def __init__(
        self, reason: str, *, feed: str, previous: int, proposed: int, added: int, removed: int
    ) -> None:
        self.feed = feed
        self.previous = previous
        self.proposed = proposed
        self.added = added
        self.removed = removed
        super().__init__(reason)


class StoreError(EdgeAgentError):
    """The store cannot do what was asked (schema, I/O, constraint)."""


class StoreUnavailable(StoreError):
    """The store's database cannot be reached now (down, failing over, pool exhausted);
    the same call may succeed later."""


class StorageFull(StoreUnavailable):
    """The disk holding the store is full: writes fail until space returns, reads work."""


class NotFound(StoreError):
    """The requested object does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!s} not found")


class Conflict(StoreError):
    """The write conflicts with existing state (e.g. a duplicate active decision)."""


class AuditChainBroken(StoreError):
    """The audit chain does not verify; ``row_id`` is the first row that fails."""

    def __init__(self, row_id: int, reason: str) -> None:
        self.row_id = row_id
        self.reason = reason
        super().__init__(f"audit row {row_id}: {reason}")


class InvalidTransition(EdgeAgentError):
    """A state change that is not allowed from the current state; ``allowed`` lists the options."""

    def __init__(self, current: str, requested: str, allowed: Sequence[str]) -> None:
        self.current = current
        self.requested = requested
        self.allowed = tuple(allowed)
        options = ", ".join(self.allowed) or "none"
        super().__init__(f"cannot go from {current!r} to {requested!r}; allowed: {options}")


class InvalidRequest(EdgeAgentError):
    """A request the rules cannot accept as given: something they need is missing, or it
    names something unknown. ``field`` is the request field to fix."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class FeedError(EdgeAgentError):
    """A feed could not be fetched, verified or parsed; the last good generation stays."""

    def __init__(self, feed: str, reason: str) -> None:
        self.feed = feed
        self.reason = reason
        super().__init__(f"feed {feed}: {reason}")


class PublishError(EdgeAgentError):
    """An artefact could not be compiled, checked or published; the old one stays live."""

    def __init__(self, publisher: str, reason: str) -> None:
        self.publisher = publisher
        self.reason = reason
        super().__init__(f"publisher {publisher}: {reason}")


class Fenced(EdgeAgentError):
    """This agent is not the leader the database knows (a standby, or a deposed leader
    that has not noticed yet): the write that would have enforced or notified is refused."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} refused: {reason}")
        self.what = what
        self.reason = reason
