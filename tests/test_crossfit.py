"""Cross-fitted teacher-side features (``features.crossfit``; docs/pipeline.md).

A leakage canary like tests/test_protocol.py: one tiny run with K = 2 is instrumented, and every
training sample's cached teacher-side feature must be the output of a backbone that never saw its
subject (neither in a training batch nor in its input normalisation); validation and test rows, and the
student's own input, must be the stage-1 backbone's. Then: off is the graph of before (nothing to
recompute), changing K invalidates the feature cache and everything after it but no stage-1 backbone,
and an interrupted cross-fitted stage resumes to the same results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import tiny_overrides
from mtpkdot.config import ConfigError, load_config
from mtpkdot.data.store import Store
from mtpkdot.engine.loop import INTERRUPT_ENV
from mtpkdot.pipeline import runner
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.experiment import run_experiment
from mtpkdot.pipeline.graph import section, shareable, stage_names
from mtpkdot.pipeline.inputs import Normalizer
from mtpkdot.pipeline.stages.crossfit import inner_folds
from mtpkdot.pipeline.stages.features import affine_map, apply_affine, backbone_features
from stagegraph import invalidated

ROOT = Path(__file__).resolve().parents[1]
K = 2
MODS = ("video", "eda")


def _cfg(base: Path, extra: list[str]):
    return load_config(ROOT / "configs" / "demo.yaml", tiny_overrides(base / "data", base / "store") + extra)


def _run(base: Path, out: Path, extra: list[str]) -> pd.DataFrame:
    cfg = _cfg(base, [f"features.crossfit={K}", *extra])
    return run_experiment(cfg, out, folds=[1], methods=["none"], seeds=[0], device="cpu", progress=False)


@pytest.fixture(scope="module")
def crossfit_run(tmp_path_factory):
    """A tiny K = 2 run of fold 1, recording which samples each stage trained and normalised on."""
    base = tmp_path_factory.mktemp("crossfit")
    seen: dict[str, set[int]] = {}
    current: list[str] = []
    mp = pytest.MonkeyPatch()
    orig_stage, orig_batches, orig_norm = (
        runner.run_trained_stage,
        runner.train_batches,
        Normalizer.fit.__func__,
    )

    def run_trained_stage(ctx, stage, build, *rest):
        current.append(stage)
        try:
            return orig_stage(ctx, stage, build, *rest)
        finally:
            current.pop()

    def train_batches(ctx, stage, epoch, batch_size):
        out = orig_batches(ctx, stage, epoch, batch_size)
        seen.setdefault(stage, set()).update(int(i) for b in out for i in b)
        return out

    def norm_fit(cls, array, indices, kind, nd, **kwargs):
        seen.setdefault(current[-1], set()).update(int(i) for i in np.asarray(indices))
        return orig_norm(cls, array, indices, kind, nd, **kwargs)

    import mtpkdot.pipeline.graph as graph

    mp.setattr(graph, "run_trained_stage", run_trained_stage)
    mp.setattr(runner, "train_batches", train_batches)
    mp.setattr(Normalizer, "fit", classmethod(norm_fit))
    try:
        summary = _run(base, base / "run", [])
    finally:
        mp.undo()
    cfg = _cfg(base, [f"features.crossfit={K}"])
    store = Store(base / "store")
    split_df = pd.read_csv(base / "run" / "seed0" / "fold1" / "split.csv", dtype=str)
    pos = {s: i for i, s in enumerate(store.manifest["sample_id"].astype(str))}
    split = {
        r: np.sort([pos[s] for s in split_df.loc[split_df["role"] == r, "sample_id"]])
        for r in ("train", "val", "test")
    }
    ctx = FoldContext(cfg, store, split, base / "run", 0, 1, torch.device("cpu"), graph_section=section)
    return {"base": base, "seen": seen, "ctx": ctx, "summary": summary}


def test_no_training_feature_comes_from_a_backbone_that_saw_its_subject(crossfit_run):
    """Each training row is its inner backbone's feature (a backbone that never saw the subject), mapped
    into the stage-1 coordinates by the affine map fitted on that backbone's own training samples."""
    ctx, seen = crossfit_run["ctx"], crossfit_run["seen"]
    subject = ctx.store.manifest["subject_id"].astype(str).to_numpy()
    train = np.sort(ctx.split["train"])
    fold_dir = ctx.fold_dir
    for mod in MODS:
        cached = np.load(fold_dir / "features" / f"{mod}.npy")
        full = backbone_features(ctx, mod)[train]  # batched as the cache computes it
        for held, j in zip(inner_folds(ctx), range(1, K + 1), strict=True):
            stage = f"crossfit_{mod}_{j}"
            assert seen.get(stage), f"{stage} was never trained"
            assert not {subject[i] for i in held} & {subject[i] for i in seen[stage]}, (
                f"{stage} saw its subjects"
            )
            inner = backbone_features(ctx, mod, stage, train)
            fit = ~np.isin(train, held)
            expected = apply_affine(inner[~fit], affine_map(inner[fit], full[fit]))
            np.testing.assert_allclose(cached[held], expected, atol=1e-4)
            assert not np.allclose(cached[held], full[~fit], atol=1e-4), (
                f"{mod}: the stage-1 features were kept"
            )


def test_affine_map_recovers_a_known_map_and_only_uses_its_own_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w_true = rng.normal(size=(7, 4))
    y = apply_affine(x, w_true)
    w = affine_map(x, y, ridge=0.0)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    np.testing.assert_allclose(apply_affine(x, affine_map(x, y)), y, atol=0.05)  # small ridge


