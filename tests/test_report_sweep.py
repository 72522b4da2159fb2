"""Sweep grid parsing, planning (skips, shared store, methods), running and sharing (mtpkdot.pipeline.sweep)
and the sweep report from fake point dirs (mtpkdot.report.sweep)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fakerun import make_fake_run
from helpers import DEMO_CONFIG, assert_valid_png, tiny_overrides
from mtpkdot.pipeline.sweep import grid_points, parse_grid, plan_sweep, run_sweep, share_upstream
from mtpkdot.report.sweep import write_sweep_report
from mtpkdot.report.tables import parse_markdown_tables, parse_mean_std
from mtpkdot.sweep_plan import SweepError


@pytest.fixture
def base_config(tmp_path):
    cfg = {
        "version": 2,
        "name": "tiny",
        "seeds": [0, 1],
        "data": {
            "dataset": "synthetic_biovid",
            "modalities": {"video": {"kind": "video"}, "eda": {"kind": "eda", "backbone": "cnn1d"}},
        },
        "protocol": {"folds": 3},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_parse_grid_maps_keys_and_types_values():
    axes = parse_grid(
        [
            "batch_size=32,64",
            "anchors=10",
            "centroid=none,similarity",
            "student.lr=1e-4,0.5",
            "distill.mtpkdot.debias=true",
        ]
    )
    assert [(a.name, a.key) for a in axes] == [
        ("batch_size", "student.batch_size"),
        ("anchors", "distill.mtpkdot.k"),
        ("centroid", "distill.mtpkdot.centroid"),
        ("student.lr", "student.lr"),
        ("distill.mtpkdot.debias", "distill.mtpkdot.debias"),
    ]
    assert axes[0].values == [32, 64] and all(type(v) is int for v in axes[0].values)
    assert axes[2].values == ["none", "similarity"]
    assert axes[3].values == [1e-4, 0.5] and all(type(v) is float for v in axes[3].values)
    assert axes[4].values == [True]


@pytest.mark.parametrize(
    "items,match",
    [
        (["batch_size"], "key=v1"),
        (["=1,2"], "empty key"),
        (["anchors=10,,20"], "empty value"),
        (["anchors=10,10"], "repeats"),
        (["anchors=10", "distill.mtpkdot.k=20"], "twice"),
        ([], "at least one"),
    ],
)
def test_parse_grid_errors(items, match):
    with pytest.raises(SweepError, match=match):
        parse_grid(items)


def test_grid_points_product_and_names():
    pts = grid_points(parse_grid(["batch_size=32,64", "anchors=10,20"]))
    assert [p.name for p in pts] == [
        "batch_size-32_anchors-10",
        "batch_size-32_anchors-20",
        "batch_size-64_anchors-10",
        "batch_size-64_anchors-20",
    ]
    assert pts[1].values == {"batch_size": 32, "anchors": 20}


def test_plan_applies_values_skips_invalid_points_and_restricts_methods(base_config, tmp_path):
    axes = parse_grid(["batch_size=16,32", "anchors=20", "centroid=none,features"])
    out, plan = plan_sweep(base_config, axes, ["student.epochs=2"], None, tmp_path / "sw")
    assert out == tmp_path / "sw"
    by_name = {p.name: (p, cfg) for p, cfg in plan}
    p, cfg = by_name["batch_size-32_anchors-20_centroid-features"]
    assert p.status == "planned"
    own = cfg.distill.options("mtpkdot")
    assert (cfg.student.batch_size, own.k, own.centroid) == (32, 20, "features")
    assert cfg.student.epochs == 2  # --set applies to every point
    assert cfg.student.methods == ["none", "mtpkdot"]
    assert cfg.data.store == (tmp_path / "sw" / "store").resolve()  # prepared once, shared by the points
    skipped = [p for p, _ in plan if p.status == "skipped"]
    assert {p.name for p in skipped} == {
        "batch_size-16_anchors-20_centroid-none",
        "batch_size-16_anchors-20_centroid-features",
    }
    assert "anchors k=20 >= batch size b=16" in skipped[0].reason
    _, plan = plan_sweep(base_config, axes, [], ["pkdot", "mtpkdot"], tmp_path / "sw")
    assert plan[0][1].student.methods == ["pkdot", "mtpkdot"]


def test_plan_rejects_invalid_value_with_point_name(base_config, tmp_path):
    with pytest.raises(SweepError, match="centroid-bogus"):
        plan_sweep(base_config, parse_grid(["centroid=bogus"]), [], None, tmp_path / "sw")


def fake_runner(calls):
    """Stands in for the pipeline: a fake run whose MT-PKDOT gain grows with b and k, +0.5 with the centroid."""

    def run(cfg, out):
        calls.append(out.name)
        own = cfg.distill.options("mtpkdot")
        b, k, c = cfg.student.batch_size, own.k, own.centroid
        if b == 64 and k == 10 and c == "none":
            raise RuntimeError("boom")
        gain = 1.0 + b / 32 + k / 10 + (0.5 if c != "none" else 0.0)
        make_fake_run(
            out,
            seeds=cfg.seeds,
            folds=cfg.protocol.folds,
            methods=[*cfg.student.methods, "teacher"],
            effects={"mtpkdot": gain},
            noise=0.0,  # exact gains, so the report's numbers can be checked
            fold_dirs=False,
        )

    return run


@pytest.fixture
def sweep_dir(base_config, tmp_path):
    calls: list[str] = []
    out = run_sweep(
        base_config,
        ["batch_size=16,32,64", "anchors=10,20", "centroid=none,similarity"],
        out=tmp_path / "sw",
        runner=fake_runner(calls),
    )
    write_sweep_report(out)
    return out, calls


def test_sweep_runs_points_records_skips_and_failures(sweep_dir):
    out, calls = sweep_dir
    assert len(calls) == 10  # 12 points minus the two with k=20 >= b=16
    plan = json.loads((out / "sweep.json").read_text())
    status = {p["name"]: p["status"] for p in plan["points"]}
    assert status["batch_size-64_anchors-10_centroid-none"] == "failed"
    assert status["batch_size-16_anchors-20_centroid-none"] == "skipped"
    assert sum(s == "done" for s in status.values()) == 9
    md = (out / "sweep_report.md").read_text()
    assert "skipped: anchors k=20 >= batch size b=16" in md
    assert "batch_size-64_anchors-10_centroid-none failed: RuntimeError: boom" in md


def test_sweep_csv_holds_settings_and_metric(sweep_dir):
    out, _ = sweep_dir
    df = pd.read_csv(out / "sweep.csv")
    for col in (
        "point",
        "batch_size",
        "anchors",
        "centroid",
        "method",
        "metric",
        "mean",
        "std",
        "n",
        "status",
    ):
        assert col in df.columns
    mt = df[(df["method"] == "mtpkdot")].set_index("point")
    none = df[(df["method"] == "none")].set_index("point")
    # with noise 0, the MT-PKDOT minus lower-bound gap is exactly the injected gain
    for point, r in mt.iterrows():
        gain = 1.0 + r["batch_size"] / 32 + r["anchors"] / 10 + (0.5 if r["centroid"] != "none" else 0.0)
        assert r["mean"] - none.loc[point, "mean"] == pytest.approx(gain)
        assert r["n"] == 6
    assert set(df.loc[df["status"] == "skipped", "anchors"]) == {20}


def test_sweep_report_figure_and_centroid_table(sweep_dir):

    out, _ = sweep_dir
    assert_valid_png(out / "figures" / "fig7_sweep.png")
    md = (out / "sweep_report.md").read_text()
    html = (out / "sweep_report.html").read_text()
    assert html.count("data:image/png;base64,") == 1
    table6 = next(t for t in parse_markdown_tables(md) if t and "centroid=none" in t[0])
    df = pd.read_csv(out / "sweep.csv")
    for row in table6:
        b, k = int(row["batch_size"]), int(row["anchors"])
        for c in ("none", "similarity"):
            cell = row[f"centroid={c}"]
            sel = df[(df.batch_size == b) & (df.anchors == k) & (df.centroid == c) & (df.method == "mtpkdot")]
            if sel.empty:  # the failed point
                assert cell == "—"
            else:
                assert parse_mean_std(cell)[0] == pytest.approx(sel["mean"].iloc[0], abs=0.005)
    assert "MT-PKDOT with centroid `similarity` is above centroid `none`" in md
    # every (seed, fold) pair differs by exactly +0.5: the corrected t-test has no spread to work with
    # and says so, next to the mean paired difference (the run reports' test, not a Wilcoxon over pairs)
    assert "similarity - none: Δ [95 % CI], corrected t-test" in table6[0]
    assert all(
        r["similarity - none: Δ [95 % CI], corrected t-test"].startswith("+0.50 ")
        for r in table6
        if r["centroid=none"] != "—"
    )
    assert "all differences equal (n=6)" in md and "corrected resampled t-test" in md


def test_report_command_on_a_sweep_folder(sweep_dir):
    from mtpkdot.cli import app

    out, _ = sweep_dir
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert "sweep_report.md" in res.output


def _file_stamps(folder):
    """Every file of every stage of the grid points -> (mtime_ns, content): untouched means equal.
    (Not the fold's split.csv: written on every run, a record rather than work.)"""
    return {
        p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.glob("*/seed*/fold*/*/**/*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_real_sweep_rerun_resumes_finished_points_and_stages(tmp_path):
    """The real pipeline, twice: the rerun redoes exactly the one stage that was lost, nothing else."""
    from mtpkdot.cli import app

    sets = tiny_overrides(tmp_path / "data", tmp_path / "store")
    out = tmp_path / "sw"
    args = ["sweep", str(DEMO_CONFIG), "--grid", "anchors=2,3", "--out", str(out)]
    args += ["--methods", "none,mtpkdot"] + [a for s in sets + ["device=cpu"] for a in ("--set", s)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    points = sorted(p.parent.name for p in out.glob("*/summary.csv"))
    assert points == ["anchors-2", "anchors-3"]
    summaries = {p: (out / p / "summary.csv").read_text() for p in points}
    lost = out / "anchors-3" / "seed0" / "fold2" / "student_mtpkdot"
    assert (lost / "done").is_file()
    shutil.rmtree(lost)  # as if the sweep had been killed during this stage
    before = _file_stamps(out)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    after = _file_stamps(out)
    redone = sorted(str(k) for k in after if k not in before)
    assert redone and all(k.startswith("anchors-3/seed0/fold2/student_mtpkdot/") for k in redone)
    changed = sorted(str(k) for k in before if after.get(k) != before[k])
    assert changed == []  # every finished stage of both points left as it was
    assert {p: (out / p / "summary.csv").read_text() for p in points} == summaries


def test_cli_dry_run_lists_points(base_config, tmp_path):
    from mtpkdot.cli import app

    res = CliRunner().invoke(
        app,
        [
            "sweep",
            str(base_config),
            "--grid",
            "batch_size=8,32",
            "--grid",
            "anchors=10",
            "--out",
            str(tmp_path / "sw"),
            "--dry-run",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "batch_size-8_anchors-10  SKIP" in res.output
    assert "batch_size-32_anchors-10\n" in res.output
    res = CliRunner().invoke(app, ["sweep", str(base_config), "--grid", "anchors"])
    assert res.exit_code == 2 and "key=v1" in res.output


def test_sweep_report_without_results(tmp_path, base_config):
    out = tmp_path / "sw"
    run_sweep(base_config, ["anchors=5,10"], out=out, runner=lambda cfg, d: None)
    md = write_sweep_report(out).read_text()
    assert "no grid point has results yet" in md


def test_share_upstream_links_only_finished_teacher_side_stages(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    for stage, done in [
        ("backbone_video", True),
        ("features", True),
        ("teacher", True),
        ("tnet", True),
        ("adapters", False),
        ("student_mtpkdot", True),
    ]:
        d = src / "seed0" / "fold1" / stage
        d.mkdir(parents=True)
        (d / "best.pt").write_bytes(b"w")
        if done:
            (d / "done").write_text("h\n")
    assert share_upstream(src, dst) == 4
    linked = sorted(p.name for p in (dst / "seed0" / "fold1").iterdir())
    assert linked == ["backbone_video", "features", "teacher", "tnet"]
    a = src / "seed0" / "fold1" / "teacher" / "best.pt"
    b = dst / "seed0" / "fold1" / "teacher" / "best.pt"
    assert a.stat().st_ino == b.stat().st_ino
    assert share_upstream(src, dst) == 0  # existing stages are left alone


def test_share_upstream_follows_the_stage_graph(tmp_path):
    """A grid over teacher settings shares what the teacher does not feed (backbones, features, T-Net);
    a grid over a section no stage declares shares nothing."""
    src = tmp_path / "a"
    for stage in ["backbone_video", "features", "teacher", "tnet", "adapters", "student_none"]:
        d = src / "seed0" / "fold1" / stage
        d.mkdir(parents=True)
        (d / "done").write_text("h\n")
    assert share_upstream(src, tmp_path / "b", ["teacher"]) == 3
    assert sorted(p.name for p in (tmp_path / "b" / "seed0" / "fold1").iterdir()) == [
        "backbone_video",
        "features",
        "tnet",
    ]
    assert share_upstream(src, tmp_path / "c", ["amp"]) == 0
    assert share_upstream(src, tmp_path / "d", ["data"]) == 0
