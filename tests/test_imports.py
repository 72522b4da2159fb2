"""Imports in one direction (the layer contract is pyproject.toml's [tool.importlinter], run by CI) and no
module importing a private name of another package, which import-linter cannot see (names, not modules)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mtpkdot"


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # mtpkdot.<package or bottom module>


def private_imports(root: Path = SRC) -> list[str]:
    """``file: from X import _name`` for every import of an underscore name from another package."""
    out = []
    for path in sorted(root.rglob("*.py")):
        module = "mtpkdot." + ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("mtpkdot"):
                continue
            if _package(node.module) == _package(module):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    out.append(f"{path.relative_to(root)}: from {node.module} import {alias.name}")
    return out


def test_no_module_imports_a_private_name_of_another_package():
    assert private_imports() == []


def test_the_check_sees_a_private_import(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "bundle.py").write_text("from mtpkdot.data.prepare import _video\n")
    assert private_imports(tmp_path) == ["pipeline/bundle.py: from mtpkdot.data.prepare import _video"]


def test_no_module_imports_click():
    """click is no dependency (recent typer carries its own copy): a wheel installed alone lacks it."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "mtpkdot"
    found = [
        str(p) for p in src.rglob("*.py") if re.search(r"^\s*(import|from) click\b", p.read_text(), re.M)
    ]
    assert not found, found
