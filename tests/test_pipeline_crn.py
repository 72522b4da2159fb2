"""Common random numbers (methods compared on the same draws): every student of one (seed, fold) starts from the same initial
weights and sees the same batches, so with the distillation terms weighted zero (alpha = 1,
beta = gamma = 0) every method trains exactly the student of ``none``.

Bitwise, not to a tolerance: on the CPU with deterministic kernels the only difference between the
methods is ``1 * task + 0 * term`` against ``task``; multiplying by 1 and adding an exact zero change
no bit, so the gradients, the Adam steps, the validation curve and the selected weights are the same
bits. A difference of any size means the methods drew different random numbers. The student's fusion
has dropout here, so the global random stream is drawn from at every step and must stay aligned too.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from helpers import invoke, set_args, tiny_overrides
from mtpkdot.distill.method import Method
from mtpkdot.engine.checkpoint import load_checkpoint
from mtpkdot.registry import METHODS

COMPARED = ["cosine", "mse", "kl", "pkdot", "mtpkdot", "noisy"]


class NoisyMethod(Method):
    """A method with randomness of its own: a randomly initialised layer built in ``__init__`` and a
    random draw at every step, both weighted zero here. Its draws must not touch the shared stream."""

    name = "noisy"

    def __init__(self, student, teacher_pool, task, cfg=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(student, teacher_pool, task, cfg)
        self.projection = nn.Linear(4, 4)

    def forward_train(self, batch):  # type: ignore[no-untyped-def]
        outputs, _, task_loss = self._student_and_task(batch)
        noise = torch.rand(3, generator=self.generator).sum()
        return outputs, self._weighted(task_loss, mse=noise.to(task_loss.device))


@pytest.fixture(scope="module")
def zero_weight_run(tmp_path_factory):
    METHODS.register("noisy")(NoisyMethod)
    try:
        base = tmp_path_factory.mktemp("crn")
        sets = tiny_overrides(base / "data", base / "store") + [
            "distill.alpha=1.0",
            "distill.beta=0.0",
            "distill.gamma=0.0",
            f"student.methods={['none', *COMPARED]}",
            # dropout in the student draws from the global stream at every step: the methods'
            # streams must stay aligned for the whole training, not only at initialisation
            "teacher.fusion_kwargs={dropout: 0.3}",
        ]
        run = base / "run"
        res = invoke(["demo", "--out", str(run), "--device", "cpu", *set_args(sets)])
        assert res.exit_code == 0, res.output
    finally:
        METHODS._items.pop("noisy", None)
    return run


def _student(fold_dir, method):
    return load_checkpoint(fold_dir / f"student_{method}" / "best.pt")["modules"]["student"]


@pytest.mark.parametrize("method", COMPARED)
def test_zero_weighted_distillation_trains_exactly_the_student_of_none(zero_weight_run, method):
    for fold_dir in sorted((zero_weight_run / "seed0").glob("fold*")):
        ref, got = _student(fold_dir, "none"), _student(fold_dir, method)
        assert set(ref) == set(got)
        for key in ref:
            assert torch.equal(ref[key], got[key]), f"{fold_dir.name}: {method} {key} differs from none"
        curve = pd.read_csv(fold_dir / f"student_{method}" / "metrics.csv")
        ref_curve = pd.read_csv(fold_dir / "student_none" / "metrics.csv")
        assert curve["val_accuracy"].tolist() == ref_curve["val_accuracy"].tolist()
        assert curve["epoch"].tolist()[0] == 0  # the untrained student, validated
        assert curve["train_task"].iloc[1:].tolist() == ref_curve["train_task"].iloc[1:].tolist()
        test = json.loads((fold_dir / f"student_{method}" / "test.json").read_text())
        ref_test = json.loads((fold_dir / "student_none" / "test.json").read_text())
        assert test["accuracy"] == ref_test["accuracy"] and test["best_epoch"] == ref_test["best_epoch"]


def _summary_rows(run, method):
    summary = pd.read_csv(run / "summary.csv")
    return summary[summary["method"] == method].set_index("fold")


def test_one_prevalent_modality_lower_bound_is_its_stage_one_model(zero_weight_run):
    rows = _summary_rows(zero_weight_run, "lower_bound")
    assert sorted(rows.index) == [1, 2]
    for fold, row in rows.iterrows():
        fold_dir = zero_weight_run / "seed0" / f"fold{fold}"
        backbone = json.loads((fold_dir / "backbone_video" / "test.json").read_text())
        assert row["accuracy"] == backbone["accuracy"] and row["n_test"] == backbone["n_test"]
        assert json.loads((fold_dir / "lower_bound" / "test.json").read_text())["source"] == "backbone_video"


def test_several_prevalent_modalities_train_a_fusion_without_tnet_branches(tmp_path):
    """video + ECG prevalent, EDA privileged: the lower bound is a fusion of the two prevalent
    features, trained on the task alone, with its own checkpoint."""
    ecg = "{kind: signal, column: ecg, window: [0.0, 2.0], sample_rate: 512, backbone: cnn1d, feature_dim: 8}"
    sets = tiny_overrides(tmp_path / "data", tmp_path / "store") + [
        f"data.modalities.ecg={ecg}",
        "backbones.ecg.epochs=2",
        "data.prevalent=[video, ecg]",
        "student.methods=[none]",
        "protocol.folds=2",
    ]
    run = tmp_path / "run"
    res = invoke(["demo", "--out", str(run), "--device", "cpu", "--folds", "1", *set_args(sets)])
    assert res.exit_code == 0, res.output
    stage = run / "seed0" / "fold1" / "lower_bound"
    fusion = load_checkpoint(stage / "best.pt")["modules"]["fusion"]
    # the concat fusion projects each input modality: two prevalent inputs (16 + 8 features), no EDA
    assert [fusion[f"proj.{i}.0.weight"].shape[1] for i in range(2)] == [16, 8]
    assert "proj.2.0.weight" not in fusion
    assert "source" not in json.loads((stage / "test.json").read_text())
    rows = _summary_rows(run, "lower_bound")
    assert list(rows.index) == [1] and 0 <= rows["accuracy"].item() <= 100
