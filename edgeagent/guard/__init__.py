"""Guardrails: public suffixes, protected names, change limits and the generation ``Plan``.

Contract (every function here is pure; the only I/O is reading list files in the
``load*`` constructors):

- A block of a public suffix (ICANN *and* private sections of the Public Suffix List) or
  of the root is refused outright. Nobody can override it: ``Guard.enforce`` raises
  :class:`~edgeagent.errors.PublicSuffixRefused` even when a second person signs.
- The agent's own *reserved* names (the canary, the stop-page host, the policy and
  exception zones, and every name under them: ``Settings.reserved_names()``) are never blocked
  or allowed, and no ``domain`` entry may cover them:
  :class:`~edgeagent.errors.ReservedNameRefused`, no override.
- A block touching a protected name (the name itself, a subdomain of it, or a ``domain``
  block of a parent that would cover it) and every IP/CIDR block is allowed only with a
  second person's approval (four-eyes): ``Guard.enforce`` raises
  :class:`~edgeagent.errors.ProtectedNameRefused` without one.
- IP/CIDR blocks wider than the configured minimum prefix length are refused outright.
- A name the policy zones cannot hold is refused outright, block or allow: with the longest
  policy zone's name appended (and ``*.`` before a ``domain`` entry) it would be longer
  than 253 octets. A URL block's host counts too (DNS diverts it to the proxy). Refused at
  input, it never becomes a decision that is silently left out of every zone.
- A feed generation that empties the list, or removes or adds more than the configured
  share (with an absolute floor so small lists and single decisions are never held), is
  held: :class:`ChangeLimits` and :meth:`Plan.raise_if_unsafe` raise
  :class:`~edgeagent.errors.ChangeLimitExceeded`.
- An allow (``Action.ALLOW``) unblocks everything it covers, so one person must not be
  able to unblock a whole suffix: an allow of a public suffix or the root, of a prefix
  wider than the minimum, or touching a reserved name (an allowed canary stops proving
  enforcement) is refused outright; a ``domain`` allow covering a protected name needs a
  second person. Narrower allows (a host, a URL, an address) are fine.

Names passed in are canonical (lower-case A-labels, no trailing dot, as produced by
:func:`edgeagent.canon.canonical_name`); nothing here re-canonicalises them, because these
checks run on every entry of million-entry feeds. Reasons and messages never contain an
entry in plain text: exceptions carry ``Indicator.ref``-compatible short hashes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edgeagent.errors import (
    ConfigError,
    ConfigProblem,
    GuardrailViolation,
    ProtectedNameRefused,
    PublicSuffixRefused,
    ReservedNameRefused,
)
from edgeagent.guard.limits import ChangeLimits, Plan, plan_generation
from edgeagent.guard.protected import ProtectedNames, Protection
from edgeagent.guard.reasons import (
    BUNDLED_PSL_FILE,
    REASON_ADDRESS_BLOCK,
    REASON_COVERS_PROTECTED,
    REASON_COVERS_RESERVED,
    REASON_PREFIX_TOO_SHORT,
    REASON_PROTECTED,
    REASON_PUBLIC_SUFFIX,
    REASON_RESERVED,
    REASON_TOO_LONG_FOR_ZONE,
    SYSTEM_PSL_FILE,
)
from edgeagent.guard.suffixes import PublicSuffixes
from edgeagent.model import Action, Indicator, Scope

__all__ = [
    "BUNDLED_PSL_FILE",
    "REASON_ADDRESS_BLOCK",
    "REASON_COVERS_PROTECTED",
    "REASON_COVERS_RESERVED",
    "REASON_PREFIX_TOO_SHORT",
    "REASON_PROTECTED",
    "REASON_PUBLIC_SUFFIX",
    "REASON_RESERVED",
    "REASON_TOO_LONG_FOR_ZONE",
    "SYSTEM_PSL_FILE",
    "ChangeLimits",
    "Guard",
    "GuardVerdict",
    "NameTooLongForZone",
    "Plan",
    "PrefixTooShort",
    "ProtectedNames",
    "Protection",
    "PublicSuffixes",
    "plan_generation",
]


class PrefixTooShort(GuardrailViolation):
    """An IP/CIDR block wider than the configured minimum prefix: refused, no override."""


class NameTooLongForZone(GuardrailViolation):
    """A name too long for the policy zone once its name is appended: refused, no override."""


# --------------------------------------------------------------------------- suffixes


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guardrails say about one indicator with one action.

    ``allowed=False``: refused outright, no override (``reason`` says why).
    ``allowed=True, needs_second_person=True``: allowed only with a second person's
    approval. ``allowed=True, needs_second_person=False``: fine (``reason`` is empty).
    """

    allowed: bool
    needs_second_person: bool
    reason: str


