"""The test suite itself: shared code lives in helper modules, never in another test file.

A test file imported from another one is imported twice, under two names when reached both as
``tests.test_x`` and ``test_x`` (its module fixtures run twice), and plain ``pytest`` cannot import
``tests.`` at all (the repository root is not on its path): it fails to collect the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TEST_FILES = sorted(TESTS.glob("test_*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_test_file_imports_another_test_file():
    bad = {
        path.name: sorted(
            n for n in imported_modules(path) if n.split(".")[0] == "tests" or n.startswith("test_")
        )
        for path in TEST_FILES
    }
    bad = {name: mods for name, mods in bad.items() if mods}
    assert not bad, f"test files importing test files (move what they share to tests/helpers.py): {bad}"


def test_oracles_are_imported_not_skipped():
    # POT, torchmetrics, TensorBoard and OpenCV are declared dependencies ([test] or the package's own): a
    # missing one is a broken install, and importorskip would report it as a pass
    calls = {
        path.name
        for path in TEST_FILES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "importorskip"
    }
    assert not calls, f"pytest.importorskip in {sorted(calls)}"


def test_ci_runs_the_checks_readme_lists():
    """Every command of README's Development block is one .ci/run runs (pytest selections through its
    run_selection wrapper, with the same arguments)."""
    readme = (TESTS.parent / "README.md").read_text()
    block = readme.split("## Development", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [
        part.strip()
        for line in block.splitlines()
        if line.split("#", 1)[0].strip()
        for part in line.split("#", 1)[0].split("&&")
    ]
    ci = (TESTS.parent / ".ci" / "run").read_text()
    run_lines = [line.split("||")[0].strip() for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert commands, "README's Development block lists no command"
    for command in commands:
        if command.startswith("python -m pytest "):
            args = command.removeprefix("python -m pytest ")
            assert any(
                line.startswith("run_selection ") and line.endswith(f" {args}") for line in run_lines
            ), command
        else:
            assert command in run_lines, f"README says CI runs `{command}`; .ci/run does not"
