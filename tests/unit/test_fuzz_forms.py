"""Fuzzing the public forms (report, appeal, challenge: edgeagent/intake/form.py).

Properties: a form is queued or refused with :class:`FormInvalid` listing problems, each
naming a field of the form and saying what to change without quoting the input; nothing
else escapes. A queued report's URLs are valid ``url`` targets, within the limits; no
single-line field (contact, case reference) holds a line break or other control.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from edgeagent.intake.base import IntakeContent
from edgeagent.intake.form import (
    CAME_ACROSS,
    FormInvalid,
    appeal_content,
    challenge_content,
    report_content,
)
from edgeagent.intake.settings import IntakeSettings
from edgeagent.model import Indicator, Scope
from tests.support.fuzzing import EXAMPLES, fuzz_settings, hostile_names, hostile_urls, outcome

SETTINGS = IntakeSettings()
MARKER = "m4rk3r"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
FormParser = Callable[..., IntakeContent]

_text = st.one_of(
    st.text(max_size=40).map(lambda t: MARKER + t),
    st.integers(0, 5000).map(lambda n: MARKER + "x" * n),
    st.sampled_from([f"{MARKER}\r\nBcc: x@isp.example", f"{MARKER}\u2028", f"{MARKER}\x00"]),
)
_urls = st.lists(
    st.one_of(hostile_urls, hostile_names).map(lambda u: f"{u}{MARKER}"), max_size=25
).flatmap(lambda lines: st.sampled_from(["\n", "\r\n", "\r", "\u2028"]).map(lines_joined(lines)))


def lines_joined(lines: list[str]) -> Callable[[str], str]:
    return lambda sep: sep.join(lines)


_forms = st.fixed_dictionaries(
    {},
    optional={
        "urls": _urls,
        "category": st.one_of(st.sampled_from(list(SETTINGS.categories)), _text),
        "came_across": st.one_of(st.sampled_from(list(CAME_ACROSS)), _text),
        "live_video": st.sampled_from(["", "yes", "no", "maybe"]),
        "discovered_at": st.sampled_from(["", "2026-01-31T14:05", "2026-13-99T99:99", "x"]),
        "description": _text,
        "anonymous": st.sampled_from(["yes", "no", ""]),
        "contact": _text,
        "ref": st.one_of(_text, st.just("")),
        "statement": _text,
        "case_reference": _text,
        MARKER: _text,
    },
)


@fuzz_settings(default=300, long=20_000)
@given(st.sampled_from([report_content, appeal_content, challenge_content]), _forms)
def test_forms(parse: FormParser, form: dict[str, str]) -> None:
    EXAMPLES.count(f"intake.form.{parse.__name__}")
    got = outcome(lambda: parse(form, SETTINGS), FormInvalid)
    if isinstance(got, FormInvalid):
        assert got.problems
        for problem in got.problems:
            assert problem.field
            assert problem.field != MARKER  # only the form's own fields are named
            assert problem.message
            assert MARKER not in problem.message
        return
    assert isinstance(got, IntakeContent)
    assert len(got.urls) <= SETTINGS.max_urls
    for url in got.urls:
        assert len(url) <= SETTINGS.max_url_length
        Indicator.parse(Scope.URL, url)
    for single_line in (got.contact, got.subject):
        assert not _CONTROL.search(single_line or "")


def test_a_plain_report_is_queued() -> None:
    """Keeps the property from being vacuous: an ordinary report passes."""
    form = {
        "urls": "listed.example/gallery/1.html\r\nhttp://listed.example/2.html",
        "category": SETTINGS.categories[0],
        "came_across": "web",
        "anonymous": "yes",
    }
    content = report_content(form, SETTINGS)
    assert content.urls == ("http://listed.example/gallery/1.html", "http://listed.example/2.html")
    assert content.contact == ""
