"""Fuzzing the config loader (edgeagent/config.py) with TOML-shaped data.

Two generators: tables of random shape, and the shipped example config with random keys
replaced, deleted or added (which reaches deep into every section's validation). Each is
written as a TOML file and loaded with :func:`load_config`. Properties: the result is
``Settings`` or :class:`ConfigError`; every problem has a reason and (past the TOML
syntax) a key path; no reason quotes a value from the file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeagent.config import Settings, load_config
from edgeagent.errors import ConfigError
from tests.support.fuzzing import (
    EXAMPLES,
    fuzz_settings,
    outcome,
    toml_keys,
    toml_text,
    toml_values,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = tomllib.loads((ROOT / "config" / "edgeagent.example.toml").read_text())
MARKER = "m4rk3r"  # in every string this test puts into a config; never in a reason
_INDEX = re.compile(r"\[\d+\](?=\.|$)")
_FILE_LEVEL = ("TOML syntax error", "not UTF-8", "cannot read file")


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the repository's ``config/``: the example's relative
    paths (``../blocklists/...``) resolve."""
    base = tmp_path_factory.mktemp("fuzz-config")
    (base / "blocklists").symlink_to(ROOT / "blocklists")
    (base / "config").mkdir()
    return base / "config"


def _load(config_dir: Path, table: dict[str, Any]) -> None:
    path = config_dir / "edgeagent.toml"
    text = toml_text(table)
    assert tomllib.loads(text) == table  # the generator writes what it means
    path.write_text(text, encoding="utf-8")
    got = outcome(lambda: load_config(path), ConfigError)
    if isinstance(got, Settings):
        return
    assert isinstance(got, ConfigError)
    assert got.problems
    for problem in got.problems:
        assert problem.reason
        assert MARKER not in problem.reason, problem
        if not problem.reason.startswith(_FILE_LEVEL):
            assert problem.path, problem
            keys = _INDEX.sub("", problem.path)  # resolvers[0].port -> resolvers.port
            assert tomllib.loads(f"{keys} = 1"), problem  # a TOML key path


_marked_strings = st.text(max_size=12).map(lambda t: f"{MARKER}{t}")
_values = st.one_of(_marked_strings, toml_values)


@fuzz_settings(default=150, long=10_000)
@given(st.dictionaries(st.one_of(toml_keys, st.sampled_from(list(EXAMPLE))), _values, max_size=6))
@example({"": "m4rk3r"})
@example({"feeds": {"a.b": {"kind": "url-list"}}})
def test_tables_of_any_shape(config_dir: Path, table: dict[str, Any]) -> None:
    EXAMPLES.count("config.any-shape")
    _load(config_dir, table)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested table (tables only; arrays are leaves)."""
    out: list[tuple[str, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


_EXAMPLE_PATHS = _paths(EXAMPLE)


def _mutated(mutations: list[tuple[tuple[str, ...], str, str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "config" / "edgeagent.example.toml").read_text())
    for path, op, new_key, value in mutations:
        parent: Any = table
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue  # an earlier mutation removed or replaced the way there
        if op == "replace":
            parent[path[-1]] = value
        elif op == "delete":
            del parent[path[-1]]
        else:
            parent[new_key] = value
    return table


_mutations = st.lists(
    st.tuples(
        st.sampled_from(_EXAMPLE_PATHS),
        st.sampled_from(["replace", "replace", "delete", "add"]),
        toml_keys,
        _values,
    ),
    min_size=1,
    max_size=4,
)


@fuzz_settings(default=200, long=10_000)
@given(_mutations)
def test_mutations_of_the_example_config(
    config_dir: Path, mutations: list[tuple[tuple[str, ...], str, str, Any]]
) -> None:
    EXAMPLES.count("config.example-mutations")
    _load(config_dir, _mutated(mutations))


def test_the_unmutated_example_loads(config_dir: Path) -> None:
    """Keeps the mutation test honest: with no mutation the example is valid here."""
    path = config_dir / "edgeagent.toml"
    path.write_text(toml_text(_mutated([])), encoding="utf-8")
    assert isinstance(load_config(path), Settings)
