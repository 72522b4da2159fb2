"""Stage 3: modality adapters (self-distillation, Alg. 1), each aligning one modality's features to the
frozen teacher's joint feature, with a linear head that ranks the teachers (Alg. 2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.atomic import atomic_save_npz
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.common import (
    best_modules,
    cached_features,
    device_targets,
    mean_terms,
    score,
    task_loss,
)
from mtpkdot.pipeline.stages.teacher import load_teacher

TSNE_CAP = 500


def build_adapters(ctx: FoldContext, joint_dim: int) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    from mtpkdot.models import Adapter, LinearHead

    adapters = nn.ModuleDict(
        {m: Adapter(ctx.feature_dim(m), joint_dim, hidden=ctx.cfg.adapters.hidden) for m in ctx.order}
    )
    heads = nn.ModuleDict({m: LinearHead(joint_dim, ctx.task.num_outputs) for m in ctx.order})
    return adapters.to(ctx.device), heads.to(ctx.device)


def train_adapters(ctx: FoldContext) -> Trainable:
    """Alg. 1 / Eq. 1: adapter A_i aligns F_i to the detached F_joint of the frozen teacher.

    Each adapted feature also gets a linear head trained with the task loss (needed to rank the
    teachers, Alg. 2); the head sees the adapted feature detached, so the adapter is trained by the
    alignment loss of Eq. 1 alone.
    """
    from mtpkdot.distill import alignment_loss

    teacher = load_teacher(ctx)
    adapters, heads = build_adapters(ctx, teacher.joint_dim)
    y_all, mask_all = device_targets(ctx)

    def terms(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The loss terms and each modality's head outputs."""
        feats = cached_features(ctx, ctx.order, idx)
        with torch.no_grad():
            _, joint = teacher(feats)
        adapted = [adapters[m](f) for m, f in zip(ctx.order, feats, strict=True)]
        i = idx.to(ctx.device)
        y, mask = y_all[i], None if mask_all is None else mask_all[i]
        out = {"align": alignment_loss(adapted, joint.detach())}
        preds: dict[str, torch.Tensor] = {}
        for m, a in zip(ctx.order, adapted, strict=True):
            preds[m] = heads[m](a.detach())
            out[f"task_{m}"] = task_loss(ctx, preds[m], y, mask)
        return out, preds

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        t, _ = terms(idx)
        return {"total": sum(t.values()), **t}, len(idx)  # type: ignore[dict-item]

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        adapters.eval()
        heads.eval()
        outs: dict[str, list[torch.Tensor]] = {m: [] for m in ctx.order}

        def eval_terms(b: torch.Tensor) -> dict[str, torch.Tensor]:
            t, preds = terms(b)  # the head outputs of the same pass score each teacher
            for m in ctx.order:
                outs[m].append(preds[m].float().cpu())
            return t

        res = mean_terms(idx, eval_terms, lambda t: sum(t.values()))  # type: ignore[arg-type,return-value]
        for m in ctx.order:
            for k, v in score(ctx, torch.cat(outs[m]), idx).items():
                res[f"{k}_{m}"] = v
        return res

    def after_fit() -> None:
        if ctx.write:
            _save_tsne(ctx, teacher, adapters)

    return Trainable(
        {"adapters": adapters, "heads": heads},
        list(adapters.parameters()) + list(heads.parameters()),
        ctx.cfg.adapters,
        compute,
        evaluate,
        "loss",
        higher_is_better=False,
        after_fit=after_fit,
    )


def _save_tsne(ctx: FoldContext, teacher: nn.Module, adapters: nn.ModuleDict) -> None:
    """Features before/after adaptation on validation samples (paper Fig. 5)."""
    idx = np.sort(ctx.split["val"])[:TSNE_CAP]
    t = torch.as_tensor(idx, dtype=torch.long)
    with torch.no_grad():
        feats = cached_features(ctx, ctx.order, t)
        _, joint = teacher(feats)
        arrays: dict[str, np.ndarray] = {}
        for m, f in zip(ctx.order, feats, strict=True):
            arrays[f"before_{m}"] = _flat(f)
            arrays[f"after_{m}"] = _flat(adapters[m].eval()(f))
        arrays["before_joint"] = arrays["after_joint"] = _flat(joint)
    labels = np.asarray(ctx.store.labels)[idx]
    if labels.ndim > 1:  # regression: the mean valence of each sample, for colouring
        labels = np.nanmean(labels.reshape(len(idx), -1, labels.shape[-1])[..., 0], axis=1)
    arrays["labels"] = labels
    atomic_save_npz(ctx.stage_dir(layout.ADAPTERS) / layout.TSNE, **arrays)


def _flat(x: torch.Tensor) -> np.ndarray:
    x = x.float().cpu()
    if x.dim() == 3:  # B x L x d: one point per sample (mean over its clips)
        x = x.mean(dim=1)
    return x.numpy()


def load_pool(ctx: FoldContext) -> Any:
    from mtpkdot.distill import TeacherPool

    teacher = load_teacher(ctx)
    adapters, heads = build_adapters(ctx, teacher.joint_dim)
    state = best_modules(ctx, layout.ADAPTERS)
    adapters.load_state_dict(state["adapters"])
    heads.load_state_dict(state["heads"])
    return TeacherPool(teacher, dict(adapters.items()), dict(heads.items()), ctx.order)
