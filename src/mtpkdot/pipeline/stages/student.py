"""Stage 4: the students, one per method: the prevalent modalities with the frozen T-Nets and a fresh
fusion, distilled from the adapted teachers by that method."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.atomic import atomic_save_npz
from mtpkdot.engine.loop import predict
from mtpkdot.engine.seed import derive_seed, make_generator
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.adapters import load_pool
from mtpkdot.pipeline.stages.backbone import load_backbone
from mtpkdot.pipeline.stages.common import EVAL_BATCH, chunks_of, device_targets, score
from mtpkdot.pipeline.stages.teacher import build_student_fusion
from mtpkdot.pipeline.stages.tnet import load_tnets


def build_student(ctx: FoldContext, finetune: bool) -> tuple[nn.Module, dict[str, Any]]:
    from mtpkdot.models import Student

    fusion = build_student_fusion(ctx)
    tnets = load_tnets(ctx)
    backbones = None
    norms: dict[str, Any] = {}
    if finetune:
        backbones = {}
        for m in ctx.prevalent:
            backbones[m], norms[m] = load_backbone(ctx, m)
    student = Student(fusion, dict(tnets.items()), ctx.order, ctx.prevalent, backbones=backbones)
    return student.to(ctx.device), norms


def _similarity(x: torch.Tensor) -> np.ndarray:
    from mtpkdot.distill import similarity_matrix

    x = x.float()
    if x.dim() == 3:
        x = x.mean(dim=1)
    return similarity_matrix(x).detach().cpu().numpy()


def train_student(ctx: FoldContext, method_name: str) -> Trainable:
    """Stage 4: a student (prevalent modality + frozen T-Nets + fresh fusion) distilled by one method."""
    from mtpkdot.registry import METHODS

    stage = layout.student_stage(method_name)
    sc = ctx.cfg.student
    finetune = sc.finetune_backbone
    pool = load_pool(ctx)
    student, norms = build_student(ctx, finetune)
    own_seed = derive_seed(ctx.seed, ctx.fold, stage)
    # common random numbers: the student above is built from the stream every student shares; what
    # the method builds (its own layers) draws from its own seed and leaves that stream untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(own_seed)
        method = METHODS.get(method_name)(student, pool, ctx.task, ctx.cfg.distill).to(ctx.device)
    method.generator = make_generator(own_seed)
    y_all, mask_all = device_targets(ctx)
    arrays = {m: ctx.store.array(m) for m in ctx.prevalent} if finetune else {}

    def student_inputs(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if not finetune:
            i = idx.to(ctx.device)
            return {m: ctx.student_features(m)[i] for m in ctx.prevalent}
        out = {}
        for m in ctx.prevalent:
            x, lead = norms[m](arrays[m][idx.numpy()], ctx.device)
            out[m] = x.reshape(*lead, *x.shape[1:])
        return out

    def batch(idx: torch.Tensor) -> dict[str, Any]:
        i = idx.to(ctx.device)
        return {
            "student": student_inputs(idx),
            "teacher": {m: ctx.features(m)[i] for m in ctx.order},
            "y": y_all[i],
            "mask": None if mask_all is None else mask_all[i],
        }

    # what the method logs per step (MT-PKDOT: teacher-selection counts), summed on the device
    logged: dict[str, torch.Tensor] = {}

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        _, losses = method.forward_train(batch(idx))
        for name, value in method.step_log().items():
            logged[name] = logged[name] + value if name in logged else value.clone()
        return losses, len(idx)

    bs_eval = sc.batch_size if finetune else EVAL_BATCH

    def epoch_log() -> dict[str, float]:
        return {k: float(v) for k, v in logged.items()}

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        preds = predict(
            lambda b: method.forward_test({"student": student_inputs(b)}), chunks_of(idx, bs_eval), [method]
        )
        return score(ctx, preds, idx)

    # similarity snapshots (paper Fig. 4) on a fixed validation batch
    snap_idx = torch.as_tensor(np.sort(ctx.split["val"])[: sc.batch_size], dtype=torch.long)
    snapshots: dict[str, Any] = {}
    epochs = sc.epochs
    marks = [
        (math.ceil(0.5 * epochs), "student_50"),
        (math.ceil(0.75 * epochs), "student_75"),
        (epochs, "student_100"),
    ]

    def snapshot(key: str) -> None:
        if not sc.snapshots or len(snap_idx) < 2:
            return
        was = method.training
        method.eval()
        with torch.no_grad():
            _, joint = student(student_inputs(snap_idx))
            if "teacher" not in snapshots:
                tjoint = pool({m: ctx.features(m)[snap_idx.to(ctx.device)] for m in ctx.order})["joint"][0]
                snapshots["teacher"] = _similarity(tjoint)
            snapshots[key] = _similarity(joint)
        method.train(was)

    def on_epoch_end(epoch: int) -> None:
        for e, key in marks:
            if e == epoch:
                snapshot(key)

    def after_fit() -> None:
        if sc.snapshots and ctx.write and snapshots:
            if "student_100" not in snapshots:  # stopped early: the selected model ends training
                snapshot("student_100")
            atomic_save_npz(ctx.stage_dir(stage) / layout.SNAPSHOTS, **snapshots)

    return Trainable(
        {"student": student},
        [p for p in method.trainable_parameters() if p.requires_grad],
        sc,
        compute,
        evaluate,
        ctx.task.primary_metric,
        # DDP wraps the student (what the optimiser trains); Method.forward_train runs inside its forward
        ddp_modules={"student": student},
        train_modules=[method],
        epoch_start=logged.clear,
        epoch_stats=epoch_log,
        extra=snapshots,
        on_start=lambda: snapshot("student_0"),
        on_epoch_end=on_epoch_end,
        after_fit=after_fit,
        initial_eval=True,
    )
