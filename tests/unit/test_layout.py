"""The layout of the tests and the benchmarks, checked on their source.

- Every test module in ``tests/integration/`` carries the ``integration`` marker at module
  level, and no module in ``tests/unit/`` does: ``pytest -m "not integration" tests/unit``
  then runs every unit test, with nothing but python.
- No file under ``tests/`` or ``bench/`` imports a test module (``test_*``) or a
  ``conftest``: shared code lives in ``tests/support/``, fixtures in the conftest files.
- ``bench/`` uses nothing from ``tests/`` (no import, no ``python -m tests...``), and the
  tests nothing from ``bench/``; what both need lives in ``edgeagent/lab/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
BENCH = ROOT / "bench"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _sources(directory: Path) -> list[Path]:
    files = sorted(directory.rglob("*.py"))
    assert files, f"no Python files under {directory}"
    return files


def _test_modules(directory: Path) -> list[Path]:
    files = sorted(directory.glob("test_*.py"))
    assert files, f"no test modules in {directory}"
    return files


def _module_marks(tree: ast.Module) -> set[str]:
    """Marker names in the module-level ``pytestmark`` (one mark, or a list or tuple)."""
    marks: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
            continue
        items = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
        for item in items:
            mark = item.func if isinstance(item, ast.Call) else item
            text = ast.unparse(mark)
            if text.startswith("pytest.mark."):
                marks.add(text.removeprefix("pytest.mark."))
    return marks


def _imports(tree: ast.Module) -> set[str]:
    """Every module named by an import, and ``module.name`` for each ``from`` import
    (``from tests.integration import test_x`` imports the module ``test_x``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _names_test_module(module: str) -> bool:
    """A test module or conftest of this project: by package (``tests.``, ``bench.``, or
    relative), or imported bare (``import conftest``, ``from test_x import ...``)."""
    parts = module.split(".")
    ours = parts[0] in {"", "tests", "bench"}
    return (parts[0].startswith("test_") or "conftest" in parts) or (
        ours and any(p.startswith("test_") for p in parts)
    )


def _from_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _strings(tree: ast.Module) -> list[str]:
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_integration_module_is_marked_integration() -> None:
    unmarked = [
        path.name
        for path in _test_modules(TESTS / "integration")
        if "integration" not in _module_marks(_tree(path))
    ]
    assert not unmarked, f"add `pytestmark = pytest.mark.integration` to {unmarked}"


def test_no_unit_module_is_marked_integration() -> None:
    marked = [
        path.name
        for path in _test_modules(TESTS / "unit")
        if "integration" in _module_marks(_tree(path))
    ]
    assert not marked, f"move {marked} to tests/integration/"


def test_unit_tests_ask_for_no_external_program() -> None:
    asking = [
        path.name
        for path in _test_modules(TESTS / "unit")
        if any(m.rsplit(".", 1)[-1] == "require_binary" for m in _imports(_tree(path)))
    ]
    assert not asking, f"tests that need a program belong in tests/integration/: {asking}"


def test_nothing_imports_a_test_module_or_conftest() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in [*_sources(TESTS), *_sources(BENCH)]
        for module in _imports(_tree(path))
        if _names_test_module(module)
    }
    assert not offenders, sorted(offenders)


def test_bench_and_tests_use_nothing_of_each_other() -> None:
    from_tests = {
        f"{path.relative_to(ROOT)}: {text}"
        for path in _sources(BENCH)
        for text in [*_imports(_tree(path)), *_strings(_tree(path))]
        if _from_package(text, "tests")
    }
    assert not from_tests, sorted(from_tests)
    from_bench = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in _sources(TESTS)
        for module in _imports(_tree(path))
        if _from_package(module, "bench")
    }
    assert not from_bench, sorted(from_bench)


def test_the_checks_catch_what_they_look_for() -> None:
    tree = ast.parse(
        "import pytest\n"
        "from tests.integration import test_other\n"
        "from tests.conftest import free_port\n"
        "import bench.rpz_bench\n"
        "from aiohttp.test_utils import TestClient\n"
        "from .test_sibling import x\n"
        "pytestmark = [pytest.mark.integration, pytest.mark.netns]\n"
        'argv = ["-m", "tests.support.api"]\n'
    )
    assert _module_marks(tree) == {"integration", "netns"}
    imports = _imports(tree)
    assert {m for m in imports if _names_test_module(m)} == {
        "tests.integration.test_other",
        "tests.conftest",
        "tests.conftest.free_port",
        ".test_sibling",
        ".test_sibling.x",
    }
    assert any(_from_package(m, "bench") for m in imports)
    assert any(_from_package(s, "tests") for s in _strings(tree))
    assert _module_marks(ast.parse("import pytest\n")) == set()
