"""End to end on a tiny synthetic Biovid (real mp4 + CSV files): the CLI, resume, determinism,
config mismatch, the run-directory layout the report relies on, export and predict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import fold_test_indices, invoke, run_student_outputs, set_args, tiny_overrides
from mtpkdot.cli import app
from mtpkdot.engine.loop import INTERRUPT_ENV

METHODS = ["none", "cosine", "mse", "kl", "pkdot", "mtpkdot"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished tiny demo run (all six methods) plus the shared data and store."""
    base = tmp_path_factory.mktemp("tiny")
    sets = tiny_overrides(base / "data", base / "store")
    run = base / "run_a"
    res = invoke(["demo", "--out", str(run), "--device", "cpu"] + [a for s in sets for a in ("--set", s)])
    assert res.exit_code == 0, res.output
    return {"base": base, "sets": sets, "run": run, "output": res.output}


def test_demo_writes_the_run_directory_layout(tiny):
    run = tiny["run"]
    out = tiny["output"]
    assert "teacher" in out and "mtpkdot" in out and "summary.csv" in out
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.columns) == ["seed", "fold", "method", "accuracy", "n_test"]
    assert sorted(set(summary["method"])) == sorted(METHODS + ["teacher", "lower_bound"])
    assert len(summary) == 2 * 8  # 2 folds x (lower bound + 6 students + teacher)
    assert ((summary["accuracy"] >= 0) & (summary["accuracy"] <= 100)).all()
    for name in ("config.yaml", "folds_seed0.csv", "folds_seed0.meta.json"):
        assert (run / name).is_file()
    fold = run / "seed0" / "fold1"
    split = pd.read_csv(fold / "split.csv", dtype=str)
    roles = split.groupby("subject_id")["role"].nunique()
    assert (roles == 1).all(), "a subject appears in two roles"
    # each fold's test set is scored whole (no drop_last): n_test equals the test samples
    assert summary.loc[summary["fold"] == 1, "n_test"].iloc[0] == (split["role"] == "test").sum()
    for stage in ["backbone_video", "backbone_eda", "teacher", "tnet", "adapters"] + [
        f"student_{m}" for m in METHODS
    ]:
        for f in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "test.json", "done"):
            assert (fold / stage / f).is_file(), f"{stage}/{f}"
    assert (fold / "features" / "video.npy").is_file() and (fold / "features" / "done").is_file()
    n = len(pd.read_csv(run / "folds_seed0.csv"))
    assert np.load(fold / "features" / "video.npy").shape == (n, 16)
    metrics = pd.read_csv(fold / "student_mtpkdot" / "metrics.csv")
    for col in (
        "epoch",
        "lr",
        "train_task",
        "train_ot",
        "train_centroid",
        "train_total",
        "val_accuracy",
        "sel_joint",
        "sel_video",
        "sel_eda",
    ):
        assert col in metrics.columns, col
    # epoch 0: the student before any step, validated, with no training columns
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["val_accuracy"].notna().all() and metrics.loc[0, ["train_total", "sel_joint"]].isna().all()
    per_epoch = metrics.loc[1:, ["sel_joint", "sel_video", "sel_eda"]].sum(axis=1)
    assert (per_epoch > 0).all()  # every training batch selected exactly one teacher
    assert pd.read_csv(fold / "teacher" / "metrics.csv")["epoch"].tolist() == [1, 2]  # students only
    snaps = np.load(fold / "student_mtpkdot" / "snapshots.npz")
    assert {"teacher", "student_0", "student_50", "student_75", "student_100"} <= set(snaps.files)
    tsne = np.load(fold / "adapters" / "tsne.npz")
    for key in (
        "before_video",
        "after_video",
        "before_eda",
        "after_eda",
        "before_joint",
        "after_joint",
        "labels",
    ):
        assert key in tsne.files
    n_val = (split["role"] == "val").sum()
    assert tsne["labels"].shape == (min(n_val, 500),)


