"""RELIABILITY.md's figures, rendered from what the suite measured (like bench's render).

The tests write their figures to ``var/reliability/*.json`` (:mod:`tests.support.figures`,
and the fuzz example counts of :mod:`tests.support.fuzzing`). Run

    .venv/bin/python -m tests.support.reliability_doc

after a suite run: it folds those files into the committed snapshot
``tests/data/reliability-figures.json`` (a figure measured later replaces the one kept)
and rewrites every figure in RELIABILITY.md from the snapshot. In the document a figure
is a marked span, ``<!-- figure GROUP/NAME -->text<!-- /figure -->``, and a whole table
of figures a marked block, ``<!-- figures GROUP -->`` ... ``<!-- /figures -->``; only
what lies between the markers is rewritten. ``tests/unit/test_reliability_doc.py``
checks that the document is what this renders from the snapshot, so the document cannot
show figures other than the last ones folded in.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.figures import FIGURES_DIR, ROOT, read_group, write_json, write_text

DOC = ROOT / "RELIABILITY.md"
SNAPSHOT = ROOT / "tests" / "data" / "reliability-figures.json"

Figure = Mapping[str, Any]


def _bypass(f: Figure) -> str:
    text = f"{f['refused']} of {f['tried']} spellings refused, nothing at the origin; "
    text += f"{f['siblings_passed']} of {f['siblings']} siblings passed"
    if f.get("not_enforceable"):
        text += f"; listed page over TLS passes ({f['not_enforceable']}, the documented limit)"
    return text


def _hostile_by_class(f: Figure) -> str:
    classes = sorted({key.split(".")[0] for key in f if key.endswith(".tried")})
    return "; ".join(f"{c} {f.get(c + '.refused', 0)}/{f[c + '.tried']}" for c in classes)


# One sentence per figure, from its values.
FORMATS: dict[str, Callable[[Figure], str]] = {
    "faults/kill9": lambda f: (
        f"{f['survived']} of {f['cycles']} cycles survived, {f['decisions']} decisions kept, "
        f"{f['lost']} lost or doubled; the resolver served {f['resolver_serials']} "
        f"serials, each from a complete zone; the live Squid helper answered "
        f"{f['helper_lookups']} lookups after the kills, each as the index in place says"
    ),
    "faults/clock-steps": lambda f: (
        f"stepped +{f['forward_seconds'] // 3600} h, then back {f['back_seconds'] // 3600} h: "
        f"the resolver followed {f['serials']} serials, each higher; a decision expiring in "
        f"{f['expires_in']} s left the zone {f['forward_expiry_seconds']:.1f} s (step forward) "
        f"and {f['back_expiry_seconds']:.1f} s (step back) after it was made; after the step "
        f"back an edited zone file was repaired {f['repair_seconds']:.1f} s later (interval "
        f"{f['interval_seconds']} s); `since` returned the {f['audit_rows_after_step']} rows "
        "written across the step, in order; the chain verifies"
    ),
    "faults/clock-steps-takedown": lambda f: (
        f"set back {f['back_seconds'] // 3600} h with two tickets open (SLA "
        f"{f['sla_seconds']} s, takedown pass every {f['pass_seconds']} s): the first "
        f"ticket's SLA breach recorded {f['step_late_seconds']:.1f} s after "
        f"its deadline; after a kill -9 and a restart ({f['restart_down_seconds']:.1f} s "
        f"down), still set back, the second ticket's {f['restart_late_seconds']:.1f} s after "
        "its deadline"
    ),
    "faults/disk-full": lambda f: (
        f"503 after {f['writes_until_503']} write(s) once the disk filled; ready again "
        f"{f['recovery_seconds']:.1f} s after space returned (readiness is checked on each "
        "`/readyz`)"
    ),
    "faults/lab-ready": lambda f: (
        f"lab refused to be ready after {f['refused_after_seconds']:.1f} s, every peer stopped"
    ),
    "faults/drift": lambda f: (
        f"zone repaired {f['zone_seconds']:.1f} s after the edit, index "
        f"{f['index_seconds']:.1f} s (interval {f['interval_seconds']} s)"
    ),
    "faults/drift-squid": lambda f: (
        f"canary failing {f['detected_seconds']:.1f} s after the edited config was loaded "
        f"(interval {f['interval_seconds']} s); passing {f['recovery_seconds']:.1f} s after "
        "it was put back"
    ),
    "faults/route-drift": lambda f: (
        f"route back {f['route_seconds']:.1f} s after deletion (interval {f['interval_seconds']} s)"
    ),
    "faults/hang-primary": lambda f: (
        f"hung {f['hang_seconds']:.1f} s: {f['retries']} retries; API p99 "
        f"{f['api_p99_ms_during']} ms during (before {f['api_p99_ms_before']} ms); published "
        f"and served everywhere {f['recovery_seconds']:.1f} s after it answered again"
    ),
    "faults/hang-resolver": lambda f: (
        f"primary took the decision in {f['publish_seconds']:.1f} s; API p99 "
        f"{f['api_p99_ms_during']} ms during (before {f['api_p99_ms_before']} ms); current "
        f"serial served and ready again {f['recovery_seconds']:.1f} s after it answered"
    ),
    "faults/hang-squid": lambda f: (
        f"canary failing {f['detected_seconds']:.1f} s after Squid hung (interval "
        f"{f['interval_seconds']} s); API p99 {f['api_p99_ms_during']} ms during (before "
        f"{f['api_p99_ms_before']} ms); canary passing {f['recovery_seconds']:.1f} s after it "
        "answered again"
    ),
    "faults/hang-smtp": lambda f: (
        f"hung {f['hang_seconds']:.1f} s: {f['failed_tries']} tries timed out after "
        f"{f['timeout_seconds']} s each; API p99 {f['api_p99_ms_during']} ms during (before "
        f"{f['api_p99_ms_before']} ms); {f['mails']} mail delivered "
        f"{f['recovery_seconds']:.1f} s after it answered again"
    ),
    "faults/hang-webhook": lambda f: (
        f"hung {f['hang_seconds']:.1f} s: {f['failed_tries']} tries timed out after "
        f"{f['timeout_seconds']} s each; API p99 {f['api_p99_ms_during']} ms during (before "
        f"{f['api_p99_ms_before']} ms); delivered {f['recovery_seconds']:.1f} s after it "
        f"answered again, {f['receipts']} receipts (timed-out tries arriving late) under "
        f"{f['keys']} idempotency key"
    ),
    "limits/slow-clients": lambda f: (
        f"{f['hostile_connections']:,} hostile connections opened in {f['attack_seconds']} s; "
        f"{f['answered_as_before']} of {f['served']} normal requests answered as before; "
        f"p50 {f['p50_ms']} ms (baseline {f['baseline_ms']} ms), p99 {f['p99_ms']} ms on the "
        f"loaded machine; daemon peak {f['peak_fds']} open descriptors (bound asserted: "
        f"{f['fds_bound']:,}); {f['log_lines']} log lines"
    ),
    "hostile/hostile-table": lambda f: (
        f"{f['refused']} of {f['tried']} refused with a reason, {f.get('accepted', 0)} "
        "accepted as the table expects"
    ),
    "hostile/hostile-table-by-class": _hostile_by_class,
    "hostile/authz-matrix": lambda f: (
        f"{f['requests']} requests over {f['routes']} routes, {f['violations']} violations"
    ),
    **{
        f"bypass/{mode}": _bypass
        for mode in ("forward", "accelerated", "diverted", "intercepted", "sni-passthrough")
    },
}


def _fuzz_table(figures: Mapping[str, Figure]) -> str:
    lines = ["| fuzz target | examples (default run) | examples (`EDGEAGENT_LONG=1`) |"]
    lines.append("|---|---:|---:|")
    for target, modes in sorted(figures.items()):
        cells = [
            f"{modes[m]['examples']:,}" if m in modes else "not run yet"
            for m in ("default", "long")
        ]
        lines.append(f"| `{target}` | {cells[0]} | {cells[1]} |")
    total = sum(m["default"]["examples"] for m in figures.values() if "default" in m)
    lines.append(f"| all {len(figures)} targets | {total:,} | |")
    return "\n".join(lines)


# Whole tables, from every figure of a group.
TABLES: dict[str, Callable[[Mapping[str, Figure]], str]] = {"fuzz": _fuzz_table}


# ------------------------------------------------------------------------------ folding


def _newer(kept: Figure | None, measured: Figure) -> bool:
    return kept is None or str(measured.get("at", "")) >= str(kept.get("at", ""))


def fold(snapshot: dict[str, Any], directory: Path = FIGURES_DIR) -> dict[str, Any]:
    """``snapshot`` with every figure of ``directory`` measured since (a new dict)."""
    out: dict[str, Any] = {group: dict(figures) for group, figures in snapshot.items()}
    for path in sorted(directory.glob("*.json")):
        data = read_group(path)
        if path.stem == "hostile-inputs":  # the fuzzing plugin's file: fuzz counts + matrix
            fuzz = out.setdefault("fuzz", {})
            for target, modes in data.get("fuzz_examples", {}).items():
                kept = dict(fuzz.get(target, {}))
                for mode, figure in modes.items():
                    if _newer(kept.get(mode), figure):
                        kept[mode] = figure
                fuzz[target] = kept
            if "authz-matrix" in data.get("figures", {}):
                data = {"authz-matrix": data["figures"]["authz-matrix"]}
                group = out.setdefault("hostile", {})
            else:
                continue
        else:
            group = out.setdefault(path.stem, {})
        for name, figure in data.items():
            if _newer(group.get(name), figure):
                group[name] = figure
    return out


# ---------------------------------------------------------------------------- rendering

_SPAN = re.compile(r"<!-- figure (?P<key>[\w-]+/[\w-]+) -->(?P<text>.*?)<!-- /figure -->")
_BLOCK = re.compile(
    r"<!-- figures (?P<group>[\w-]+) -->\n(?P<text>.*?)\n<!-- /figures -->", re.DOTALL
)


class MissingFigure(KeyError):
    """The document names a figure that has no format or was never measured."""


def _figure(snapshot: Mapping[str, Any], key: str) -> Figure:
    group, _, name = key.partition("/")
    if key not in FORMATS:
        raise MissingFigure(f"{key}: no format in {__name__}.FORMATS")
    figure = snapshot.get(group, {}).get(name)
    if figure is None:
        raise MissingFigure(f"{key}: not in {SNAPSHOT.name}; run the test that measures it")
    return figure  # type: ignore[no-any-return]


def render(doc: str, snapshot: Mapping[str, Any]) -> str:
    """``doc`` with every marked figure and table rewritten from ``snapshot``."""

    def span(m: re.Match[str]) -> str:
        key = m.group("key")
        figure = _figure(snapshot, key)
        return f"<!-- figure {key} -->{FORMATS[key](figure)}<!-- /figure -->"

    def block(m: re.Match[str]) -> str:
        group = m.group("group")
        if group not in TABLES or group not in snapshot:
            raise MissingFigure(f"figures {group}: no table or nothing measured")
        return f"<!-- figures {group} -->\n{TABLES[group](snapshot[group])}\n<!-- /figures -->"

    return _BLOCK.sub(block, _SPAN.sub(span, doc))


def referenced(doc: str) -> set[str]:
    """Every figure key and table group the document marks."""
    return {m.group("key") for m in _SPAN.finditer(doc)} | {
        m.group("group") for m in _BLOCK.finditer(doc)
    }


def main() -> int:
    snapshot = fold(read_group(SNAPSHOT))
    write_json(SNAPSHOT, snapshot)
    text = render(DOC.read_text(encoding="utf-8"), snapshot)
    write_text(DOC, text)
    print(f"{DOC.name}: {len(referenced(text))} figures rendered from {SNAPSHOT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
