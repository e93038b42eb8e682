"""Which external-list blocks an ``allow`` would lift: the four-eyes test for allows.

Hotlines and law enforcement vouch for their lists; one analyst alone must not overrule
them. :class:`ExternalLists` answers, for an indicator someone wants to allow, which of
the blocks in force that allow would lift come from such a list: a feed whose ``source``
is ``hotline`` or ``law-enforcement``, or a decision taken on a notice from one. The
decision lifecycle (:class:`edgeagent.decisions.DecisionService`) starts such an allow
``pending-approval``.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeagent.errors import NotFound
from edgeagent.model import Decision, Indicator, NoticeSource
from edgeagent.policy import PolicyIndex

EXTERNAL_SOURCES = frozenset({NoticeSource.HOTLINE, NoticeSource.LAW_ENFORCEMENT})
"""Notice sources whose lists only a second person may overrule."""

_DECISION = "decision:"


class ExternalLists:
    """``lifted_sources(indicator)`` over the policy in force.

    - ``policy``: the :class:`PolicyIndex` in force (cheap when the version is unchanged);
    - ``feed_source``: the notice source of a configured feed, ``None`` for another name;
    - ``decision``: a decision by id (``NotFound`` if unknown).
    """

    def __init__(
        self,
        policy: Callable[[], PolicyIndex],
        feed_source: Callable[[str], NoticeSource | None],
        decision: Callable[[int], Decision],
    ) -> None:
        self._policy = policy
        self._feed_source = feed_source
        self._decision = decision

    def lifted_sources(self, indicator: Indicator) -> tuple[str, ...]:
        """Feed names and ``decision:<id>`` sources of the external-list blocks an allow on
        ``indicator`` would lift, in the order found; empty if there are none."""
        index = self._policy()
        found: list[str] = []
        for entry in index.lifted_by(indicator):
            for source in index.state.sources_of(entry):
                if source not in found and self._external(source):
                    found.append(source)
        return tuple(found)

    def _external(self, source: str) -> bool:
        if source.startswith(_DECISION):
            try:
                return self._decision(int(source[len(_DECISION) :])).notice_source in (
                    EXTERNAL_SOURCES
                )
            except (NotFound, ValueError):
                return False
        return self._feed_source(source) in EXTERNAL_SOURCES