_OK: Final = GuardVerdict(True, False, "")
_PUBLIC: Final = GuardVerdict(False, False, REASON_PUBLIC_SUFFIX)
_SHORT: Final = GuardVerdict(False, False, REASON_PREFIX_TOO_SHORT)
_PROTECTED: Final = GuardVerdict(True, True, REASON_PROTECTED)
_COVERS: Final = GuardVerdict(True, True, REASON_COVERS_PROTECTED)
_ADDRESS: Final = GuardVerdict(True, True, REASON_ADDRESS_BLOCK)
_RESERVED: Final = GuardVerdict(False, False, REASON_RESERVED)
_COVERS_RESERVED: Final = GuardVerdict(False, False, REASON_COVERS_RESERVED)
_TOO_LONG: Final = GuardVerdict(False, False, REASON_TOO_LONG_FOR_ZONE)
# Presentation length of a 255-octet wire name without its trailing dot.
_MAX_NAME: Final = 253


def _is_ip_literal(host: str) -> bool:
    """True for URL hosts that are addresses (``[2001:db8::1]``, ``192.0.2.1``)."""
    if host.startswith("[") or ":" in host:
        return True
    # A TLD is never all digits, so only a dotted-numeric host can be an IPv4 literal.
    if host[-1:].isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return False


