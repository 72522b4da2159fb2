"""The Method contract and the six registered methods, on small stand-in modules and on mtpkdot.models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtpkdot.config import DistillConfig, migrate_v1
from mtpkdot.distill import Method, TeacherPool, build_method
from mtpkdot.registry import METHODS
from mtpkdot.tasks import Task

METHOD_TERMS = {
    "none": set(),
    "cosine": {"cosine"},
    "mse": {"mse"},
    "kl": {"kl"},
    "pkdot": {"ot"},
    "mtpkdot": {"ot", "centroid"},
}
D_VIDEO, D_EDA, D_JOINT, B = 6, 4, 8, 16


class StandInFusion(nn.Module):
    """fusion([f...]) -> (outputs, joint), with batch norm and dropout so that train/eval mode matters."""

    def __init__(self, in_dims: list[int], num_outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(sum(in_dims), D_JOINT), nn.BatchNorm1d(D_JOINT), nn.Dropout(0.5))
        self.head = nn.Linear(D_JOINT, num_outputs)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        joint = self.body(torch.cat(feats, dim=-1))
        return self.head(joint), joint


class StandInStudent(nn.Module):
    """student({"video": x}) -> (outputs, joint); refuses privileged inputs like mtpkdot.models.Student."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.tnets = nn.ModuleDict({"eda": nn.Linear(D_VIDEO, D_EDA)})
        self.tnets.requires_grad_(False)
        self.fusion = StandInFusion([D_VIDEO, D_EDA], num_outputs)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if set(inputs) != {"video"}:
            raise ValueError(f"student received {sorted(inputs)}")
        v = inputs["video"]
        return self.fusion([v, self.tnets["eda"](v)])


def make_pool(num_outputs: int) -> TeacherPool:
    adapters = {"video": nn.Linear(D_VIDEO, D_JOINT), "eda": nn.Linear(D_EDA, D_JOINT)}
    heads = {m: nn.Linear(D_JOINT, num_outputs) for m in adapters}
    return TeacherPool(StandInFusion([D_VIDEO, D_EDA], num_outputs), adapters, heads, ["video", "eda"])


