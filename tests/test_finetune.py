"""``student.finetune_backbone: true`` with every method and every fusion, for classification and
regression, and for the physiological student (docs/pipeline.md, "Fine-tuned student").

One tiny run per (task, fusion) trains every applicable method's student end to end (slow selection:
40 to 80 s each on a shared 2-core machine); each student's prevalent backbone must start from the fold's
stage-1 backbone and move, and its test metric must be a number.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import CONFIGS, shrink, synth_biovid_tiny
from mtpkdot.cli import app
from mtpkdot.distill.method import applicable_methods

FUSION_KWARGS = {
    "concat": "{}",
    "jca": "{k: 4, hidden: 16}",
    "mmt": "{d_model: 16, heads: 2, ff_dim: 16, layers: 1, dropout: 0.0}",
}
# (config, task kind, prevalent modality): Biovid-like video student, Affwild2-like regression, EMG student
LAYOUTS = {
    "biovid_b": ("classification", "video"),
    "affwild2": ("regression", "video"),
    "biovid_b_physio_student": ("classification", "emg"),
}
CASES = [(c, f) for c in ("biovid_b", "affwild2") for f in FUSION_KWARGS] + [
    ("biovid_b_physio_student", "mmt")
]


def _data(name: str, root: Path) -> list[str]:
    root.mkdir()
    if name == "affwild2":
        from mtpkdot.config import SynthConfig
        from mtpkdot.data import synth_affwild2

        synth_affwild2(root, SynthConfig(subjects=4, size=24, duration=3.0))
    else:
        synth_biovid_tiny(root, "B", False)
    return [f"data.root={root}"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fusion"), CASES)
def test_every_method_finetunes_its_backbone(name, fusion, tmp_path):
    kind, prevalent = LAYOUTS[name]
    methods = applicable_methods(kind)
    sets = [s for s in shrink(name) if not s.startswith(("teacher.fusion_kwargs=", "student.methods="))]
    sets += _data(name, tmp_path / "data")
    sets += [
        f"teacher.fusion={fusion}",
        f"teacher.fusion_kwargs={FUSION_KWARGS[fusion]}",
        "student.finetune_backbone=true",
        f"student.methods=[{', '.join(methods)}]",
    ]
    if fusion == "jca" and name != "affwild2":
        sets.append("data.sequence_length=1")
    run = tmp_path / "run"
    args = ["run", str(CONFIGS / f"{name}.yaml"), "--out", str(run), "--device", "cpu", "--folds", "1"]
    res = CliRunner().invoke(app, [*args, *[a for s in sets for a in ("--set", s)]])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output

    summary = pd.read_csv(run / "summary.csv")
    metric = "ccc_mean" if kind == "regression" else "accuracy"
    students = summary[~summary["method"].isin(["teacher", "lower_bound"])]
    assert sorted(students["method"]) == sorted(methods)
    assert students[metric].notna().all()
    fold = run / "seed0" / "fold1"
    start = torch.load(fold / f"backbone_{prevalent}" / "best.pt", weights_only=True)["modules"]["model"]
    prefix = f"backbones.{prevalent}."
    for m in methods:
        state = torch.load(fold / f"student_{m}" / "best.pt", weights_only=True)["modules"]["student"]
        keys = [k for k in state if k.startswith(prefix) and k.endswith("weight")]
        assert keys, f"{m}: the student holds no {prevalent} backbone"
        moved = [not torch.equal(state[k], start["backbone." + k[len(prefix) :]]) for k in keys]
        assert any(moved), f"{m}: the {prevalent} backbone did not train"


@pytest.mark.parametrize(("finetune", "crossfit"), [(False, 0), (True, 3)])
def test_report_states_the_student_setting(tmp_path, finetune, crossfit):
    import yaml

    from fakerun import make_fake_run
    from mtpkdot.layout import RunLayout
    from mtpkdot.report import write_report

    path = make_fake_run(tmp_path / "exp", seeds=(0,), folds=2, fold_dirs=False)
    cfg = yaml.safe_load(RunLayout(path).config.read_text())
    cfg["student"]["finetune_backbone"] = finetune
    cfg["features"] = {"crossfit": crossfit}
    RunLayout(path).config.write_text(yaml.safe_dump(cfg))
    write_report(path)
    line = next(ln for ln in (path / "report.md").read_text().splitlines() if "Student backbone:" in ln)
    assert ("fine-tuned end to end" in line) == finetune and ("frozen" in line) != finetune
    assert ("cross-fitted, K = 3" in line) == bool(crossfit), line