@dataclass(frozen=True, slots=True)
class Guard:
    """The guardrails every entry passes: see the module docstring for the rules."""

    public_suffixes: PublicSuffixes
    protected: ProtectedNames
    limits: ChangeLimits = field(default_factory=ChangeLimits)
    min_prefix_v4: int = 24
    min_prefix_v6: int = 48
    # The zones entries are written under (``Settings.policy_zones()``); none: no DNS.
    policy_zones: tuple[str, ...] = ()
    # Longest name the longest policy zone holds (one octet for the dot before the zone).
    _name_room: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        longest = max((len(zone) for zone in self.policy_zones), default=0)
        object.__setattr__(self, "_name_room", _MAX_NAME - 1 - longest)
        problems = []
        if not 0 <= self.min_prefix_v4 <= 32:
            problems.append(ConfigProblem("min_prefix_v4", "must be between 0 and 32"))
        if not 0 <= self.min_prefix_v6 <= 128:
            problems.append(ConfigProblem("min_prefix_v6", "must be between 0 and 128"))
        if problems:
            raise ConfigError("guard", problems)

    @classmethod
    def load(
        cls,
        protected_dir: str | Path,
        *,
        psl_file: str | Path | None = None,
        limits: ChangeLimits | None = None,
        min_prefix_v4: int = 24,
        min_prefix_v6: int = 48,
        reserved: Iterable[str] = (),
        policy_zones: Iterable[str] = (),
        suffixes: PublicSuffixes | None = None,
    ) -> Guard:
        """Build from the protected-names directory and a PSL snapshot (see ``load``s);
        ``reserved``: the agent's own names (``Settings.reserved_names()``);
        ``policy_zones``: the zones entries are written under (``Settings.policy_zones()``);
        ``suffixes``: a snapshot already loaded (it never changes), instead of ``psl_file``."""
        if suffixes is None:
            suffixes = PublicSuffixes.load(psl_file)
        protected = ProtectedNames.load_dir(
            protected_dir, public_suffixes=suffixes, reserved=reserved
        )
        return cls(
            suffixes,
            protected,
            limits if limits is not None else ChangeLimits(),
            min_prefix_v4,
            min_prefix_v6,
            tuple(policy_zones),
        )

    def check_indicator(self, indicator: Indicator, action: Action) -> GuardVerdict:
        """Judge one indicator for ``action`` (pure, a few set lookups)."""
        if not self._fits_zone(indicator, action):
            return _TOO_LONG
        if action is Action.BLOCK:
            return self._check_block(indicator)
        return self._check_allow(indicator)

    def _check_block(self, indicator: Indicator) -> GuardVerdict:
        scope = indicator.scope
        if scope is Scope.DOMAIN or scope is Scope.HOST:
            name = indicator.value
            if self.public_suffixes.is_public_suffix(name):
                return _PUBLIC
            own = self.protected.protection(name)
            if scope is Scope.DOMAIN:
                cover = self.protected.cover_protection(name)
                if cover > own:
                    return self._by_protection(cover, covering=True)
            return self._by_protection(own, covering=False) if own else _OK
        if scope is Scope.URL or scope is Scope.URL_PREFIX:
            # A URL entry diverts its host to the proxy: diverting a TLD is never right,
            # diverting a protected (high-traffic) host needs four eyes.
            host = indicator.host or ""
            if host and _is_ip_literal(host):
                return _OK
            if self.public_suffixes.is_public_suffix(host):
                return _PUBLIC
            own = self.protected.protection(host)
            return self._by_protection(own, covering=False) if own else _OK
        if scope is Scope.URL_HASH:
            # Hashes name no host to judge; the hashed-url-list feed refuses digests of
            # protected host roots before they get here.
            return _OK
        # IP / CIDR: refuse wide prefixes; every address block needs four eyes because
        # one address usually serves many unrelated sites.
        return _SHORT if self._too_wide(indicator) else _ADDRESS

    def _check_allow(self, indicator: Indicator) -> GuardVerdict:
        """An allow unblocks everything it covers: refuse the ones that would unblock a
        whole suffix or a wide prefix, or break the agent's own canaries; an allow of a
        parent of a protected name (it unblocks a high-traffic site) needs four eyes."""
        scope = indicator.scope
        if scope is Scope.DOMAIN or scope is Scope.HOST:
            name = indicator.value
            if self.public_suffixes.is_public_suffix(name):
                return _PUBLIC
            if self.protected.protection(name) is Protection.RESERVED:
                return _RESERVED
            if scope is Scope.DOMAIN:
                cover = self.protected.cover_protection(name)
                return self._by_protection(cover, covering=True)
            return _OK
        if scope is Scope.URL or scope is Scope.URL_PREFIX:
            host = indicator.host or ""
            # One page passes; only the canaries' own hosts must stay blocked.
            reserved = self.protected.protection(host) is Protection.RESERVED
            return _RESERVED if reserved else _OK
        if scope is Scope.CIDR and self._too_wide(indicator):
            return _SHORT
        return _OK

    @staticmethod
    def _by_protection(protection: Protection, *, covering: bool) -> GuardVerdict:
        """Reserved: refused; protected: four eyes; else fine. ``covering``: the entry
        covers the name from a parent (a ``domain`` entry) rather than naming it."""
        if protection is Protection.RESERVED:
            return _COVERS_RESERVED if covering else _RESERVED
        if protection is Protection.PROTECTED:
            return _COVERS if covering else _PROTECTED
        return _OK

    def _fits_zone(self, indicator: Indicator, action: Action) -> bool:
        """False for a name the policy zones cannot hold as an owner (see the module
        docstring); addresses, hashes and URL allows (proxy only) always fit."""
        if not self.policy_zones:
            return True
        scope = indicator.scope
        if scope is Scope.DOMAIN:
            return len(indicator.value) + 2 <= self._name_room  # "*." + name
        if scope is Scope.HOST:
            return len(indicator.value) <= self._name_room
        if action is Action.BLOCK and (scope is Scope.URL or scope is Scope.URL_PREFIX):
            host = indicator.host or ""
            return not host or _is_ip_literal(host) or len(host) <= self._name_room
        return True

    def _too_wide(self, indicator: Indicator) -> bool:
        """True for a CIDR shorter than the configured minimum prefix of its family."""
        if indicator.scope is not Scope.CIDR:
            return False
        address, _, length = indicator.value.rpartition("/")
        minimum = self.min_prefix_v6 if ":" in address else self.min_prefix_v4
        return int(length) < minimum

    def refusal(self, reason: str, indicator: Indicator, action: Action) -> GuardrailViolation:
        """The named exception for a verdict refused for ``reason`` (its target hash is
        ``indicator.ref``)."""
        target = f"{indicator.scope}:{indicator.value}"  # hashes to Indicator.ref
        what = "an allow" if action is Action.ALLOW else "a block"
        if reason == REASON_PUBLIC_SUFFIX:
            return PublicSuffixRefused(
                f"{what} of a public suffix or the root is never accepted", target
            )
        if reason == REASON_TOO_LONG_FOR_ZONE:
            return NameTooLongForZone(
                f"{what} of a name the policy zone cannot hold is never accepted: with the "
                f"zone's name appended it is longer than {_MAX_NAME} octets (at most "
                f"{self._name_room} for a host, {self._name_room - 2} for a domain)",
                target,
            )
        if reason == REASON_PREFIX_TOO_SHORT:
            return PrefixTooShort(
                f"{what} of a prefix shorter than /{self.min_prefix_v4} (IPv4) or "
                f"/{self.min_prefix_v6} (IPv6) is never accepted",
                target,
            )
        return ReservedNameRefused(
            f"{what} touching the agent's own names (canary, stop page, policy zones) "
            "is never accepted",
            target,
        )

    def enforce(
        self,
        indicator: Indicator,
        action: Action,
        *,
        second_person: str | None,
        actor: str,
    ) -> GuardVerdict:
        """Return the verdict if the change may go ahead as asked, else raise.

        Raises the :meth:`refusal` of a refused verdict (``PublicSuffixRefused``,
        ``PrefixTooShort``, ``ReservedNameRefused``: no override, whoever signs), or
        ``ProtectedNameRefused`` when a second person is needed and ``second_person`` is
        missing, blank or the same as ``actor``.
        """
        verdict = self.check_indicator(indicator, action)
        if not verdict.allowed:
            raise self.refusal(verdict.reason, indicator, action)
        if verdict.needs_second_person:
            target = f"{indicator.scope}:{indicator.value}"
            second = (second_person or "").strip()
            if not second:
                raise ProtectedNameRefused(
                    f"{verdict.reason}: needs a second person's approval", target
                )
            if second.casefold() == actor.strip().casefold():
                raise ProtectedNameRefused(
                    f"{verdict.reason}: the second person must differ from the actor", target
                )
        return verdict


# --------------------------------------------------------------------------- plan
