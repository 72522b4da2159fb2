"""The epoch each stage selected: its validation metric beside the test metric, and its mark on the curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fakerun import make_fake_run
from mtpkdot import layout
from mtpkdot.layout import RunLayout
from mtpkdot.report import write_report
from mtpkdot.report.tables import parse_markdown_tables

SELECTED = 2  # of the fake's 4 epochs: not the last one, so taking the last epoch shows


def add_test_jsons(path, best_epoch: int = SELECTED) -> None:
    """What every trained stage writes beside its metrics.csv (the fake run has none): ``test.json``
    with the selected epoch; the lower bound's points at the stage-1 model it reuses."""
    summary = pd.read_csv(RunLayout(path).summary)
    for fd in RunLayout(path).fold_dirs():
        for stage_dir in fd.path.iterdir():
            if (stage_dir / layout.METRICS).is_file():
                record = {"stage": stage_dir.name, "seed": fd.seed, "fold": fd.fold, "best_epoch": best_epoch}
                (stage_dir / layout.TEST).write_text(json.dumps(record))
        lb = summary[
            (summary.method == "lower_bound") & (summary.seed == fd.seed) & (summary.fold == fd.fold)
        ]
        source = layout.backbone_stage("video")
        record = {
            "stage": "lower_bound",
            "best_epoch": best_epoch,
            "source": source,
            "accuracy": lb.accuracy.iloc[0],
        }
        (fd.stage(layout.LOWER_BOUND)).mkdir(exist_ok=True)
        (fd.stage(layout.LOWER_BOUND) / layout.TEST).write_text(json.dumps(record))


def _stage_of(method: str) -> str:
    if method == "lower_bound":
        return layout.backbone_stage("video")  # the source its test.json names
    return method if method == "teacher" else layout.student_stage(method)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = make_fake_run(
        tmp_path_factory.mktemp("runs") / "sel", seeds=(0,), folds=2, snapshots=False, tsne=False
    )
    add_test_jsons(path)
    write_report(path)
    return path


def test_validation_and_test_metric_side_by_side(run):
    md = (run / "report.md").read_text()
    summary = pd.read_csv(run / "summary.csv")
    table = next(t for t in parse_markdown_tables(md) if t and "Validation (selected epoch)" in t[0])
    assert [r["Method"] for r in table] == list(dict.fromkeys(summary["method"]))
    for r in table:
        vals = []
        for fd in RunLayout(run).fold_dirs():
            curves = pd.read_csv(fd.stage(_stage_of(r["Method"])) / layout.METRICS)
            vals.append(float(curves.loc[curves.epoch == SELECTED, "val_accuracy"].iloc[0]))
        test = summary.loc[summary.method == r["Method"], "accuracy"].mean()
        assert float(r["Validation (selected epoch)"]) == pytest.approx(np.mean(vals), abs=0.005)
        assert float(r["Test"]) == pytest.approx(test, abs=0.005)
        assert float(r["Gap"]) == pytest.approx(np.mean(vals) - test, abs=0.011)
        assert r["n"] == "2"
    assert "Each fold selected on 1 subject, 3 validation samples." in md


def test_every_curve_figure_names_its_selected_epochs(run):
    md = (run / "report.md").read_text()
    captions = [line for line in md.splitlines() if line.startswith("*Training curves of the")]
    assert len(captions) == 5
    for caption in captions:
        assert "Dashed line: the epoch selected on validation, whose checkpoint was tested (" in caption
    assert "student_none 2, student_cosine 2" in md and "(teacher 2)" in md


def test_a_stage_without_a_selected_epoch_is_named(tmp_path):
    path = make_fake_run(tmp_path / "nosel", seeds=(0,), folds=2, snapshots=False, tsne=False)
    write_report(path)
    md = (path / "report.md").read_text()
    assert "No selected epoch recorded (no test.json with best_epoch) for teacher." in md
    assert "validation-test gap not shown" in md


def test_the_selected_epoch_is_a_dashed_line_on_both_panels_of_its_stage():
    from mtpkdot.report.figures import curves_figure

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "epoch": np.arange(1, 6),
            "train_task": rng.uniform(0.1, 1, 5),
            "val_accuracy": rng.uniform(50, 80, 5),
        }
    )
    fig = curves_figure({"teacher": frame, "tnet": frame}, "t", {"teacher": 3})

    def vertical_at(ax) -> list[float]:
        return [float(line.get_xdata()[0]) for line in ax.get_lines() if len(set(line.get_xdata())) == 1]

    teacher_loss, teacher_val, tnet_loss, tnet_val = fig.axes[:4]
    assert vertical_at(teacher_loss) == [3.0] and vertical_at(teacher_val) == [3.0]
    assert vertical_at(tnet_loss) == [] and vertical_at(tnet_val) == []
    assert "selected: epoch 3" in [t.get_text() for t in teacher_val.get_legend().get_texts()]
