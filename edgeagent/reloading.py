"""What a config reload changed, and what of it took effect (pure; the daemon acts).

Every key of the config file is one of three kinds on ``SIGHUP``:

* applied by the daemon itself (:data:`APPLIED_BY_DAEMON`): the feeds, who needs a
  second person for public reports, the log level and format;
* owned by an enforcer (its sections, :mod:`edgeagent.enforcement`): the enforcer is
  rebuilt from the new sections without a gap in enforcement, and says whether that
  worked (applied) or not (needs a restart);
* everything else needs a restart: listener addresses and TLS, the store, the state
  directory, the guardrails, takedown. Such a key is reported for as long as the file
  differs from what the process started with, not only by the reload that changed it.

Keys are named down to the field (``api.port``, ``rpz.ttl``) or the table entry
(``feeds.iwf``, ``publishers.primary``); arrays by their name (``resolvers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

APPLIED_BY_DAEMON: Final = (
    "feeds",
    "api.public_reports_need_approval",
    "agent.log_level",
    "agent.log_format",
)


def changed_keys(old: BaseModel, new: BaseModel) -> list[str]:
    """The dotted keys whose values differ between two configs (or sections of one)."""
    out: list[str] = []
    for name in type(new).model_fields:
        before, after = getattr(old, name, None), getattr(new, name, None)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            out.extend(f"{name}.{key}" for key in changed_keys(before, after))
        elif isinstance(before, Mapping) and isinstance(after, Mapping):
            keys = sorted(set(before) | set(after))
            out.extend(f"{name}.{k}" for k in keys if before.get(k) != after.get(k))
        else:
            out.append(name)
    return out


def under(key: str, sections: Iterable[str]) -> bool:
    """Is ``key`` one of ``sections`` or inside one of them?"""
    return any(key == s or key.startswith(f"{s}.") or key.startswith(f"{s}[") for s in sections)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """The outcome of the last reload, for the log and ``/v1/status``."""

    at: float | None = None  # Unix time; None before any reload
    applied: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "applied": list(self.applied),
            "needs_restart": list(self.needs_restart),
        }


def report(
    at: float,
    *,
    started: BaseModel,
    old: BaseModel,
    new: BaseModel,
    owned: Iterable[str],
    enforcers_applied: Iterable[str] = (),
    enforcers_need_restart: Iterable[str] = (),
) -> ReloadReport:
    """The report of a reload from ``old`` to ``new`` in a process started with
    ``started``; ``owned`` are the enforcers' sections, whose keys they report."""
    applied = [k for k in changed_keys(old, new) if under(k, APPLIED_BY_DAEMON)]
    fixed = (*APPLIED_BY_DAEMON, *owned)
    restart = [k for k in changed_keys(started, new) if not under(k, fixed)]
    return ReloadReport(at, (*applied, *enforcers_applied), (*restart, *enforcers_need_restart))
