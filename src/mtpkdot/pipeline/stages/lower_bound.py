"""The lower bound: the prevalent modalities alone, with no T-Net and no distillation."""

from __future__ import annotations

import json

import numpy as np
import torch

from mtpkdot import layout
from mtpkdot.engine.loop import predict
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable, train_and_test
from mtpkdot.pipeline.stages.common import EVAL_BATCH, chunks_of, device_targets, score, task_loss
from mtpkdot.pipeline.stages.teacher import build_student_fusion


def lower_bound(ctx: FoldContext) -> None:
    """The ``lower_bound`` row of the fold. One prevalent modality: its stage-1 model (backbone +
    linear head, selected on validation), whose test result is ``backbone_<mod>/test.json``. Several:
    a fusion of the student's kind on their cached features only, trained on the task loss with the
    student's settings (:func:`train_lower_bound`)."""
    if len(ctx.prevalent) > 1:
        train_and_test(ctx, layout.LOWER_BOUND, lambda: train_lower_bound(ctx))
        return
    source = layout.backbone_stage(ctx.prevalent[0])
    result = json.loads((ctx.stage_dir(source) / layout.TEST).read_text())
    result.update(stage=layout.LOWER_BOUND, source=source)
    ctx.write_json(ctx.stage_dir(layout.LOWER_BOUND) / layout.TEST, result)


def _student_feats(ctx: FoldContext, idx: torch.Tensor) -> list[torch.Tensor]:
    # the stage-1 backbones' features for every sample, as the students see them (with cross-fitting
    # on, ctx.features holds out-of-fold rows for training samples: teacher-side input only)
    i = idx.to(ctx.device)
    return [ctx.student_features(m)[i] for m in ctx.prevalent]


def train_lower_bound(ctx: FoldContext) -> Trainable:
    """A fresh fusion of the student's kind on the prevalent features only: no T-Net branches, task
    loss only. Cached features also when the students fine-tune."""
    fusion = build_student_fusion(ctx, ctx.prevalent)
    y_all, mask_all = device_targets(ctx)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out, _ = fusion(_student_feats(ctx, idx))
        i = idx.to(ctx.device)
        loss = task_loss(ctx, out, y_all[i], None if mask_all is None else mask_all[i])
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        forward = lambda b: fusion(_student_feats(ctx, b))[0]  # noqa: E731
        return score(ctx, predict(forward, chunks_of(idx, EVAL_BATCH), [fusion]), idx)

    return Trainable(
        {"fusion": fusion},
        list(fusion.parameters()),
        ctx.cfg.student,
        compute,
        evaluate,
        ctx.task.primary_metric,
        initial_eval=True,
    )