def test_validation_test_and_student_features_come_from_the_stage1_backbone(crossfit_run):
    ctx = crossfit_run["ctx"]
    fold_dir = ctx.fold_dir
    other = np.concatenate([ctx.split["val"], ctx.split["test"]])
    for mod in MODS:
        cached = np.load(fold_dir / "features" / f"{mod}.npy")
        full = backbone_features(ctx, mod)
        np.testing.assert_allclose(cached[other], full[other], atol=1e-5)
    # the student's own input (video is prevalent): the stage-1 backbone's features of every sample
    student = np.load(fold_dir / "features" / "video_full.npy")
    np.testing.assert_allclose(student, backbone_features(ctx, "video"), atol=1e-5)
    assert torch.equal(ctx.student_features("video"), torch.from_numpy(student))
    assert not (fold_dir / "features" / "eda_full.npy").exists()  # privileged: never a student input


def test_inner_folds_partition_the_training_subjects(crossfit_run):
    ctx = crossfit_run["ctx"]
    subject = ctx.store.manifest["subject_id"].astype(str).to_numpy()
    folds = inner_folds(ctx)
    assert len(folds) == K and all(len(f) for f in folds)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.sort(ctx.split["train"]))
    groups = [set(subject[f]) for f in folds]
    assert not groups[0] & groups[1]
    assert all(np.array_equal(a, b) for a, b in zip(folds, inner_folds(ctx), strict=True))


def test_interrupted_crossfit_stage_resumes_to_the_same_results(crossfit_run, monkeypatch):
    base = crossfit_run["base"]
    monkeypatch.setenv(INTERRUPT_ENV, "crossfit_video_2:1")
    with pytest.raises(Exception, match="interrupted"):
        _run(base, base / "resumed", [])
    stage = base / "resumed" / "seed0" / "fold1" / "crossfit_video_2"
    assert (stage / "last.pt").is_file() and not (stage / "done").is_file()
    monkeypatch.delenv(INTERRUPT_ENV)
    summary = _run(base, base / "resumed", [])
    pd.testing.assert_frame_equal(summary, crossfit_run["summary"])
    for mod in MODS:
        a = (base / "run" / "seed0" / "fold1" / "features" / f"{mod}.npy").read_bytes()
        assert a == (base / "resumed" / "seed0" / "fold1" / "features" / f"{mod}.npy").read_bytes()


def test_too_few_training_subjects_is_a_clear_error(crossfit_run):
    ctx = crossfit_run["ctx"]
    cfg = ctx.cfg.model_copy(deep=True)
    cfg.features.crossfit = 50
    with pytest.raises(
        ValueError, match=r"features.crossfit=50: fold 1 \(seed 0\) has only \d+ training subjects"
    ):
        inner_folds(
            FoldContext(cfg, ctx.store, ctx.split, ctx.run_dir, 0, 1, ctx.device, graph_section=section)
        )


def test_one_inner_fold_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="crossfit"):
        load_config(ROOT / "configs" / "demo.yaml", ["features.crossfit=1"])


# ------------------------------------------------------------------------------ graph, no training
class _Store:
    """What the stage sections read of a store: the manifest (12 samples of 6 subjects)."""

    manifest = pd.DataFrame(
        {"sample_id": [f"s{i}" for i in range(12)], "subject_id": [f"p{i // 2}" for i in range(12)]}
    )


def _ctx(run_dir: Path, overrides: list[str]) -> FoldContext:
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
    split = {"train": np.arange(0, 8), "val": np.arange(8, 10), "test": np.arange(10, 12)}
    return FoldContext(cfg, _Store(), split, run_dir, 0, 1, torch.device("cpu"), graph_section=section)


METHODS = ["none", "mtpkdot"]


def _invalidated(run_dir: Path, first: list[str], change: list[str]) -> set[str]:
    return invalidated(lambda o: _ctx(run_dir, o), first, change, METHODS)


AFTER_BACKBONES = {
    "features",
    "teacher",
    "tnet",
    "adapters",
    "lower_bound",
    "student_none",
    "student_mtpkdot",
}


def test_off_is_the_graph_of_before(tmp_path):
    """A run started before the key existed continues with crossfit 0: nothing recomputed."""
    assert _invalidated(tmp_path, [], ["features.crossfit=0"]) == set()
    ctx = _ctx(tmp_path, [])
    assert stage_names(ctx.order, METHODS, 0) == stage_names(ctx.order, METHODS)
    assert not any("crossfit" in n for n in stage_names(ctx.order, METHODS, 0))
    assert "crossfit" not in str(ctx.section("features"))


def test_switching_crossfit_on_invalidates_the_features_and_later_not_the_backbones(tmp_path):
    assert _invalidated(tmp_path, [], ["features.crossfit=3"]) == AFTER_BACKBONES


def test_changing_k_retrains_the_crossfitted_backbones_not_the_stage1_ones(tmp_path):
    got = _invalidated(tmp_path, ["features.crossfit=2"], ["features.crossfit=3"])
    assert got == AFTER_BACKBONES | {f"crossfit_{m}_{j}" for m in MODS for j in (1, 2)}


def test_stage_names_and_sweep_sharing():
    names = stage_names(["video", "eda"], ["none"], 2)
    assert names[:6] == [
        "backbone_video",
        "backbone_eda",
        "crossfit_video_1",
        "crossfit_video_2",
        "crossfit_eda_1",
        "crossfit_eda_2",
    ]
    assert names[6] == "features"
    assert shareable(["features"]) == {"backbone"}  # a sweep over crossfit shares the stage-1 backbones
