"""What several stages share: the labels on the device, task loss and metrics, batches of store indices,
cached-feature look-up and a finished stage's selected checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mtpkdot import layout
from mtpkdot.engine.checkpoint import load_checkpoint
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.inputs import expand_to_frames, frame_targets, targets

EVAL_BATCH = 256


def device_targets(ctx: FoldContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The targets (and validity mask) of every store sample, on the device."""
    y, mask = targets(np.asarray(ctx.store.labels))
    return y.to(ctx.device), None if mask is None else mask.to(ctx.device)


def _frame_labels(ctx: FoldContext, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    labels = np.asarray(ctx.store.labels)
    return frame_targets(labels[np.asarray(idx)])


def score(ctx: FoldContext, preds: torch.Tensor, idx: np.ndarray) -> dict[str, float]:
    """Task metrics of predictions for store samples ``idx`` (regression: over every valid frame)."""
    y, mask = _frame_labels(ctx, idx)
    return {k: float(v) for k, v in ctx.task.metrics(expand_to_frames(preds, y), y, mask).items()}


def task_loss(
    ctx: FoldContext, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    return ctx.task.loss(out.float(), y, mask)


def best_modules(ctx: FoldContext, stage: str) -> dict[str, Any]:
    """The state dicts of ``stage``'s selected checkpoint (``best.pt``), by module name."""
    return load_checkpoint(ctx.stage_dir(stage) / layout.BEST, ctx.recorded_section(stage))["modules"]


def chunks_of(idx: np.ndarray, size: int) -> list[torch.Tensor]:
    t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return [t[i : i + size] for i in range(0, len(t), size)]


def cached_features(ctx: FoldContext, mods: list[str], idx: torch.Tensor) -> list[torch.Tensor]:
    """The cached features of samples ``idx``, one tensor per modality of ``mods``."""
    i = idx.to(ctx.device)
    return [ctx.features(m)[i] for m in mods]


def mean_terms(
    idx: np.ndarray,
    terms: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    total: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> dict[str, float]:
    """The mean over samples ``idx`` (batches of EVAL_BATCH, no gradients) of each loss term and of
    their ``total``, which is reported as ``loss``."""
    sums: dict[str, float] = {}
    with torch.no_grad():
        for b in chunks_of(idx, EVAL_BATCH):
            t = terms(b)
            t["loss"] = total(t)
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(b)
    return {k: v / max(len(idx), 1) for k, v in sums.items()}