def test_resume_after_interrupt_gives_identical_results(tiny, monkeypatch):
    """A second run from scratch with the same seed (determinism) interrupted in a student stage and
    resumed must reproduce summary.csv of the first run exactly."""
    run_b = tiny["base"] / "run_b"
    args = ["demo", "--out", str(run_b), "--device", "cpu"] + set_args(tiny["sets"])
    monkeypatch.setenv(INTERRUPT_ENV, "student_pkdot:1")
    with pytest.raises(Exception, match="interrupted"):
        invoke(args)
    stage = run_b / "seed0" / "fold1" / "student_pkdot"
    assert (stage / "last.pt").is_file() and not (stage / "done").is_file()
    monkeypatch.delenv(INTERRUPT_ENV)
    res = invoke(args)
    assert res.exit_code == 0, res.output
    a = (tiny["run"] / "summary.csv").read_text()
    b = (run_b / "summary.csv").read_text()
    assert a == b
    ma = (tiny["run"] / "seed0" / "fold1" / "student_pkdot" / "metrics.csv").read_text()
    assert ma == (stage / "metrics.csv").read_text()


def test_changed_config_on_existing_run_is_refused(tiny):
    sets = tiny["sets"] + ["student.lr=0.5"]
    res = invoke(["demo", "--out", str(tiny["run"]), "--device", "cpu"] + set_args(sets))
    assert res.exit_code == 2
    assert "student.lr" in res.output and "config.yaml" in res.output and "--out" in res.output


