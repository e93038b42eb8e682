"""Support for the hostile-input tests: fuzz budgets, hostile strategies, recorded figures.

- ``fuzz_settings(default, long)``: hypothesis settings running ``default`` examples, or
  ``long`` with ``EDGEAGENT_LONG=1``; every example has a deadline (a hang fails).
- ``EXAMPLES.count(target)``: one example of ``target`` executed; ``FIGURES.set(name,
  values)`` and ``FIGURES.add(name, key)``: other figures (authorisation matrix
  requests). This module is a pytest plugin (the root conftest names
  it in ``pytest_plugins``): after each test and at the end of the session it merges both
  into ``var/reliability/hostile-inputs.json`` (by target and mode, default or long, so a
  partial run keeps the others' last figures), and prints a summary at the end.
- Strategies for hostile text: names, URLs and lines built from the characters that
  matter to zone files, URL parsers and line protocols. Only reserved names
  (``.test``/``.example``/``.invalid``, ``example.com``) and documentation addresses.
"""

from __future__ import annotations

import json
import math
import os
import string
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG = os.environ.get("EDGEAGENT_LONG", "") not in ("", "0")
"""Long variants run with ``EDGEAGENT_LONG=1`` (CI, when time allows)."""

DEADLINE = timedelta(seconds=2)
"""Per example: far above any parser's real cost, low enough that a hang fails the test."""

FIGURES_FILE = Path(__file__).resolve().parents[2] / "var" / "reliability" / "hostile-inputs.json"


T = TypeVar("T")


def outcome(call: Callable[[], T], *refusals: type[Exception]) -> T | Exception:
    """``call()``'s result, or the exception it raised if it is one of ``refusals`` (any
    other exception fails the test: it is a crash)."""
    try:
        return call()
    except refusals as exc:
        return exc


