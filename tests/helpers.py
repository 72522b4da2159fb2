"""Helpers shared by the test files, imported one way (``from helpers import ...``): test files never
import each other, so plain ``pytest`` and ``python -m pytest`` collect every file, from the repository
root or from tests/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DEMO_CONFIG = ROOT / "src" / "mtpkdot" / "resources" / "demo.yaml"


# the config sections of the demo's trained stages (each has epochs and patience)
TRAINED_SECTIONS = ("backbones.video", "backbones.eda", "teacher", "adapters", "tnet", "student")


def tiny_overrides(data_root, store) -> list[str]:
    """The demo config shrunk to seconds: 6 subjects, 16 x 16 clips of 4 frames, 2 epochs, 2 folds."""
    sets = [
        f"data.root={data_root}",
        f"data.store={store}",
        "data.synthetic.subjects=6",
        "data.synthetic.samples_per_class=3",
        "data.synthetic.size=24",
        "data.synthetic.duration=2.0",
        "data.modalities.video.size=16",
        "data.modalities.video.segments=4",
        "data.modalities.video.feature_dim=16",
        "data.modalities.video.backbone_kwargs={width: 4}",
        "data.modalities.eda.window=[0.0, 2.0]",
        "data.modalities.eda.feature_dim=16",
        "protocol.folds=2",
        "protocol.val_subjects=0.3",
        "adapters.hidden=8",
        "tnet.hidden=[8]",
        "distill.pkdot.k=3",
        "distill.mtpkdot.k=3",
        "student.batch_size=8",
        "teacher.batch_size=8",
        "num_threads=1",
    ]
    for sec in TRAINED_SECTIONS:
        sets += [f"{sec}.epochs=2", f"{sec}.patience=null"]
    return sets


def invoke(args: list[str]):
    res = CliRunner().invoke(app, args)
    if res.exit_code != 0 and res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def set_args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def fold_test_indices(run: Path, fold: int, store) -> np.ndarray:
    """Store indices of the test samples of ``fold`` (seed 0), in store order."""
    split = pd.read_csv(run / "seed0" / f"fold{fold}" / "split.csv", dtype=str)
    test = set(split.loc[split["role"] == "test", "sample_id"])
    return np.flatnonzero(store.manifest["sample_id"].isin(test).to_numpy())


def run_student_outputs(run: Path, fold: int, method: str, model, idx: np.ndarray):
    """What the run's student computed for store samples ``idx``: its selected checkpoint (best.pt)
    applied to the backbone features the run cached (not to the bundle's own backbone)."""
    import copy

    import torch

    from mtpkdot.engine.checkpoint import load_checkpoint

    fold_dir = run / "seed0" / f"fold{fold}"
    state = load_checkpoint(fold_dir / f"student_{method}" / "best.pt")["modules"]["student"]
    student = copy.deepcopy(model.student)
    student.load_state_dict({k: v for k, v in state.items() if not k.startswith("backbones.")})
    feats = {m: torch.from_numpy(np.load(fold_dir / "features" / f"{m}.npy")[idx]) for m in model.prevalent}
    with torch.no_grad():
        out, _ = student.eval()(feats)
    return out


# ---------------------------------------------------------------------------- shipped configs, shrunk
def shrink(cfg_name: str) -> list[str]:
    cfg = load_config(CONFIGS / f"{cfg_name}.yaml")
    sets = ["num_threads=1", "seeds=[0]", "student.methods=[none, mtpkdot]", "distill.mtpkdot.k=3"]
    for sec in ["teacher", "adapters", "tnet", "student"]:
        sets += [f"{sec}.epochs=1", f"{sec}.batch_size=8"]
    sets += ["adapters.hidden=8", "tnet.hidden=[8]"]
    for name, m in cfg.data.modalities.items():
        p = f"data.modalities.{name}"
        sets += [f"{p}.feature_dim=16", f"backbones.{name}.epochs=1", f"backbones.{name}.batch_size=8"]
        if m.kind == "video":
            sets += [
                f"{p}.backbone=tiny3d",
                f"{p}.backbone_kwargs={{width: 4}}",
                f"{p}.size=16",
                f"{p}.segments=4",
                f"{p}.face=none",
            ]
        if m.kind == "eda" or m.kind == "signal":
            sets += [f"{p}.window=[0.0, 2.0]"] if m.window else []
        if m.kind == "emg":
            sets += [f"{p}.window=[0.5, 2.0]"]
        if m.kind == "audio":
            sets += [f"{p}.freq_bins=16", f"{p}.time_bins=16"]
    if cfg.teacher.fusion == "mmt":
        sets += ["teacher.fusion_kwargs={d_model: 16, heads: 2, ff_dim: 16, layers: 1, dropout: 0.0}"]
    if cfg.teacher.fusion == "jca":
        sets += ["teacher.fusion_kwargs={k: 4, hidden: 16}", "data.sequence_length=2"]
    if cfg.protocol.scheme == "kfold":
        sets += ["protocol.folds=2", "protocol.val_subjects=0.3"]
    return sets


def synth_biovid_tiny(root: Path, part: str, five_class: bool) -> None:
    from mtpkdot.config import SynthConfig
    from mtpkdot.data import synth_biovid

    synth_biovid(
        root,
        SynthConfig(subjects=5, samples_per_class=2, size=24, duration=2.0, part=part, five_class=five_class),
    )


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path) -> None:
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, f"{path}: {img.shape}"
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.01, f"{path} is (nearly) one color"
    # a plot has axes, text and data: many distinct colors, and a fair share of non-background pixels
    packed = (rgb * 255).astype(np.int64) @ np.array([65536, 256, 1])
    assert len(np.unique(packed)) > 20, f"{path} has almost no content"
    assert (rgb.min(axis=1) < 0.9).mean() > 0.01, f"{path} is almost blank"