def test_export_and_predict_use_the_prevalent_modality_only(tiny, tmp_path):
    import torch

    bundle = tmp_path / "student.pt"
    res = invoke(["export", str(tiny["run"]), "--fold", "1", "--method", "mtpkdot", "--out", str(bundle)])
    assert res.exit_code == 0, res.output
    content = torch.load(bundle, weights_only=True)
    assert set(content["backbones"]) == {"video"}  # no privileged backbone
    assert "teacher" not in content and "adapters" not in content
    # a prepared sample from the store, and a raw video file from the synthetic dataset
    from mtpkdot.data.store import Store

    store = Store(tiny["base"] / "store")
    sample = tmp_path / "sample.npy"
    np.save(sample, np.asarray(store.array("video")[0]))
    video = sorted((tiny["base"] / "data" / "video").rglob("*.mp4"))[0]
    res = invoke(["predict", str(bundle), str(sample), str(video)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(row["probabilities"]) == {"BL1", "PA4"}
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-5
    # the bundle reproduces the run's student on the fold's test samples
    from mtpkdot.pipeline.bundle import load_bundle

    model = load_bundle(bundle)
    idx = fold_test_indices(tiny["run"], 1, store)
    out = model({"video": np.asarray(store.array("video")[idx])})
    want = run_student_outputs(tiny["run"], 1, "mtpkdot", model, idx)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    # ... and those are the predictions the run scored: same test accuracy as its test.json
    test = json.loads((tiny["run"] / "seed0" / "fold1" / "student_mtpkdot" / "test.json").read_text())
    labels = torch.as_tensor(np.asarray(store.labels)[idx])
    assert 100.0 * (out.argmax(-1) == labels).float().mean().item() == pytest.approx(test["accuracy"])


def test_export_into_a_missing_folder_is_refused_and_creates_no_folder(tiny, tmp_path):
    out = tmp_path / "no" / "such" / "student.pt"
    args = ["export", str(tiny["run"]), "--fold", "1", "--method", "mtpkdot", "--out"]
    res = invoke([*args, str(out)])
    assert res.exit_code == 2 and f"the folder {out.parent} does not exist" in res.output, res.output
    assert not (tmp_path / "no").exists()
    res = invoke([*args, str(tmp_path)])  # a folder, not a file name
    assert res.exit_code == 2 and "is a folder" in res.output and "Traceback" not in res.output


def test_export_works_after_the_store_is_deleted(tiny, tmp_path):
    import shutil

    import torch
    import yaml

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    assert (run / "store_meta.json").is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["store"] = str(tmp_path / "deleted_store")  # the prepared data is gone
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    bundle = tmp_path / "student.pt"
    res = invoke(["export", str(run), "--fold", "1", "--method", "mtpkdot", "--out", str(bundle)])
    assert res.exit_code == 0, res.output
    want = tmp_path / "from_store.pt"
    assert (
        invoke(
            ["export", str(tiny["run"]), "--fold", "1", "--method", "mtpkdot", "--out", str(want)]
        ).exit_code
        == 0
    )
    got, ref = torch.load(bundle, weights_only=True), torch.load(want, weights_only=True)
    assert got["task"] == ref["task"] and got["item_shapes"] == ref["item_shapes"]
    # without the copy either, the error names both places
    (run / "store_meta.json").unlink()
    res = invoke(["export", str(run), "--fold", "1", "--method", "mtpkdot", "--out", str(tmp_path / "x.pt")])
    assert res.exit_code != 0 and "store_meta.json" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.pt").exists()


def test_stale_feature_cache_is_detected(tiny, tmp_path):
    """A backbone checkpoint that no longer matches the cached features stops the run, naming the cache;
    deleting the cache, as the message says, recomputes it and retrains what was built on it.

    The markers are made those of a run before they recorded their inputs (the stage's config hash
    alone): a run today notices the changed backbone from the marker and recomputes the cache itself.
    """
    import shutil

    import torch

    from mtpkdot.engine.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    best = run / "seed0" / "fold1" / "backbone_video" / "best.pt"
    state = load_checkpoint(best)
    weights = state["modules"]["model"]
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = weights[key] + 1.0  # as if the backbone had been retrained after the cache was made
    save_checkpoint(
        best, {k: v for k, v in state.items() if k not in ("config", "config_hash")}, state["config"]
    )
    for done in (run / "seed0").glob("fold*/*/done"):
        done.write_text(done.read_text().splitlines()[0] + "\n")
    teacher = run / "seed0" / "fold1" / "teacher" / "best.pt"
    stamp = teacher.stat().st_mtime_ns
    args = ["demo", "--out", str(run), "--device", "cpu"] + set_args(tiny["sets"])
    with pytest.raises(
        RuntimeError, match=r"feature cache of 'video' was computed with another backbone"
    ) as err:
        invoke(args)
    assert teacher.stat().st_mtime_ns == stamp  # nothing downstream ran on the stale features
    assert torch.equal(load_checkpoint(best)["modules"]["model"][key], weights[key])
    features = run / "seed0" / "fold1" / "features"
    assert f"delete {features} to recompute it" in str(err.value)
    shutil.rmtree(features)
    assert invoke(args).exit_code == 0
    assert teacher.stat().st_mtime_ns != stamp  # the teacher trained again on the recomputed features
    assert torch.equal(load_checkpoint(best)["modules"]["model"][key], weights[key])


def test_evaluate_rebuilds_the_summary(tiny):
    summary = tiny["run"] / "summary.csv"
    before = summary.read_text()
    summary.unlink()
    res = invoke(["evaluate", str(tiny["run"])])
    assert res.exit_code == 0 and "mtpkdot" in res.output
    assert summary.read_text() == before


def test_run_help_lists_the_options():
    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0
    for opt in ("--set", "--folds", "--methods", "--seeds", "--out", "--device", "--amp"):
        assert opt in res.output
    assert os.environ.get(INTERRUPT_ENV) is None


def test_finetune_backbone_trains_the_student_end_to_end(tiny):
    """student.finetune_backbone: the student's video backbone starts from the fold's backbone and moves."""
    import torch

    run = tiny["base"] / "run_ft"
    sets = tiny["sets"] + ["student.finetune_backbone=true"]
    res = invoke(
        ["demo", "--out", str(run), "--device", "cpu", "--methods", "mtpkdot", "--folds", "1"]
        + set_args(sets)
    )
    assert res.exit_code == 0, res.output
    fold = run / "seed0" / "fold1"
    student = torch.load(fold / "student_mtpkdot" / "best.pt", weights_only=True)["modules"]["student"]
    start = torch.load(fold / "backbone_video" / "best.pt", weights_only=True)["modules"]["model"]
    keys = [k for k in student if k.startswith("backbones.video.") and k.endswith("weight")]
    assert keys
    moved = [not torch.equal(student[k], start["backbone." + k[len("backbones.video.") :]]) for k in keys]
    assert any(moved)


def test_missing_data_is_one_clear_error_line(tmp_path):
    cfg = Path(__file__).resolve().parents[1] / "configs" / "biovid_b.yaml"
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "error: data.root must be set for dataset 'biovid'" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(
        app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--set", f"data.root={tmp_path / 'nope'}"]
    )
    assert res.exit_code == 2 and "nope does not exist" in res.output
