"""RELIABILITY.md shows the figures of the committed snapshot, rendered, never typed.

See :mod:`tests.support.reliability_doc`: after a suite run,
``.venv/bin/python -m tests.support.reliability_doc`` folds ``var/reliability/*.json``
into ``tests/data/reliability-figures.json`` and rewrites the document's figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.figures import read_group
from tests.support.reliability_doc import (
    DOC,
    FORMATS,
    SNAPSHOT,
    TABLES,
    MissingFigure,
    fold,
    referenced,
    render,
)


def test_the_document_is_what_the_snapshot_renders() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert render(doc, read_group(SNAPSHOT)) == doc, (
        "RELIABILITY.md differs from its snapshot: run "
        ".venv/bin/python -m tests.support.reliability_doc"
    )


def test_every_figure_the_suite_can_render_is_in_the_document() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert referenced(doc) == set(FORMATS) | set(TABLES)
    for group, figures in read_group(SNAPSHOT).items():
        for name, figure in figures.items():
            stamps = figure.values() if group == "fuzz" else [figure]
            assert all("at" in stamp for stamp in stamps), f"{group}/{name} has no time"


def test_a_marked_figure_never_measured_fails_the_render() -> None:
    doc = "| x | <!-- figure faults/kill9 -->typed by hand<!-- /figure --> |"
    with pytest.raises(MissingFigure, match="faults/kill9"):
        render(doc, {})
    with pytest.raises(MissingFigure, match="no format"):
        render("<!-- figure faults/unknown -->x<!-- /figure -->", {"faults": {"unknown": {}}})


def test_fold_keeps_the_later_figure_of_each_name(tmp_path: Path) -> None:
    kept = {"faults": {"kill9": {"cycles": 20, "at": "2026-01-02T00:00:00+00:00"}}}
    runs = tmp_path / "reliability"
    runs.mkdir()
    (runs / "faults.json").write_text(
        json.dumps(
            {
                "kill9": {"cycles": 200, "at": "2026-01-01T00:00:00+00:00"},  # older: ignored
                "drift": {"zone_seconds": 5.0, "at": "2026-01-03T00:00:00+00:00"},
            }
        )
    )
    (runs / "hostile-inputs.json").write_text(
        json.dumps(
            {
                "fuzz_examples": {"canon.url": {"long": {"examples": 5000, "at": "2026-01-03"}}},
                "figures": {"authz-matrix": {"requests": 3, "at": "2026-01-03"}},
            }
        )
    )
    folded = fold(kept, runs)
    assert folded["faults"]["kill9"]["cycles"] == 20
    assert folded["faults"]["drift"]["zone_seconds"] == 5.0
    assert folded["fuzz"]["canon.url"]["long"]["examples"] == 5000
    assert folded["hostile"]["authz-matrix"]["requests"] == 3
    assert kept["faults"].keys() == {"kill9"}  # the snapshot given is not changed
