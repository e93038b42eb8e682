"""The render module's own templates (``templates/``), filled. Pure but for reading them.

``templates/`` holds one host's daemon configs with ``@NAME@`` placeholders: the Squid and
sniproxy configs every rendered proxy is made of, and the single-host resolver configs the
lab and the tests run (a zone-file BIND or Unbound resolver, a hidden primary and the
resolvers transferring from it, Unbound over HTTP, PowerDNS Recursor and Knot Resolver
fragments). The operator-facing text is in ``docs/snippets/``.

No template writes a zone name, zone file name or the canary's top-level domain: they are
filled from the agent's RPZ settings (:func:`zone_values`), so a config rendered here
always names the zones and files the agent publishes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import zone_file_name

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Unbound serves these names itself unless told not to: a canary under one of them would
# be answered before the policy.
UNBOUND_LOCAL_TLDS = frozenset({"test", "invalid", "example", "localhost", "onion", "local"})


def fill(template: str, values: Mapping[str, str], what: str) -> str:
    """``template`` with every ``@KEY@`` replaced; an unfilled placeholder is an error."""
    text = template
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = set(re.findall(r"@([A-Z_]+)@", text)) - {"NAME"}
    if left:
        raise ValueError(f"unfilled placeholders in {what}: {sorted(left)}")
    return text


def template_text(name: str) -> str:
    """The template ``templates/<name>``."""
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def unbound_nodefault(name: str) -> str:
    """The ``local-zone: ... nodefault`` line Unbound needs to resolve ``name`` (its TLD
    is special-use), or ""."""
    tld = name.rstrip(".").rsplit(".", 1)[-1]
    return f'    local-zone: "{tld}." nodefault\n' if tld in UNBOUND_LOCAL_TLDS else ""


def zone_values(rpz: RpzSettings) -> dict[str, str]:
    """The placeholders every template takes from the agent's RPZ settings."""
    return {
        "POLICY_ZONE": rpz.zone,
        "EXCEPTION_ZONE": rpz.exception_zone,
        "POLICY_FILE": zone_file_name(rpz.zone),
        "EXCEPTION_FILE": zone_file_name(rpz.exception_zone),
        "CANARY_NODEFAULT": unbound_nodefault(rpz.canary).rstrip("\n"),
    }


def render_template(name: str, values: Mapping[str, str], rpz: RpzSettings) -> str:
    """``templates/<name>`` filled with ``values`` and the zone names of ``rpz``."""
    return fill(template_text(name), {**zone_values(rpz), **values}, name)
