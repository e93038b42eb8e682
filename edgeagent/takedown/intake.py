"""Hands new block entries from the policy to the takedown service, case by case.

After every policy rebuild the daemon calls :meth:`TakedownIntake.new_cases` with the
desired state; entries already handed over are skipped, so a decision reaches the
locator once on arrival. :meth:`forget` clears that memory for the periodic full pass
(content moves; the service only notifies for URLs a ticket does not have yet).

A case is a notice: the decisions with one notice source and case reference (a police
notice with many URLs is one case, however many decisions it made), or one feed line's
reference. Its clock starts at the earliest ``notice_received_at`` of its decisions, or
at the entry's ``first_seen`` for feed entries (when the agent first saw the hotline's
listing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeagent.model import Action, Decision, DesiredState, Entry, Indicator
from edgeagent.takedown.locate import locatable


@dataclass(frozen=True, slots=True)
class Case:
    entries: tuple[Entry, ...]
    notice_received_at: datetime
    reference: str
    source: str  # notice source: public, hotline, law-enforcement, internal


class TakedownIntake:
    def __init__(
        self,
        decision: Callable[[int], Decision],
        feed_source: Callable[[str], str],
    ) -> None:
        self._decision = decision
        self._feed_source = feed_source
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
        meta: dict[tuple[str, str], tuple[datetime, str]] = {}
        for e in entries:
            if e.source.startswith("decision:"):
                d = self._decision(int(e.source.split(":", 1)[1]))
                key = (f"notice:{d.notice_source.value}", d.reference)
                known = meta.get(key)
                if known is None or d.notice_received_at < known[0]:
                    meta[key] = (d.notice_received_at, d.notice_source.value)
            else:
                key = (e.source, e.reference or e.source)
                meta.setdefault(key, (e.first_seen or now, self._feed_source(e.source)))
            groups.setdefault(key, []).append(e)
        return [
            Case(tuple(items), meta[key][0], key[1], meta[key][1]) for key, items in groups.items()
        ]
