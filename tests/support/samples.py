"""The bundled sample feeds and the result annotated for each of their lines.

Line formats carry a trailing ``# => RESULT``; CSV and JSONL samples have a sidecar
``<file>.expected`` with ``LINE => RESULT``. RESULT is a scope (``url``, ``url-prefix``,
``domain``, ``host``), ``hash``, or ``rejected: REASON``. Both readers return line number
-> RESULT.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeagent.feeds.textutil import lines

SAMPLES = Path(__file__).resolve().parents[2] / "blocklists" / "samples"
_INLINE = re.compile(r"#\s*=>\s*(.+?)\s*$")
_SIDECAR = re.compile(r"^(\d+)\s*=>\s*(.+?)\s*$")


def inline_expectations(path: Path) -> dict[int, str]:
    text = path.read_bytes().decode("utf-8")
    out = {}
    for number, line in lines(text):
        m = _INLINE.search(line)
        if m:
            out[number] = m.group(1)
    return out


def sidecar_expectations(path: Path) -> dict[int, str]:
    out = {}
    for line in Path(f"{path}.expected").read_text().splitlines():
        m = _SIDECAR.match(line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out
