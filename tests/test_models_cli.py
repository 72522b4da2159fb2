"""`mtpkdot list --models` prints every model with its parameter count."""

from __future__ import annotations

from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.models import describe_models
from mtpkdot.registry import BACKBONES, FUSIONS


def test_list_models_prints_each_module_with_its_count():
    result = CliRunner().invoke(app, ["list", "--models"])
    assert result.exit_code == 0, result.output
    rows = describe_models()
    names = [n for n, _ in rows]
    for backbone in BACKBONES.names():
        assert any(n.startswith(f"backbone {backbone}") for n in names)
    for fusion in FUSIONS.names():
        assert any(n.startswith(f"fusion {fusion}") for n in names)
    lines = result.output.splitlines()
    for name, count in rows:
        assert any(name in line and f"{count:,}" in line for line in lines), name
    # torchvision's r3d_18 (33,371,472 parameters) without its 400-class fc
    assert any("r3d_18" in line and "33,166,272" in line for line in lines)
