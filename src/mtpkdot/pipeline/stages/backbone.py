"""Stage 1 (Sec. IV-B): each used modality's backbone with a linear head, trained on the task."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.engine.loop import predict
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.inputs import Normalizer
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.common import best_modules, chunks_of, device_targets, score, task_loss


def build_modality_backbone(
    ctx: FoldContext, mod: str, fit_norm: bool = True, train_idx: np.ndarray | None = None
) -> tuple[nn.Module, Normalizer]:
    from mtpkdot.models import accepts_weights, build_backbone, input_kwargs, input_ndim

    mc = ctx.cfg.data.modalities[mod]
    arr = ctx.store.array(mod)
    nd = input_ndim(mc.backbone)
    kw = input_kwargs(mc.backbone, tuple(arr.shape[1:]), mc.backbone_kwargs)
    if mc.weights is not None:
        if not accepts_weights(mc.backbone):
            raise ValueError(
                f"data.modalities.{mod}.weights: backbone {mc.backbone!r} takes no pretrained weights"
            )
        kw["weights"] = str(mc.weights)
    net = build_backbone(mc.backbone, out_dim=mc.feature_dim, **kw)
    fit_on = ctx.split["train"] if train_idx is None else train_idx
    norm = Normalizer.fit(arr, fit_on, mc.kind, nd) if fit_norm else Normalizer(mc.kind, nd)
    return net, norm


class Encoder(nn.Module):
    """Backbone + linear head of stage 1, with the input normalisation statistics as buffers."""

    def __init__(self, backbone: nn.Module, head: nn.Module, norm: Normalizer) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        # the input statistics travel with the weights (feature cache, export)
        if norm.mean is not None:
            self.register_buffer("norm_mean", norm.mean.clone())
            self.register_buffer("norm_std", norm.std.clone())


def train_backbone(ctx: FoldContext, mod: str, train_idx: np.ndarray | None = None) -> Trainable:
    """Stage 1 (Sec. IV-B): one modality's backbone with a linear head on the task.

    ``train_idx``: the samples it trains on (and normalises with), default the fold's training role.
    """
    from mtpkdot.models import LinearHead

    mc = ctx.cfg.data.modalities[mod]
    tc = ctx.cfg.backbones[mod]
    backbone, norm = build_modality_backbone(ctx, mod, train_idx=train_idx)
    model = Encoder(backbone, LinearHead(mc.feature_dim, ctx.task.num_outputs), norm).to(ctx.device)
    arr = ctx.store.array(mod)
    y_all, mask_all = device_targets(ctx)
    dev = ctx.device

    def forward(idx: torch.Tensor) -> torch.Tensor:
        x, lead = norm(arr[idx.numpy()], dev)
        f = model.backbone(x)
        return model.head(f).reshape(*lead, -1)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out = forward(idx)
        y = y_all[idx.to(dev)]
        m = None if mask_all is None else mask_all[idx.to(dev)]
        loss = task_loss(ctx, out, y, m)
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        preds = predict(forward, list(chunks_of(idx, tc.batch_size)), [model])
        return score(ctx, preds, idx)

    params = [p for p in model.parameters() if p.requires_grad]
    return Trainable(
        {"model": model}, params, tc, compute, evaluate, ctx.task.primary_metric, train_idx=train_idx
    )


def load_backbone(ctx: FoldContext, mod: str, stage: str | None = None) -> tuple[nn.Module, Normalizer]:
    """The fold's trained backbone of ``mod`` (best validation epoch) and its input normaliser;
    ``stage``: another stage holding a backbone of ``mod`` (a cross-fitted one)."""
    stage = stage or layout.backbone_stage(mod)
    backbone, norm = build_modality_backbone(ctx, mod, fit_norm=False)
    state = best_modules(ctx, stage)["model"]
    backbone.load_state_dict(
        {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    )
    norm.mean, norm.std = state.get("norm_mean"), state.get("norm_std")
    return backbone.to(ctx.device), norm
