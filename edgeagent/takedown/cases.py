"""Collects new block entries of the policy into takedown cases (one per notice).

After every policy rebuild the daemon calls :meth:`CaseCollector.new_cases` with the
desired state; entries already handed over are skipped, so a decision reaches the
locator once on arrival. :meth:`forget` clears that memory for the periodic full pass
(content moves; the service only notifies for URLs a ticket does not have yet).

A case is a notice: the decisions with one notice source and case reference (a police
notice with many URLs is one case, however many decisions it made), or one feed line's
reference. Its clock starts at the earliest ``notice_received_at`` of its decisions, or
at the entry's ``first_seen`` for feed entries (when the agent first saw the hotline's
listing). Its notice source, jurisdiction and law-enforcement hold come from its
decisions (held if any of them is), or from the feed's configuration
(:class:`CaseOrigin`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeagent.model import Action, Decision, DesiredState, Entry, Indicator
from edgeagent.takedown.locate import locatable


@dataclass(frozen=True, slots=True)
class CaseOrigin:
    """Who reported a case and under which rules: the notice source (public, hotline,
    law-enforcement, internal), the jurisdiction (ISO 3166 code or empty) and whether
    the law-enforcement hold applies."""

    source: str
    jurisdiction: str = ""
    hold: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    entries: tuple[Entry, ...]
    notice_received_at: datetime
    reference: str
    origin: CaseOrigin


class CaseCollector:
    """See the module docstring. ``feed_origin`` gives a feed's :class:`CaseOrigin`."""

    def __init__(
        self,
        decision: Callable[[int], Decision],
        feed_origin: Callable[[str], CaseOrigin],
    ) -> None:
        self._decision = decision
        self._feed_origin = feed_origin
        self._seen: set[Indicator] = set()

    def forget(self) -> None:
        self._seen.clear()

    def new_cases(self, state: DesiredState, now: datetime | None = None) -> list[Case]:
        when = now or datetime.now(UTC)
        fresh = [
            e
            for e in state.blocks
            if e.action is Action.BLOCK and locatable(e.indicator) and e.indicator not in self._seen
        ]
        self._seen.update(e.indicator for e in fresh)
        return self._group(fresh, when)

    def _group(self, entries: Iterable[Entry], now: datetime) -> list[Case]:
        groups: dict[tuple[str, str], list[Entry]] = {}
        meta: dict[tuple[str, str], tuple[datetime, CaseOrigin]] = {}
        for e in entries:
            if e.source.startswith("decision:"):
                d = self._decision(int(e.source.split(":", 1)[1]))
                key = (f"notice:{d.notice_source.value}", d.reference)
                meta[key] = _with_decision(meta.get(key), d)
            else:
                key = (e.source, e.reference or e.source)
                meta.setdefault(key, (e.first_seen or now, self._feed_origin(e.source)))
            groups.setdefault(key, []).append(e)
        return [
            Case(tuple(items), meta[key][0], key[1], meta[key][1]) for key, items in groups.items()
        ]


def _with_decision(
    known: tuple[datetime, CaseOrigin] | None, d: Decision
) -> tuple[datetime, CaseOrigin]:
    """A notice's clock and origin with one more of its decisions: the earliest receipt;
    held if any decision is (a hold is never lifted by a sibling); its jurisdiction."""
    origin = CaseOrigin(d.notice_source.value, d.jurisdiction, d.hold)
    if known is None:
        return d.notice_received_at, origin
    when, seen = known
    merged = CaseOrigin(
        seen.source, seen.jurisdiction or origin.jurisdiction, seen.hold or origin.hold
    )
    return min(when, d.notice_received_at), merged
