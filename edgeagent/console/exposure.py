"""How the console shows text: list entries masked, everything else inert.

- :func:`masked` is how a listed location appears by default: the scheme defanged
  (``hxxp``), the host visible, the path, query and fragment replaced by the short hash
  of the whole target. It is never a link, and it cannot be turned back into the URL.
- :func:`inert` is how every other shown value appears (reasons, references, comments,
  names, and a revealed target): HTML-escaped, with control, bidirectional and other
  invisible formatting characters replaced by a visible ``<U+XXXX>`` so that no text can
  reorder or hide what is around it.

Pure functions; the pages call them for every value they show.
"""

from __future__ import annotations

import html
import unicodedata
from urllib.parse import urlsplit

from edgeagent.errors import short_hash

# Cc (controls), Cf (format: bidi embeddings/overrides/isolates, zero-width), Cs, Co, Cn,
# and the line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def visible(text: str) -> str:
    """``text`` with every hidden or reordering character written as ``<U+XXXX>``."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in _HIDDEN_CATEGORIES and ch not in "\n\t":
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def inert(text: str) -> str:
    """``text`` ready for an HTML page: visible characters only, escaped."""
    return html.escape(visible(text), quote=True)


def masked(target: str) -> str:
    """A target as the console shows it by default (plain text; escape it to show it)."""
    ref = short_hash(target)
    if "://" not in target:
        # A name, an address or a prefix: shown as such (no path to hide), never linked.
        return visible(target.replace(".", "[.]"))
    parts = urlsplit(target)
    scheme = parts.scheme.lower().replace("t", "x")
    host = parts.netloc.rpartition("@")[2]  # never show credentials
    rest = parts.path not in ("", "/") or parts.query or parts.fragment
    hidden = f"/[path #{ref}]" if rest else "/"
    return visible(f"{scheme}://{host.replace('.', '[.]')}{hidden}")
