"""The public forms' fields: parsing and checking what a person typed.

Each check names the field and says what to change; messages never echo the input.
Values are kept as typed (trimmed), except that a URL typed without a scheme gets
``http://``. Free text may hold line breaks and tabs but no other control characters.
What a person did not fill in stays empty, and a report marked anonymous keeps no contact
even if the contact box was filled in before the choice changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeagent.errors import InvalidTarget
from edgeagent.intake.base import IntakeContent
from edgeagent.intake.entryref import is_ref
from edgeagent.intake.settings import IntakeSettings
from edgeagent.model import Indicator, Scope

CAME_ACROSS = {
    "web": "A website",
    "email": "An e-mail",
    "messaging": "A messaging app",
    "social-media": "Social media",
    "live-video": "A live video stream",
    "other": "Somewhere else",
}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DISCOVERED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")
MAX_CONTACT = 200
MAX_CASE_REFERENCE = 200


@dataclass(frozen=True, slots=True)
class FormProblem:
    field: str
    message: str


class FormInvalid(Exception):
    """The form cannot be queued; ``problems`` lists every field to fix."""

    def __init__(self, problems: list[FormProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(", ".join(p.field for p in problems))


Form = Mapping[str, str]


class _Checker:
    def __init__(self, form: Form) -> None:
        self.form = form
        self.problems: list[FormProblem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(FormProblem(field, message))

    def text(self, field: str, limit: int, *, required: bool = False, lines: bool = True) -> str:
        value = self.form.get(field, "").strip()
        if required and not value:
            self.fail(field, "please fill this in")
        elif len(value) > limit:
            self.fail(field, f"at most {limit} characters, please")
        elif (_CONTROL if lines else _LINE_CONTROL).search(value):
            self.fail(field, "contains characters that cannot be accepted")
        else:
            return value
        return ""

    def done(self) -> None:
        if self.problems:
            raise FormInvalid(self.problems)


def _url(line: str) -> str:
    return line if "://" in line else f"http://{line}"


def report_content(form: Form, settings: IntakeSettings) -> IntakeContent:
    """A public report's content, or ``FormInvalid``."""
    c = _Checker(form)
    raw = c.text("urls", settings.max_urls * (settings.max_url_length + 2), required=True)
    urls = [_url(line.strip()) for line in raw.splitlines() if line.strip()]
    if raw and not urls:
        c.fail("urls", "please give at least one address")
    if len(urls) > settings.max_urls:
        c.fail("urls", f"at most {settings.max_urls} addresses per report, please")
    elif any(len(u) > settings.max_url_length for u in urls):
        c.fail("urls", f"each address may have at most {settings.max_url_length} characters")
    else:
        for n, u in enumerate(urls, 1):
            try:
                Indicator.parse(Scope.URL, u)
            except (InvalidTarget, ValueError):
                c.fail("urls", f"line {n} is not a web address")
                break
    category = form.get("category", "")
    if category not in settings.categories:
        c.fail("category", "please choose what the material shows")
    came_across = form.get("came_across", "")
    if came_across not in CAME_ACROSS:
        c.fail("came_across", "please choose how you came across it")
    live = form.get("live_video", "")
    if live not in ("", "yes", "no"):
        c.fail("live_video", "please choose yes or no")
    discovered = form.get("discovered_at", "").strip()
    if discovered and not _DISCOVERED.fullmatch(discovered):
        c.fail("discovered_at", "please give a date and time like 2026-01-31T14:05")
    description = c.text("description", settings.max_text_chars)
    anonymous = form.get("anonymous", "yes") != "no"
    contact = c.text("contact", MAX_CONTACT, lines=False)
    if not anonymous and not contact:
        c.fail("contact", "please give a contact, or choose to stay anonymous")
    c.done()
    return IntakeContent(
        urls=tuple(urls),
        category=category,
        came_across=came_across,
        live_video=None if live == "" else live == "yes",
        discovered_at=discovered,
        description=description,
        contact="" if anonymous else contact,
    )


def appeal_content(form: Form, settings: IntakeSettings) -> IntakeContent:
    """An appeal against a block (``ref``: the stop page's opaque entry reference)."""
    c = _Checker(form)
    ref = form.get("ref", "").strip()
    if ref and not is_ref(ref):
        c.fail("ref", "this appeal link is damaged: please describe the page instead")
    statement = c.text("statement", settings.max_text_chars, required=True)
    contact = c.text("contact", MAX_CONTACT, lines=False)
    c.done()
    return IntakeContent(statement=statement, contact=contact, subject=ref)


def challenge_content(form: Form, settings: IntakeSettings) -> IntakeContent:
    """A hosting customer's challenge of a takedown, by the ticket's case reference."""
    c = _Checker(form)
    case = c.text("case_reference", MAX_CASE_REFERENCE, required=True, lines=False)
    statement = c.text("statement", settings.max_text_chars, required=True)
    contact = c.text("contact", MAX_CONTACT, lines=False)
    c.done()
    return IntakeContent(statement=statement, contact=contact, subject=case)
