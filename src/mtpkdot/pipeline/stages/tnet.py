"""T-Net (Sec. IV-B, Table VII): the prevalent features -> each privileged modality's features."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.common import best_modules, cached_features, mean_terms


def build_tnets(ctx: FoldContext) -> nn.ModuleDict:
    from mtpkdot.models import TNet

    in_dim = sum(ctx.feature_dim(m) for m in ctx.prevalent)
    return nn.ModuleDict(
        {p: TNet(in_dim, ctx.feature_dim(p), hidden=list(ctx.cfg.tnet.hidden)) for p in ctx.privileged}
    ).to(ctx.device)


def _tnet_terms(ctx: FoldContext, tnets: nn.ModuleDict, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    x = torch.cat(cached_features(ctx, ctx.prevalent, idx), dim=-1)
    terms: dict[str, torch.Tensor] = {}
    for p, net in tnets.items():
        target = ctx.features(p)[idx.to(ctx.device)]
        pred = net(x)
        terms[f"mse_{p}"] = nn.functional.mse_loss(pred, target)
        terms[f"cos_{p}"] = (1 - nn.functional.cosine_similarity(pred, target, dim=-1, eps=1e-8)).mean()
    return terms


def train_tnet(ctx: FoldContext) -> Trainable:
    """T-Net (Sec. IV-B, Table VII): MSE + cosine_weight * (1 - cos) to the privileged features."""
    tnets = build_tnets(ctx)
    w = ctx.cfg.tnet.cosine_weight

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(terms[f"mse_{p}"] + w * terms[f"cos_{p}"] for p in ctx.privileged)  # type: ignore[return-value]

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        terms = _tnet_terms(ctx, tnets, idx)
        return {"total": total(terms), **terms}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        tnets.eval()
        return mean_terms(idx, lambda b: _tnet_terms(ctx, tnets, b), total)

    params = list(tnets.parameters())
    return Trainable(
        {"tnets": tnets}, params, ctx.cfg.tnet, compute, evaluate, "loss", higher_is_better=False
    )


def load_tnets(ctx: FoldContext) -> nn.ModuleDict:
    tnets = build_tnets(ctx)
    tnets.load_state_dict(best_modules(ctx, "tnet")["tnets"])
    tnets.requires_grad_(False)
    return tnets.eval()
