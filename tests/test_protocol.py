"""Leakage canary of the evaluation protocol (the released code split by video and
selected epochs on the test fold: here no subject is in two roles, and the test role is scored once).

One tiny run of fold 1 is instrumented: every training batch of every stage must hold training-role
samples only, every epoch-selection evaluation must score exactly the validation role, the test role
must be scored exactly once per stage (after training, by the selected checkpoint), and the input
normalisation must be fitted on training samples only. A second run on a copy of the store whose
TEST samples are poisoned (inputs replaced by noise, every label set to class 0) must then give byte-identical
checkpoints, metrics and validation rows in every stage: only the test results (and the cached
features of the test samples) may change.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_overrides
from mtpkdot.config import load_config
from mtpkdot.pipeline import runner, stages
from mtpkdot.pipeline.experiment import run_experiment
from mtpkdot.pipeline.inputs import Normalizer
from mtpkdot.pipeline.stages import common

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["none", "mtpkdot"]  # mtpkdot ranks the teachers with the batch labels (Alg. 2)
TRAINED = ["backbone_video", "backbone_eda", "teacher", "tnet", "adapters"] + [
    f"student_{m}" for m in METHODS
]


def _overrides(data_root: Path, store: Path) -> list[str]:
    """The tiny demo of the pipeline tests, with the similarity snapshots on."""
    return tiny_overrides(data_root, store) + ["student.snapshots=true"]


def _run(base: Path, store: Path, out: Path) -> None:
    cfg = load_config(ROOT / "configs" / "demo.yaml", _overrides(base / "data", store))
    run_experiment(cfg, out, folds=[1], methods=METHODS, seeds=[0], device="cpu", progress=False)


def _patch_stages(mp: pytest.MonkeyPatch, name: str, new) -> None:
    """Replace helper ``name`` of the stages package in every stage module, each of which holds its own
    reference to it."""
    orig = getattr(common, name)
    # import every module before patching any: a module first imported after common's helper is patched
    # would bind the replacement at import and keep it after the patch is undone
    modules = [
        importlib.import_module(f"{stages.__name__}.{i.name}") for i in pkgutil.iter_modules(stages.__path__)
    ]
    for module in modules:
        if getattr(module, name, None) is orig:
            mp.setattr(module, name, new)


class Recorder:
    """Which store indices each stage trained on, validated on and tested on."""

    def __init__(self) -> None:
        self.stage: str | None = None  # the stage being fitted (None outside fit)
        self.train: dict[str, set[int]] = {}
        self.evals: list[tuple[str, str, frozenset[int]]] = []  # (stage, "val" | "test", indices)
        self.norm_fits: list[frozenset[int]] = []
        self.phase = "val"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("protocol")
    rec = Recorder()
    mp = pytest.MonkeyPatch()

    orig_fit, orig_batches, orig_finish = runner.fit_trainable, runner.train_batches, runner.finish
    orig_score, orig_mean, orig_norm = common.score, common.mean_terms, Normalizer.fit.__func__

    def fit_trainable(ctx, stage, t):
        rec.stage, rec.phase = stage, "val"
        try:
            return orig_fit(ctx, stage, t)
        finally:
            rec.stage = None

    def train_batches(ctx, stage, epoch, batch_size):
        out = orig_batches(ctx, stage, epoch, batch_size)
        rec.train.setdefault(stage, set()).update(int(i) for b in out for i in b)
        return out

    def finish(ctx, stage, evaluate, best_epoch, *rest):
        rec.stage, rec.phase = stage, "test"
        try:
            return orig_finish(ctx, stage, evaluate, best_epoch, *rest)
        finally:
            rec.stage = None

    def record(idx) -> None:
        rec.evals.append((rec.stage or "?", rec.phase, frozenset(int(i) for i in np.asarray(idx))))

    def score(ctx, preds, idx):
        record(idx)
        return orig_score(ctx, preds, idx)

    def mean_terms(idx, terms, total):
        record(idx)
        return orig_mean(idx, terms, total)

    def norm_fit(cls, array, indices, kind, nd, **kwargs):
        rec.norm_fits.append(frozenset(int(i) for i in np.asarray(indices)))
        return orig_norm(cls, array, indices, kind, nd, **kwargs)

    mp.setattr(runner, "fit_trainable", fit_trainable)
    mp.setattr(runner, "train_batches", train_batches)
    mp.setattr(runner, "finish", finish)
    _patch_stages(mp, "score", score)
    _patch_stages(mp, "mean_terms", mean_terms)
    mp.setattr(Normalizer, "fit", classmethod(norm_fit))
    try:
        _run(base, base / "store", base / "clean")
    finally:
        mp.undo()

    split = pd.read_csv(base / "clean" / "seed0" / "fold1" / "split.csv", dtype=str)
    man = pd.read_csv(base / "store" / "manifest.csv", dtype=str, keep_default_na=False)
    pos = {s: i for i, s in enumerate(man["sample_id"])}
    roles = {
        r: {pos[s] for s in split.loc[split["role"] == r, "sample_id"]} for r in ("train", "val", "test")
    }

    # poison the TEST samples of a copy of the store: noise for every input, labels all 0
    poisoned = base / "store_poisoned"
    shutil.copytree(base / "store", poisoned)
    test = np.asarray(sorted(roles["test"]))
    rng = np.random.default_rng(123)
    for f in poisoned.glob("*.npy"):
        arr = np.load(f)
        if f.stem == "labels":
            arr[test] = 0  # one class: a model at chance (50 % on balanced labels) moves too
        elif arr.dtype == np.uint8:
            arr[test] = rng.integers(0, 256, arr[test].shape, dtype=np.uint8)
        else:
            arr[test] = 50.0 * rng.standard_normal(arr[test].shape).astype(arr.dtype)
        np.save(f, arr)
    _run(base, poisoned, base / "poisoned")
    return {"base": base, "rec": rec, "roles": roles, "split": split}


def test_roles_are_disjoint_subject_sets(runs):
    split = runs["split"]
    subjects = {r: set(split.loc[split["role"] == r, "subject_id"]) for r in ("train", "val", "test")}
    assert all(subjects.values())
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]


def test_every_stage_trains_on_training_samples_only(runs):
    rec, roles = runs["rec"], runs["roles"]
    assert set(rec.train) == set(TRAINED)
    for stage, seen in rec.train.items():
        assert seen <= roles["train"], (
            f"{stage} trained on non-training samples {sorted(seen - roles['train'])}"
        )
        # shuffled epochs with drop_last cover (nearly) every training sample
        assert len(seen) >= len(roles["train"]) - 8, stage


def test_selection_uses_validation_and_test_is_scored_once(runs):
    rec, roles = runs["rec"], runs["roles"]
    for stage in TRAINED:
        vals = [idx for s, phase, idx in rec.evals if s == stage and phase == "val"]
        tests = [idx for s, phase, idx in rec.evals if s == stage and phase == "test"]
        assert vals, f"{stage} never validated"
        assert all(idx == roles["val"] for idx in vals), f"{stage} selected on non-validation samples"
        assert tests and all(idx == roles["test"] for idx in tests), stage
    # one test pass per stage; the adapters' pass also scores each modality's head (video, eda)
    n_tests = {s: sum(1 for t, p, _ in rec.evals if t == s and p == "test") for s in TRAINED}
    assert n_tests == {s: (3 if s == "adapters" else 1) for s in TRAINED}, n_tests
    assert all(s in TRAINED for s, _, _ in rec.evals), "an evaluation outside any stage"


def test_input_normalisation_is_fitted_on_training_samples(runs):
    rec, roles = runs["rec"], runs["roles"]
    assert rec.norm_fits, "no normaliser was fitted (the eda backbone standardises its input)"
    assert all(idx <= roles["train"] for idx in rec.norm_fits)


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def test_poisoned_test_samples_change_only_the_test_results(runs):
    base, roles = runs["base"], runs["roles"]
    clean, bad = base / "clean" / "seed0" / "fold1", base / "poisoned" / "seed0" / "fold1"
    assert (clean / "split.csv").read_bytes() == (bad / "split.csv").read_bytes()
    for stage in TRAINED:
        for name in ("best.pt", "last.pt"):
            a = torch.load(clean / stage / name, weights_only=False)
            b = torch.load(bad / stage / name, weights_only=False)
            assert _tensors_equal(a, b), f"{stage}/{name} depends on the test samples"
        assert (clean / stage / "metrics.csv").read_bytes() == (bad / stage / "metrics.csv").read_bytes(), (
            stage
        )
    for extra in ("adapters/tsne.npz", "student_mtpkdot/snapshots.npz"):
        a, b = np.load(clean / extra), np.load(bad / extra)
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), extra
    # the cache holds every sample: only the rows of test samples may differ
    test = np.asarray(sorted(roles["test"]))
    for mod in ("video", "eda"):
        a, b = np.load(clean / "features" / f"{mod}.npy"), np.load(bad / "features" / f"{mod}.npy")
        keep = np.setdiff1d(np.arange(len(a)), test)
        assert np.array_equal(a[keep], b[keep]), mod
        assert not np.array_equal(a[test], b[test]), f"{mod}: the poison did not reach the test features"
    # and the poison is visible where it must be: the test results
    changed = [
        s for s in TRAINED if (clean / s / "test.json").read_bytes() != (bad / s / "test.json").read_bytes()
    ]
    assert changed == TRAINED, (
        f"test.json unchanged by poisoned test samples in {set(TRAINED) - set(changed)}"
    )


def test_sweep_names_its_best_point_on_validation_not_test(tmp_path):
    """The test means rank b=32 first, the validation scores b=16: the report must name b=16."""
    import json

    import yaml

    from fakerun import make_fake_run
    from mtpkdot.layout import RunLayout
    from mtpkdot.pipeline.sweep import run_sweep
    from mtpkdot.report.sweep import write_sweep_report

    cfg = {
        "name": "tiny",
        "seeds": [0],
        "data": {
            "dataset": "synthetic_biovid",
            "modalities": {"video": {"kind": "video"}, "eda": {"kind": "eda", "backbone": "cnn1d"}},
        },
        "protocol": {"folds": 2},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(cfg))

    def runner(cfg, out):
        b = cfg.student.batch_size
        make_fake_run(
            out,
            seeds=[0],
            folds=2,
            methods=["none", "mtpkdot", "teacher"],
            effects={"mtpkdot": b / 4},
            noise=0.0,
            fold_dirs=False,
        )  # test: higher with b
        for fold in (1, 2):
            stage = RunLayout(out).stage_dir(0, fold, "student_mtpkdot")
            stage.mkdir(parents=True)
            (stage / "test.json").write_text(json.dumps({"best_epoch": 2}))
            # validation: lower with b; epoch 3 (not selected) would rank the other way
            (stage / "metrics.csv").write_text(f"epoch,val_accuracy\n1,10.0\n2,{100.0 - b}\n3,{b + 100.0}\n")
            (stage / "done").write_text("x\n")

    out = run_sweep(
        tmp_path / "base.yaml", ["batch_size=16,32", "anchors=4,8"], out=tmp_path / "sw", runner=runner
    )
    md = write_sweep_report(out).read_text()
    line = next(ln for ln in md.splitlines() if "Best point" in ln)
    assert "on validation" in line and "batch_size-16_anchors-4" in line, line
    assert "validation 84" in line, line


def test_low_data_keeps_validation_and_test_and_shrinks_training_only():
    """protocol.train_subjects drops training subjects; no validation or test subject moves roles."""
    from mtpkdot.data import fold_indices, make_folds

    subjects = np.repeat([f"p{i:02d}" for i in range(15)], 4)
    df = pd.DataFrame(
        {"sample_id": [f"s{i}" for i in range(60)], "subject_id": subjects, "label": np.tile([0, 1], 30)}
    )
    folds = make_folds(df, "kfold", 3)
    for k in range(3):
        full = fold_indices(df, folds, k, val_share=0.25, seed=1)
        low = fold_indices(df, folds, k, val_share=0.25, seed=1, train_subjects=2)
        assert np.array_equal(low["val"], full["val"]) and np.array_equal(low["test"], full["test"])
        assert set(low["train"]) < set(full["train"])
        assert len(set(subjects[low["train"]])) == 2
