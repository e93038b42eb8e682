"""Raw request targets that spell a listed page or url-prefix, and ones that must not match.

Each is what a client may put in a request line for the same resource (fragments, empty or
unrelated queries, escapes, double encoding, dot segments, path parameters), so a filter
that refuses the canonical form has to refuse every one of them.
"""

from __future__ import annotations


def page_spellings(path: str) -> list[str]:
    """Raw request targets (origin-form) an origin serves as the page at ``path``.

    ``path`` is ``/dir/name.ext`` with letters in both segments.
    """
    _, first, last = path.split("/")
    stem, _, ext = last.partition(".")
    return [
        path,
        path + "#x",  # a fragment in the request line: Squid sends it on, the origin drops it
        path + "#",
        path + "?",
        path + "?&",
        path + "?a=1",  # a query the entry does not constrain
        path + "?a=1#x",
        f"/{first}/%{ord(last[0]):02X}{last[1:]}",  # an unreserved character escaped
        f"/%{ord(first[0]):02x}{first[1:]}/{stem}%2E{ext}",
        f"/{first}/%25{ord(last[0]):02X}{last[1:]}",  # double encoding
        f"/{first}%2F{last}",  # reserved characters escaped: many origins decode them
        f"/{first}%2f{last}",
        path + "%3Fa=1",
        path + "%23x",
        path + "%3B",
        f"/{first}/./{last}",
        f"/x/../{first}/{last}",
        f"//{first}//{last}",
        f"/{first}/%2E/{last}",
        f"/{first}/{last};jsessionid=1",  # path parameters (servlet containers drop them)
        f"/{first};x/{last}",
        f"/{first}/x/..;y/{last}",
    ]


def prefix_spellings(prefix: str) -> list[str]:
    """Raw request targets under url-prefix ``prefix`` (``/dir/name``, no trailing slash)."""
    _, first, last = prefix.split("/")
    return [
        prefix,
        prefix + "/",
        prefix + "/x",
        prefix + "?x",
        prefix + "/?x",
        prefix + "#x",
        prefix + ";x",
        prefix + ";x/y",
        f"/{first}/%{ord(last[0]):02X}{last[1:]}/x",
        f"/{first}/./{last}/x",
        f"/{first}//{last}/x",
    ]


def prefix_siblings(prefix: str) -> list[str]:
    """Paths next to url-prefix ``prefix`` that it must not cover."""
    return [prefix + "x", prefix + "ectory/x", prefix[:-1]]
