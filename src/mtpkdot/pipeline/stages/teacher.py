"""Stage 2: the fusion teacher on the cached features of every modality (the upper bound)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.engine.loop import predict
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.common import (
    EVAL_BATCH,
    best_modules,
    cached_features,
    chunks_of,
    device_targets,
    score,
    task_loss,
)


def build_teacher(ctx: FoldContext, mods: list[str] | None = None) -> nn.Module:
    """A fresh fusion of the teacher's kind over ``mods`` (default: every modality, in order)."""
    tc = ctx.cfg.teacher
    return build_fusion_of(ctx, tc.fusion, dict(tc.fusion_kwargs), ctx.order if mods is None else mods)


def build_student_fusion(ctx: FoldContext, mods: list[str] | None = None) -> nn.Module:
    """A fresh fusion of the student's kind (``student.fusion``, default the teacher's) over ``mods``."""
    name, kw = ctx.cfg.student_fusion()
    return build_fusion_of(ctx, name, kw, ctx.order if mods is None else mods)


def build_fusion_of(ctx: FoldContext, name: str, kw: dict[str, Any], mods: list[str]) -> nn.Module:
    from mtpkdot.models import build_fusion, takes_seq_len

    if takes_seq_len(name):
        kw.setdefault("seq_len", ctx.cfg.data.sequence_length)
    dims = [ctx.feature_dim(m) for m in mods]
    return build_fusion(name, dims, ctx.task.num_outputs, **kw).to(ctx.device)


def train_teacher(ctx: FoldContext) -> Trainable:
    """Stage 2: the fusion teacher on cached features of every modality (the upper bound)."""
    fusion = build_teacher(ctx)
    y_all, mask_all = device_targets(ctx)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out, _ = fusion(cached_features(ctx, ctx.order, idx))
        i = idx.to(ctx.device)
        loss = task_loss(ctx, out, y_all[i], None if mask_all is None else mask_all[i])
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        forward = lambda b: fusion(cached_features(ctx, ctx.order, b))[0]  # noqa: E731
        preds = predict(forward, chunks_of(idx, EVAL_BATCH), [fusion])
        return score(ctx, preds, idx)

    params = list(fusion.parameters())
    return Trainable({"fusion": fusion}, params, ctx.cfg.teacher, compute, evaluate, ctx.task.primary_metric)


def load_teacher(ctx: FoldContext) -> nn.Module:
    fusion = build_teacher(ctx)
    fusion.load_state_dict(best_modules(ctx, layout.TEACHER)["fusion"])
    fusion.requires_grad_(False)
    return fusion.eval()
