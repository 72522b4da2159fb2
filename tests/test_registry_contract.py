"""A registered entry works through the whole pipeline with nothing but its own declarations.

A toy dataset reader, a toy backbone and a toy method are registered here, and nowhere else in the
library or the tests is their name known: a tiny demo run reads its data through the toy reader (its
tasks come from its declaration), trains the toy backbone on the EDA signal (its input rank and input
arguments come from its declaration), distils a student with the toy method (what it logs per step
reaches metrics.csv), and the report shows the method with its declared label in its declared place.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from helpers import invoke, set_args, tiny_overrides
from mtpkdot.data.reader import Reader
from mtpkdot.distill.method import Method
from mtpkdot.engine.checkpoint import load_checkpoint
from mtpkdot.models import register_backbone
from mtpkdot.registry import BACKBONES, DATASETS, METHODS
from mtpkdot.tasks import Task


class MeanPool(nn.Module):
    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.proj = nn.Linear(in_channels, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=-1))  # B x C x T -> B x out_dim


def toy_signal(out_dim: int = 512, in_channels: int | None = None) -> nn.Module:
    """Mean over time and a linear map (a toy for the registry contract; paper: none)."""
    if in_channels is None:
        raise ValueError("toy_signal needs in_channels (declared: read from the stored signal)")
    return MeanPool(in_channels, out_dim)


class ToyMethod(Method):
    """The task loss alone, logging a count of its steps."""

    label = "Toy method (the registry contract)"
    order = 55  # between PKDOT (50) and MT-PKDOT (60)
    needs_teacher = False

    def forward_train(self, batch):  # type: ignore[no-untyped-def]
        outputs, _, task_loss = self._student_and_task(batch)
        self._steps = torch.ones((), dtype=torch.long, device=task_loss.device)
        return outputs, {"task": task_loss, "total": task_loss}

    def step_log(self) -> dict[str, torch.Tensor]:
        return {"toy_steps": self._steps}


class ToyReader(Reader):
    """The synthetic Biovid-like data under its own name and sample ids."""

    name = "toy_reader"
    tasks = ("bl1_pa4",)

    @staticmethod
    def read(data_cfg):  # type: ignore[no-untyped-def]
        df = DATASETS.get("synthetic_biovid").read(data_cfg)
        df["sample_id"] = "toy-" + df["sample_id"].astype(str)
        return df


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    register_backbone("toy_signal", input_ndim=2, shape_args={"in_channels": 0})(toy_signal)
    METHODS.register("toy")(ToyMethod)
    DATASETS.register()(ToyReader)
    try:
        base = tmp_path_factory.mktemp("contract")
        sets = tiny_overrides(base / "data", base / "store") + [
            "data.dataset=toy_reader",
            "data.modalities.eda.backbone=toy_signal",
            "student.methods=[none, toy, pkdot]",
        ]
        run = base / "run"
        res = invoke(["demo", "--out", str(run), "--device", "cpu", *set_args(sets)])
        assert res.exit_code == 0, res.output
        yield run
    finally:
        BACKBONES._items.pop("toy_signal", None)
        METHODS._items.pop("toy", None)
        DATASETS._items.pop("toy_reader", None)


def test_a_registered_reader_backbone_and_method_run_through_the_pipeline(toy_run):
    split = pd.read_csv(toy_run / "seed0" / "fold1" / "split.csv", dtype=str)
    assert split["sample_id"].str.startswith("toy-").all()  # the samples the toy reader named
    with pytest.raises(ValueError, match="'five_class' does not exist for dataset 'toy_reader'"):
        Task.for_dataset("toy_reader", "five_class")  # the reader declares bl1_pa4 only
    summary = pd.read_csv(toy_run / "summary.csv")
    fold1 = summary[(summary["seed"] == 0) & (summary["fold"] == 1)]
    assert fold1["method"].tolist() == ["lower_bound", "none", "pkdot", "toy", "teacher"]
    encoder = load_checkpoint(toy_run / "seed0" / "fold1" / "backbone_eda" / "best.pt")["modules"]["model"]
    assert encoder["backbone.proj.weight"].shape[0] == 16  # the toy's own layer, built for the signal
    metrics = pd.read_csv(toy_run / "seed0" / "fold1" / "student_toy" / "metrics.csv")
    # the untrained student's row (epoch 0) has no steps; each later epoch logs one count per step
    assert metrics.loc[1:, "toy_steps"].gt(0).all() and metrics.loc[1:, "toy_steps"].nunique() == 1
    report = (toy_run / "report.md").read_text()
    assert "| toy | Toy method (the registry contract) |" in report
    assert report.index("| pkdot |") < report.index("| toy |") < report.index("| teacher |")
