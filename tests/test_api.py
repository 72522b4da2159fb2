"""The Python API of ``mtpkdot``: the README's example runs as written (on a tiny config) and does what
the commands do; ``import mtpkdot`` imports neither torch nor pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

import mtpkdot
from helpers import tiny_overrides

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first Python block of the README's "Use it from Python" section."""
    section = README.read_text().split("## Use it from Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_on_a_tiny_config(tmp_path, monkeypatch, capsys):
    real = mtpkdot.load_config
    tiny = tiny_overrides(tmp_path / "data", tmp_path / "store")
    # the example's own overrides, then the ones that shrink it to seconds
    monkeypatch.setattr(mtpkdot, "load_config", lambda path, overrides=(): real(path, [*overrides, *tiny]))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)

    run = tmp_path / "runs" / "api"
    summary = namespace["summary"]
    assert set(summary["fold"]) == {1}
    assert {"none", "mtpkdot"} <= set(summary["method"])
    pd.testing.assert_frame_equal(summary, pd.read_csv(run / "summary.csv"), check_dtype=False)
    assert (
        (run / "student.pt").is_file() and (run / "report.md").is_file() and (run / "report.html").is_file()
    )
    printed = capsys.readouterr().out
    assert printed.count("'probabilities'") == 2  # one prediction per clip


def test_import_mtpkdot_is_light():
    code = "import sys, mtpkdot; print(sorted(m for m in ('torch', 'pandas', 'typer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_build_loss_gives_the_registered_loss_with_its_options():
    import torch

    from mtpkdot.distill.losses import mse_loss

    student, teacher = torch.randn(6, 4), torch.randn(6, 4)
    assert torch.equal(mtpkdot.build_loss("mse")(student, teacher), mse_loss(student, teacher))
    ot = mtpkdot.build_loss("relational_ot", k=3, centroid="similarity")
    assert ot.k == 3 and set(ot(student, teacher)) == {"ot", "centroid"}
