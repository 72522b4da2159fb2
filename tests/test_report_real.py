"""A report built from a real (tiny) pipeline run: the run-dir contract holds between pipeline and report."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import assert_valid_png
from mtpkdot.report import write_report
from mtpkdot.report.tables import parse_markdown_tables, parse_mean_std

TINY = [
    "data.synthetic.subjects=6",
    "data.synthetic.samples_per_class=3",
    "data.synthetic.size=16",
    "data.synthetic.duration=2.0",
    "data.modalities.eda.window=[0.0, 2.0]",
    "data.modalities.video.size=16",
    "data.modalities.video.segments=4",
    "backbones.video.epochs=1",
    "backbones.eda.epochs=1",
    "teacher.epochs=2",
    "adapters.epochs=2",
    "tnet.epochs=2",
    "student.epochs=3",
    "student.batch_size=8",
    "distill.pkdot.k=3",
    "distill.mtpkdot.k=3",
    "protocol.folds=2",
    "student.methods=[none, pkdot, mtpkdot]",
    "num_threads=1",
    "device=cpu",
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from mtpkdot.pipeline.demo import demo_config
    from mtpkdot.pipeline.experiment import run_experiment

    out = tmp_path_factory.mktemp("real") / "tiny"
    cfg = demo_config(out, TINY)
    run_experiment(cfg, out, progress=False)
    write_report(out)
    return out


def test_the_fake_run_fixture_matches_a_real_run(real_run, tmp_path):
    """tests/fakerun.py must not drift from what the pipeline writes: fold numbering, summary columns,
    stage folders and the metrics.csv columns the report reads."""
    from fakerun import make_fake_run
    from mtpkdot.layout import METRICS, RunLayout

    real = RunLayout(real_run)
    fake = RunLayout(
        make_fake_run(tmp_path / "fake", seeds=(0,), folds=2, methods=("none", "pkdot", "mtpkdot", "teacher"))
    )
    assert [(f.seed, f.fold) for f in fake.fold_dirs()] == [(f.seed, f.fold) for f in real.fold_dirs()]
    real_summary, fake_summary = pd.read_csv(real.summary), pd.read_csv(fake.summary)
    assert list(fake_summary.columns) == list(real_summary.columns)
    assert sorted(fake_summary["fold"].unique()) == sorted(real_summary["fold"].unique())
    real_fold, fake_fold = real.fold_dirs()[0], fake.fold_dirs()[0]
    for stage_dir in sorted(p for p in fake_fold.path.iterdir() if (p / METRICS).is_file()):
        real_metrics = real_fold.stage(stage_dir.name) / METRICS
        assert real_metrics.is_file(), f"the fake writes {stage_dir.name}, the pipeline does not"
        fake_df, real_df = pd.read_csv(stage_dir / METRICS), pd.read_csv(real_metrics)
        missing = set(fake_df.columns) - set(real_df.columns)
        assert not missing, f"{stage_dir.name}: columns the pipeline never writes: {sorted(missing)}"
        # students log the untrained model as epoch 0 (validation only), the other stages start at 1
        assert fake_df["epoch"].iloc[0] == real_df["epoch"].iloc[0], stage_dir.name
    # the run-level files and the split files: same names, same columns
    run_files = {
        p.name for p in real.root.iterdir() if p.is_file() and p.suffix in (".yaml", ".hash", ".csv", ".json")
    }
    run_files -= {"results.csv", "store_meta.json"}  # the report's output; the store's copy
    assert run_files <= {p.name for p in fake.root.iterdir()}
    for name in ("split.csv",):
        assert list(pd.read_csv(fake_fold.path / name).columns) == list(
            pd.read_csv(real_fold.path / name).columns
        )
    real_folds, fake_folds = pd.read_csv(real.folds_files()[0]), pd.read_csv(fake.folds_files()[0])
    assert list(fake_folds.columns) == list(real_folds.columns)


def test_report_from_a_real_tiny_run(real_run):

    md = (real_run / "report.md").read_text()
    summary = pd.read_csv(real_run / "summary.csv")
    assert set(summary["method"]) == {"lower_bound", "none", "pkdot", "mtpkdot", "teacher"}
    table = next(t for t in parse_markdown_tables(md) if t and "Description" in t[0])
    for row in table:
        values = summary.loc[summary["method"] == row["Method"], "accuracy"]
        mean, _ = parse_mean_std(row["Accuracy (%)"])
        assert mean == pytest.approx(values.mean(), abs=0.005)
        assert int(row["n"]) == len(values)
    # the pipeline writes what the figures need: none of them may be skipped
    for skipped in (
        "Fig. 4 skipped",
        "Fig. 5 skipped",
        "Fig. 6 skipped",
        "training curves skipped",
        "failed",
    ):
        assert skipped not in md
    names = {p.name for p in (real_run / "figures").glob("*.png")}
    assert {"fig4_similarity.png", "fig5_tsne.png", "fig6_selection.png", "curves_students.png"} <= names
    for p in (real_run / "figures").glob("*.png"):
        assert_valid_png(p)
    assert (real_run / "report.html").read_text().count("data:image/png;base64,") == len(names)


@pytest.mark.slow
def test_sweep_cli_with_the_real_pipeline(tmp_path):
    """Two grid points through `mtpkdot sweep` and the pipeline's run_experiment (about a minute)."""
    import yaml
    from typer.testing import CliRunner

    from mtpkdot.cli import app
    from mtpkdot.config import config_to_dict
    from mtpkdot.pipeline.demo import demo_config

    cfg = demo_config(tmp_path, TINY)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    out = tmp_path / "sw"
    args = ["sweep", str(config), "--grid", "anchors=2,3", "--grid", "batch_size=4,8", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "sweep.csv")
    done = df[df["status"] == "done"]
    assert set(done["point"]) == {
        "anchors-2_batch_size-4",
        "anchors-2_batch_size-8",
        "anchors-3_batch_size-4",
        "anchors-3_batch_size-8",
    }
    assert set(done["method"]) == {"lower_bound", "none", "mtpkdot", "teacher"}
    assert (out / "anchors-2_batch_size-8" / "report.md").is_file()
    assert (out / "figures" / "fig7_sweep.png").is_file()
