"""Task: losses (Eq. 8), per-sample loss, metrics, masks, sequence axes, construction from config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtpkdot.distill import ccc
from mtpkdot.tasks import Task


def test_named_tasks_and_config():
    import mtpkdot.data  # noqa: F401  (registers the readers, which declare their tasks)

    t = Task.for_dataset("biovid", "bl1_pa4")
    assert (t.kind, t.num_outputs, t.names, t.primary_metric) == (
        "classification",
        2,
        ["BL1", "PA4"],
        "accuracy",
    )
    assert Task.for_dataset("synthetic_biovid", "five_class").num_outputs == 5
    va = Task.for_dataset("affwild2", "va")
    assert (va.kind, va.names, va.primary_metric) == ("regression", ["valence", "arousal"], "ccc_mean")
    assert Task.from_name("classification:3").num_outputs == 3
    assert Task.from_name("regression:pain").names == ["pain"]
    with pytest.raises(ValueError, match="does not exist for dataset"):
        Task.for_dataset("affwild2", "bl1_pa4")
    with pytest.raises(ValueError, match="unknown task"):
        Task.from_name("nonsense")

    class Data:
        dataset, task = "biovid", "five_class"

    class Cfg:
        data = Data()

    assert Task.from_config(Cfg()).num_outputs == 5


def test_a_reader_declares_its_tasks(monkeypatch):
    # the named tasks of a dataset are its reader's declaration, and a new reader needs no other edit
    import mtpkdot.data  # noqa: F401  (registers the readers)
    from mtpkdot.data.reader import Reader
    from mtpkdot.registry import DATASETS

    class Toy(Reader):
        name = "toy_tasks"
        tasks = ("five_class",)

    monkeypatch.setitem(DATASETS._items, Toy.name, Toy)
    assert Task.for_dataset("toy_tasks", "five_class").num_outputs == 5
    with pytest.raises(
        ValueError, match=r"does not exist for dataset 'toy_tasks'; choose one of \['five_class'\]"
    ):
        Task.for_dataset("toy_tasks", "bl1_pa4")
    assert Task.for_dataset("toy_tasks", "classification:3").num_outputs == 3
    assert DATASETS.get("affwild2").tasks == ("va",) and DATASETS.get("own").tasks is None


def test_classification_loss_metrics_mask_and_sequences():
    torch.manual_seed(0)
    task = Task("classification", 3)
    pred = torch.randn(4, 5, 3)  # B x L x C
    y = torch.randint(0, 3, (4, 5))
    assert float(task.loss(pred, y)) == pytest.approx(
        float(F.cross_entropy(pred.reshape(-1, 3), y.reshape(-1)))
    )
    mask = torch.rand(4, 5) > 0.3
    expected = F.cross_entropy(pred[mask], y[mask])
    assert float(task.loss(pred, y, mask)) == pytest.approx(float(expected), rel=1e-6)
    per = task.per_sample_loss(pred, y, mask)
    assert per.shape == (20,) and torch.all(per[~mask.reshape(-1)] == 0)
    acc = task.metrics(pred, y, mask)["accuracy"]
    assert acc == pytest.approx(100.0 * float((pred.argmax(-1) == y)[mask].float().mean()))


def test_regression_loss_is_mean_over_targets_of_one_minus_ccc():
    torch.manual_seed(1)
    task = Task.from_name("va")
    y = torch.rand(6, 4, 2) * 2 - 1  # B x L x 2
    pred = y + 0.3 * torch.randn_like(y)
    y_nan = y.clone()
    y_nan[0, :2] = float("nan")  # invalid frames (annotated -5 in Affwild2)
    valid = torch.isfinite(y_nan[..., 0])
    expected = np.mean([1 - float(ccc(pred[..., j][valid], y[..., j][valid])) for j in range(2)])
    assert float(task.loss(pred, y_nan)) == pytest.approx(expected, rel=1e-5)
    m = task.metrics(pred, y_nan)
    assert set(m) == {"ccc_valence", "ccc_arousal", "ccc_mean"}
    assert m["ccc_valence"] == pytest.approx(float(ccc(pred[..., 0][valid], y[..., 0][valid])), rel=1e-5)
    assert m["ccc_mean"] == pytest.approx((m["ccc_valence"] + m["ccc_arousal"]) / 2)
    # an explicit mask over the leading axes removes a whole sample as well
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[1] = False
    keep = valid & mask
    expected = np.mean([1 - float(ccc(pred[..., j][keep], y[..., j][keep])) for j in range(2)])
    assert float(task.loss(pred, y_nan, mask)) == pytest.approx(expected, rel=1e-5)
    per = task.per_sample_loss(pred, y_nan, mask)
    assert per.shape == (24,) and torch.isfinite(per).all()
    assert float(per[0]) == 0 and float(per[4]) == 0  # nothing valid in those rows
    assert float(per[2]) == pytest.approx(float(((pred[0, 2] - y[0, 2]) ** 2).mean()))


def test_regression_clip_prediction_covers_its_frames():
    task = Task.from_name("va")
    pred = torch.randn(3, 2, 2)  # B x L x 2
    y = torch.randn(3, 2, 5, 2)  # B x L x F x 2
    expanded = pred.unsqueeze(-2).expand_as(y)
    assert float(task.loss(pred, y)) == pytest.approx(float(task.loss(expanded, y)))
    assert task.per_sample_loss(pred, y).shape == (6,)


def test_shape_errors():
    task = Task("classification", 2)
    with pytest.raises(ValueError, match="outputs"):
        task.loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="do not match"):
        task.loss(torch.randn(4, 2), torch.zeros(5, dtype=torch.long))
