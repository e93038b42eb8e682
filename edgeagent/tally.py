"""Counts of a desired state's blocks (by scope, by source), kept by change.

``/v1/status``, the ``edgeagent_policy_entries`` gauges and the console show them for
every policy version; counting a million-entry policy afresh costs a walk over every
entry (about a tenth of a second of GIL per version, at hundreds of versions a minute
under decision load). :meth:`EntryTally.moved` counts only what changed from the previous
version (:func:`edgeagent.entrydiff.blocks_changed`), and gives the same figures as
:meth:`EntryTally.of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgeagent.bulk import paced
from edgeagent.entrydiff import blocks_changed
from edgeagent.model import DesiredState, Entry, Indicator
from edgeagent.policy import entry_position

_DECISION = "decision:"


def source_key(source: str) -> str:
    """How a source is counted: decisions together (one label per decision id would grow
    for ever), feeds by name."""
    return "decisions" if source.startswith(_DECISION) else source


@dataclass(frozen=True, slots=True)
class EntryTally:
    """The counts of one desired state (``version``)."""

    version: int
    total: int
    allows: int
    by_scope: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    by_source: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    refused: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, state: DesiredState) -> EntryTally:
        """Count every block of ``state``."""
        by_scope: dict[str, int] = {}
        by_source: dict[str, int] = {}
        _count(state, state.blocks, 1, by_scope, by_source)
        return cls._made(state, by_scope, by_source)

    def moved(
        self,
        old: DesiredState,
        new: DesiredState,
        blocks: tuple[list[Entry], list[Entry]] | None = None,
    ) -> EntryTally:
        """The tally of ``new``, from this one (of ``old``) and what changed: ``blocks``
        (gone, came) when the caller knows it, else found by identity."""
        by_scope, by_source = dict(self.by_scope), dict(self.by_source)
        gone, came = blocks if blocks is not None else blocks_changed(old, new)
        _count(old, paced(gone), -1, by_scope, by_source)
        _count(new, paced(came), 1, by_scope, by_source)
        if old.sources is not new.sources:
            # A block kept as the same object whose sources changed is counted again.
            moved = {ind for ind, _ in old.sources.items() ^ new.sources.items()}
            moved -= {e.indicator for e in (*gone, *came)}
            kept = [e for e in (_block(new, ind) for ind in moved) if e is not None]
            _count(old, kept, -1, {}, by_source)
            _count(new, kept, 1, {}, by_source)
        return self._made(new, by_scope, by_source)

    @classmethod
    def _made(
        cls, state: DesiredState, by_scope: dict[str, int], by_source: dict[str, int]
    ) -> EntryTally:
        return cls(
            state.version,
            len(state.blocks),
            len(state.allows),
            MappingProxyType({k: n for k, n in by_scope.items() if n}),
            MappingProxyType({k: n for k, n in sorted(by_source.items()) if n}),
            MappingProxyType(dict(state.refused)),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``entries`` object of ``/v1/status``."""
        return {
            "version": self.version,
            "total": self.total,
            "allows": self.allows,
            "by_scope": dict(self.by_scope),
            "by_source": dict(self.by_source),
            "refused": dict(self.refused),
        }


def _count(
    state: DesiredState,
    blocks: Iterable[Entry],
    sign: int,
    by_scope: dict[str, int],
    by_source: dict[str, int],
) -> None:
    sources = state.sources
    for e in blocks:
        scope = e.indicator.scope.value
        by_scope[scope] = by_scope.get(scope, 0) + sign
        for src in sources.get(e.indicator, (e.source,)):
            key = source_key(src)
            by_source[key] = by_source.get(key, 0) + sign


def _block(state: DesiredState, ind: Indicator) -> Entry | None:
    pos = entry_position(state.blocks, ind)
    return None if pos is None else state.blocks[pos]