def make_batch(task: Task, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(B, D_VIDEO, generator=g)
    eda = torch.randn(B, D_EDA, generator=g)
    if task.kind == "classification":
        y = torch.randint(0, task.num_outputs, (B,), generator=g)
    else:
        y = torch.rand(B, task.num_outputs, generator=g)
    return {"student": {"video": video}, "teacher": {"video": video, "eda": eda}, "y": y, "mask": None}


def distill_config(**flat) -> DistillConfig:
    """Settings named by their flat version-1 keys (``k=5``), each moved to the methods that use it."""
    return DistillConfig.model_validate(migrate_v1({"distill": flat})["distill"])


def setup(name: str, task: Task | None = None, **cfg):
    torch.manual_seed(0)
    task = task or Task("classification", 3)
    method = build_method(
        name, StandInStudent(task.num_outputs), make_pool(task.num_outputs), task, distill_config(**cfg)
    )
    return method, task


def test_six_methods_registered_with_docstrings():
    assert set(METHODS.names()) >= set(METHOD_TERMS)
    for name in METHOD_TERMS:
        cls = METHODS.get(name)
        assert issubclass(cls, Method) and cls.name == name
        assert (cls.__doc__ or "").strip().splitlines()[0]


@pytest.mark.parametrize("name", sorted(METHOD_TERMS))
def test_forward_train_losses_and_gradients(name):
    method, task = setup(name, alpha=0.7, beta=0.3, gamma=0.5, k=5)
    pool = method.teacher_pool
    running = pool.fusion.body[1].running_mean.clone()
    method.train()
    assert method.training and method.student.training
    assert not pool.training and not any(m.training for m in pool.modules()), "frozen teachers stay in eval()"
    outputs, losses = method.forward_train(make_batch(task))
    assert outputs.shape == (B, 3)
    assert set(losses) == {"task", "total"} | METHOD_TERMS[name]
    weights = {"ot": 0.3, "cosine": 0.3, "mse": 0.3, "kl": 0.3, "centroid": 0.5}
    if name == "none":
        expected = losses["task"]
    else:
        expected = 0.7 * losses["task"] + sum(weights[k] * losses[k] for k in METHOD_TERMS[name])
    assert float(losses["total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    losses["total"].backward()
    assert all(p.grad is None for p in pool.parameters()), "no gradient may reach a teacher"
    assert torch.equal(pool.fusion.body[1].running_mean, running), "teacher batch-norm statistics changed"
    params = list(method.trainable_parameters())
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert all(p.grad is None for p in method.student.tnets.parameters())
    assert not {id(p) for p in method.student.tnets.parameters()} & {id(p) for p in params}


@pytest.mark.parametrize("name", sorted(METHOD_TERMS))
def test_forward_test_reads_only_the_student_inputs(name):
    method, task = setup(name)
    method.eval()
    batch = make_batch(task)
    expected = method.student(batch["student"])[0]
    del batch["teacher"]
    del batch["y"]
    out = method.forward_test(batch)
    assert torch.equal(out, expected)
    assert torch.equal(method(batch), expected)  # forward() in eval mode is forward_test


def test_kl_is_not_applicable_to_regression():
    task = Task.from_name("va")
    with pytest.raises(ValueError, match="not applicable"):
        setup("kl", task)


@pytest.mark.parametrize("name", ["none", "cosine", "mse", "pkdot", "mtpkdot"])
def test_regression_methods_run(name):
    method, task = setup(name, Task.from_name("va"), k=4)
    method.train()
    _, losses = method.forward_train(make_batch(task))
    losses["total"].backward()
    assert torch.isfinite(losses["total"])


def _rig_pool_so_that(pool: TeacherPool, winner: str, batch: dict) -> None:
    """Make teacher ``winner`` predict the labels perfectly (huge logits), the others uninformative."""
    with torch.no_grad():
        for m in ("video", "eda"):
            pool.heads[m].weight.zero_()
            pool.heads[m].bias.zero_()
        pool.fusion.head.weight.zero_()
        pool.fusion.head.bias.zero_()
    y = batch["y"]

    class Oracle(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(y, 3).float() * 50

    if winner == "joint":
        pool.fusion.head = Oracle()
    else:
        pool.heads[winner] = Oracle()


def _selection(method):
    """The teacher-selection counts MT-PKDOT logs for its last step, by teacher name."""
    log = method.step_log()
    assert all(isinstance(v, torch.Tensor) for v in log.values())  # summed on the device, not read back
    return {k.removeprefix("sel_"): int(v) for k, v in log.items()}


@pytest.mark.parametrize("winner", ["video", "eda", "joint"])
def test_mtpkdot_selects_the_least_loss_teacher_and_counts(winner):
    method, task = setup("mtpkdot", k=5)
    batch = make_batch(task)
    _rig_pool_so_that(method.teacher_pool, winner, batch)
    method.train()
    method.forward_train(batch)
    expected = {n: int(n == winner) for n in ("video", "eda", "joint")}
    assert _selection(method) == expected


def test_mtpkdot_ties_go_to_joint():
    method, task = setup("mtpkdot", k=5)
    batch = make_batch(task)
    _rig_pool_so_that(method.teacher_pool, "video", batch)  # zero heads: eda and joint tie ...
    method.teacher_pool.heads["video"] = method.teacher_pool.heads["eda"]  # ... and now video too
    method.train()
    method.forward_train(batch)
    assert _selection(method) == {"video": 0, "eda": 0, "joint": 1}


def test_mtpkdot_uses_the_selected_teacher_features():
    """With the joint teacher selected and no centroid, MT-PKDOT's OT term equals PKDOT's."""
    method, task = setup("mtpkdot", k=5, centroid="none")
    batch = make_batch(task)
    _rig_pool_so_that(method.teacher_pool, "joint", batch)
    single, _ = setup("pkdot", k=5)
    single.student.load_state_dict(method.student.state_dict())
    single.teacher_pool = method.teacher_pool
    method.eval()  # deterministic student (dropout off) for the comparison
    single.eval()
    _, a = method.forward_train(batch)
    _, b = single.forward_train(batch)
    assert set(a) == {"task", "ot", "total"}
    assert float(a["ot"].detach()) == pytest.approx(float(b["ot"].detach()), rel=1e-6)


def test_mtpkdot_per_sample_selection():
    method, task = setup("mtpkdot", k=5, selection="per_sample")
    batch = make_batch(task)
    y = batch["y"]
    pool = method.teacher_pool

    class HalfOracle(nn.Module):  # right on the first half of the batch only
        def forward(self, x):
            logits = torch.nn.functional.one_hot(y, 3).float() * 50
            logits[B // 2 :] = 0
            return logits

    with torch.no_grad():
        for m in ("video", "eda"):
            pool.heads[m].weight.zero_()
            pool.heads[m].bias.zero_()
        pool.fusion.head.weight.zero_()
        pool.fusion.head.bias.zero_()
    pool.heads["eda"] = HalfOracle()
    method.train()
    _, losses = method.forward_train(batch)
    assert _selection(method) == {"video": 0, "eda": B // 2, "joint": B - B // 2}
    losses["total"].backward()


def test_teacher_pool_is_frozen_and_named():
    pool = make_pool(3)
    assert pool.names == ["video", "eda", "joint"] and pool.joint_index == 2
    pool.train()
    assert not pool.training
    assert not any(p.requires_grad for p in pool.parameters())
    out = pool(make_batch(Task("classification", 3))["teacher"])
    assert list(out) == ["video", "eda", "joint"]
    assert all(f.shape == (B, D_JOINT) and o.shape == (B, 3) for f, o in out.values())
    with pytest.raises(KeyError, match="lacks modalities"):
        pool({"video": torch.randn(B, D_VIDEO)})


def test_with_mtpkdot_models_student_and_privileged_input_is_refused():
    from mtpkdot import models

    torch.manual_seed(0)
    task = Task("classification", 2)
    order, dims = ["video", "eda"], [12, 5]
    teacher = models.build_fusion("concat", dims, 2)
    joint_dim = teacher.joint_dim
    adapters = {m: models.Adapter(d, joint_dim, hidden=8) for m, d in zip(order, dims, strict=True)}
    heads = {m: models.LinearHead(joint_dim, 2) for m in order}
    pool = TeacherPool(teacher, adapters, heads, order)
    student = models.Student(
        models.build_fusion("concat", dims, 2), {"eda": models.TNet(12, 5)}, order, ["video"]
    )
    batch = {
        "student": {"video": torch.randn(B, 12)},
        "teacher": {"video": torch.randn(B, 12), "eda": torch.randn(B, 5)},
        "y": torch.randint(0, 2, (B,)),
        "mask": None,
    }
    for name in METHOD_TERMS:
        method = build_method(name, student, pool, task, distill_config(k=5))
        method.train()
        _, losses = method.forward_train(batch)
        losses["total"].backward()
        assert torch.isfinite(losses["total"])
    bad = {"student": {"video": batch["student"]["video"], "eda": batch["teacher"]["eda"]}}
    with pytest.raises(ValueError, match="privileged"):
        method.forward_test(bad)