def fuzz_settings(default: int, long: int) -> settings:
    """Hypothesis settings for one fuzz target (see the module docstring)."""
    return settings(
        max_examples=long if LONG else default,
        deadline=DEADLINE,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


class ExampleLog:
    """Examples executed per fuzz target in this session."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, target: str, n: int = 1) -> None:
        self.counts[target] = self.counts.get(target, 0) + n


class Figures:
    """Other figures of the hostile-input suite (matrix requests), by name."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, int]] = {}

    def set(self, name: str, values: dict[str, int]) -> None:
        self.values[name] = dict(values)

    def add(self, name: str, key: str, n: int = 1) -> None:
        values = self.values.setdefault(name, {})
        values[key] = values.get(key, 0) + n


EXAMPLES = ExampleLog()
FIGURES = Figures()


_SAVED: list[Any] = [None]  # what was last written, to write only what changed


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # After every test, not only at the session's end: a long run stopped by a time
    # limit keeps the counts of the targets it finished.
    if report.when == "teardown":
        _save()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _save()


def _save() -> None:
    if not EXAMPLES.counts and not FIGURES.values:
        return
    now = (dict(EXAMPLES.counts), {k: dict(v) for k, v in FIGURES.values.items()})
    if now == _SAVED[0]:
        return
    _SAVED[0] = now
    try:
        known = json.loads(FIGURES_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    at = datetime.now(UTC).isoformat(timespec="seconds")
    examples = known.get("fuzz_examples", {})
    mode = "long" if LONG else "default"
    for target, n in EXAMPLES.counts.items():
        examples.setdefault(target, {})[mode] = {"examples": n, "at": at}
    figures = known.get("figures", {})
    for name, values in FIGURES.values.items():
        figures[name] = {**values, "at": at}
    data = {
        "fuzz_examples": dict(sorted(examples.items())),
        "figures": dict(sorted(figures.items())),
    }
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts = EXAMPLES.counts
    if counts:
        parts = ", ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        terminalreporter.write_line(
            f"fuzz examples ({'long' if LONG else 'default'}): {sum(counts.values())} over "
            f"{len(counts)} targets: {parts}"
        )
    for name, values in sorted(FIGURES.values.items()):
        parts = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{name}: {parts}")
    if counts or FIGURES.values:
        terminalreporter.write_line(f"(recorded in {FIGURES_FILE})")


# ----------------------------------------------------------------------------- strategies

# Characters a zone file, a URL parser or a line protocol treats specially.
ZONE_SPECIALS = list(";$@()\\\"' \t\n\r*.")
URL_SPECIALS = [*":/?#[]@!$&'()*+,;=%\\ \t\n\r", "%2e", "%2f", "%2F", "%3f", "%23", "%40"]
CONFUSABLES = [*"аеорсхуіјԁһӏ", "ǃ", "ℯ", "ｅ", "。", "．", "\u200b", "\u200d", "ß", "ς"]
UNICODE = [*"äößçéñΩжя中", "\u0085", "\u2028", "\u2029", "\ufeff", "\x00", "\x7f"]

_label_char = st.sampled_from(
    list(string.ascii_letters + string.digits + "-_")
    + ZONE_SPECIALS
    + CONFUSABLES
    + UNICODE
    + ["xn--", "--"]
)
labels = st.one_of(
    st.lists(_label_char, min_size=0, max_size=12).map("".join),
    st.integers(min_value=1, max_value=70).map(lambda n: "a" * n),
    st.sampled_from(["xn--pple-43d", "xn--e1awd7f", "xn--zz", "rpz-ip", "rpz-nsdname", "_dmarc"]),
)
SUFFIXES = ["example", "test", "invalid", "example.com", "com", "", "example."]
hostile_names = st.one_of(
    st.builds(
        lambda ls, suffix: ".".join([*ls, suffix]) if suffix else ".".join(ls),
        st.lists(labels, min_size=1, max_size=6),
        st.sampled_from(SUFFIXES),
    ),
    st.text(max_size=40),
    st.text(st.sampled_from(ZONE_SPECIALS + list("abc.")), max_size=20),
)

ipv4_forms = st.sampled_from(
    [
        "192.0.2.1",
        "3221225985",
        "0xc0.0.2.1",
        "0300.0.02.01",
        "0xc0000201",
        "192.0.513",
        "192.0x0.2.1",
        "192.0.2.256",
        "0x1.0x2.0x3.0x4.0x5",
        "198.51.100.011",
        "203.0.113.1.",
        "0",
    ]
)
ipv6_forms = st.sampled_from(
    [
        "[2001:db8::1]",
        "[2001:DB8:0:0::1]",
        "[2001:db8::1%25eth0]",
        "[fe80::1%eth0]",
        "[::ffff:192.0.2.1]",
        "[2001:db8::1",
        "2001:db8::1",
        "[]",
        "[v1.x]",
    ]
)
userinfo = st.sampled_from(["", "u@", "u:p@", "a@b@", "a.example@", "@", "a.example%40", "\\@"])
ports = st.sampled_from(["", ":80", ":443", ":8080", ":", ":65536", ":0x50", ":-1", ":080"])
_path_piece = st.sampled_from(
    list("abcXYZ019/._~-") + URL_SPECIALS + ["..", "%2e%2e", "%252e", "é", "%00", "%ff", ";x"]
)
paths = st.lists(_path_piece, max_size=20).map("".join)
schemes = st.sampled_from(
    ["http://", "https://", "HTTP://", "", "//", "http:", "http:\\\\", "ftp://", "javascript:"]
)
hostile_urls = st.one_of(
    st.builds(
        lambda scheme, user, host, port, path: f"{scheme}{user}{host}{port}{path}",
        schemes,
        userinfo,
        st.one_of(hostile_names, ipv4_forms, ipv6_forms),
        ports,
        st.one_of(st.just(""), paths.map(lambda p: "/" + p), paths),
    ),
    st.text(max_size=60),
)

# TOML-shaped values: what tomllib can hand the config loader.
toml_scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.times(),
)
toml_keys = st.one_of(st.text(max_size=12), st.sampled_from(["kind", "backend", "enabled", "path"]))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(toml_keys, inner, max_size=4),
    ),
    max_leaves=12,
)


# ----------------------------------------------------------------------------- TOML text


def toml_text(table: dict[str, Any]) -> str:
    """``table`` as a TOML document (one ``key = value`` line per root key, inline tables)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("a surrogate cannot be written in TOML")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"not a TOML value: {type(value).__name__}")
