"""Every shipped config validates, follows the paper where it states a value, and runs end to end on a
tiny synthetic dataset of its layout (the end-to-end runs are slow: `pytest -m slow`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import CONFIGS, shrink, synth_biovid_tiny
from mtpkdot.cli import app
from mtpkdot.config import load_config

SHIPPED = [
    "demo",
    "biovid_a",
    "biovid_a_5class",
    "biovid_b",
    "biovid_b_physio_student",
    "affwild2",
    "own_data",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_config_validates(name):
    from mtpkdot.distill.method import applicable_methods
    from mtpkdot.tasks import Task

    cfg = load_config(CONFIGS / f"{name}.yaml")
    kind = Task.from_config(cfg).kind
    # every method of the paper's comparison that applies to the task (kl is N/A for regression)
    assert cfg.student.methods == [
        m for m in ["none", "cosine", "mse", "kl", "pkdot", "mtpkdot"] if m in applicable_methods(kind)
    ]
    assert (cfg.distill.alpha, cfg.distill.beta, cfg.distill.gamma) == (0.8, 0.2, 0.2)  # Eq. 10
    from mtpkdot import plugins
    from mtpkdot.registry import BACKBONES, FUSIONS

    plugins.load()
    assert cfg.teacher.fusion in FUSIONS
    for m in cfg.data.modalities.values():
        assert m.backbone in BACKBONES


def test_demo_config_is_the_packaged_one():
    from mtpkdot.pipeline.demo import demo_yaml

    assert (CONFIGS / "demo.yaml").read_text() == demo_yaml()


def test_paper_hyper_parameters():
    """Values stated in the paper, Sec. IV-B."""
    a = load_config(CONFIGS / "biovid_a.yaml")
    b = load_config(CONFIGS / "biovid_b.yaml")
    for cfg in (a, b):
        assert cfg.backbones["video"].lr == 1e-3 and cfg.backbones["video"].batch_size == 64
        assert cfg.teacher.lr == 1e-4 and cfg.teacher.batch_size == 64
        assert cfg.adapters.lr == 1e-3
        assert cfg.student.lr == 1e-4 and cfg.student.batch_size == 128
        assert cfg.distill.options("pkdot").k == cfg.distill.options("mtpkdot").k == 30
        assert cfg.protocol.scheme == "kfold" and cfg.protocol.folds == 5
    assert a.teacher.fusion == "concat" and a.data.modalities["eda"].backbone == "cnn1d"
    assert b.teacher.fusion == "mmt" and b.data.modalities["emg"].backbone == "resnet18_spec"
    assert load_config(CONFIGS / "biovid_a_5class.yaml").data.task == "five_class"
    p = load_config(CONFIGS / "biovid_b_physio_student.yaml")
    assert p.data.prevalent == ["emg"] and p.data.privileged == ["video"]
    w = load_config(CONFIGS / "affwild2.yaml")
    assert w.teacher.fusion == "jca" and w.teacher.lr == 1e-3 and w.student.batch_size == 128
    assert w.backbones["video"].batch_size == 8 and w.backbones["audio"].batch_size == 8
    assert (w.data.modalities["audio"].freq_bins, w.data.modalities["audio"].time_bins) == (64, 107)
    assert w.protocol.scheme == "official" and w.data.task == "va"


def _own_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(5):
        for k in range(4):
            label = k % 2
            sid = f"p{s}_{k}"
            video = rng.integers(0, 255, size=(8, 20, 20, 3), dtype=np.uint8)
            signal = (rng.normal(size=(1, 1024)) + label).astype(np.float32)
            np.save(root / f"{sid}_video.npy", video)
            np.save(root / f"{sid}_signal.npy", signal)
            rows.append((sid, f"p{s}", label, f"{sid}_video.npy", f"{sid}_signal.npy"))
    df = pd.DataFrame(rows, columns=["sample_id", "subject_id", "label", "path_video", "path_signal"])
    df.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "demo"])
def test_config_runs_end_to_end(name, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sets = shrink(name)
    if name.startswith("biovid"):
        synth_biovid_tiny(data, "A" if name.startswith("biovid_a") else "B", name.endswith("5class"))
        sets.append(f"data.root={data}")
    elif name == "affwild2":
        from mtpkdot.config import SynthConfig
        from mtpkdot.data import synth_affwild2

        synth_affwild2(data, SynthConfig(subjects=4, size=24, duration=3.0))
        sets.append(f"data.root={data}")
    elif name == "own_data":
        sets.append(f"data.manifest={_own_data(data)}")
    args = ["run", str(CONFIGS / f"{name}.yaml"), "--out", str(tmp_path / "run"), "--device", "cpu"]
    args += [a for s in sets for a in ("--set", s)]
    res = CliRunner().invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert {"none", "mtpkdot", "teacher"} <= set(summary["method"])
    metric = "ccc_mean" if name == "affwild2" else "accuracy"
    assert summary[metric].notna().all()
    if name == "affwild2":  # kl cannot apply to a regression task: refused before any training
        res = CliRunner().invoke(app, [*args, "--methods", "kl"])
        assert res.exit_code != 0
        assert "not applicable" in str(res.exception or "") + res.output
        assert not list((tmp_path / "run").glob("seed*/fold*/student_kl"))


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["jca", "mmt"])
def test_affwild2_sequences_with_a_finetuned_student_backbone(fusion, tmp_path):
    """Sequences of L clips + the student's video backbone trained end to end, then export and predict."""
    import numpy as np

    from mtpkdot.config import SynthConfig
    from mtpkdot.data import synth_affwild2

    data = tmp_path / "data"
    data.mkdir()
    synth_affwild2(data, SynthConfig(subjects=4, size=24, duration=3.0))
    sets = shrink("affwild2") + [f"data.root={data}", "student.finetune_backbone=true"]
    if fusion == "mmt":
        sets = [s for s in sets if not s.startswith("teacher.fusion_kwargs=")]
        sets += [
            "teacher.fusion=mmt",
            "teacher.fusion_kwargs={d_model: 16, heads: 2, ff_dim: 16, layers: 1, dropout: 0.0, positional: true}",
        ]
    run = tmp_path / "run"
    args = ["run", str(CONFIGS / "affwild2.yaml"), "--out", str(run), "--device", "cpu"]
    res = CliRunner().invoke(app, [*args, *[a for s in sets for a in ("--set", s)]])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(run / "summary.csv")
    assert {"none", "mtpkdot"} <= set(summary["method"]) and summary["ccc_mean"].notna().all()
    fold = sorted(run.glob("seed0/fold*/student_mtpkdot"))[0].parent
    bundle = tmp_path / "student.pt"
    res = CliRunner().invoke(
        app, ["export", str(run), "--fold", fold.name[4:], "--method", "mtpkdot", "--out", str(bundle)]
    )
    assert res.exit_code == 0, res.output
    from mtpkdot.data.store import Store
    from mtpkdot.pipeline.bundle import load_bundle

    model = load_bundle(bundle)
    store = Store(run / "store")
    out = model({"video": np.asarray(store.array("video")[:2])})  # 2 samples x L clips
    assert out.shape[:2] == (2, store.shape("video")[0]) and out.shape[-1] == 2
