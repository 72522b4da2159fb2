"""Task metrics that both the task definitions (``mtpkdot.tasks``) and the distillation core use.

The concordance correlation coefficient is the regression metric and, as ``1 - CCC``, the regression
task loss (paper Eq. 8). It lives at the bottom layer so ``tasks`` does not import ``distill``;
``mtpkdot.distill.ccc`` / ``ccc_loss`` remain importable (re-exports).
"""

from __future__ import annotations

import torch

__all__ = ["CCC_EPS", "ccc", "ccc_loss"]

CCC_EPS = 1e-8


def ccc(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    correction: int = 0,
) -> torch.Tensor:
    """Concordance correlation coefficient (Eq. 8), along dim 0; population moments by default.

    ``ccc = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``. Inputs ``(n,)`` give a scalar,
    ``(n, c)`` one value per column. ``mask`` (bool, same shape, or ``(n,)`` for every column) keeps valid
    entries; masked entries may hold NaN. ``correction=1`` gives the unbiased (n-1) moments that
    torchmetrics uses (for comparison only). A small epsilon in the denominator makes constant inputs give
    0 instead of NaN.
    """
    if pred.shape != target.shape:
        raise ValueError(f"ccc: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if mask is None:
        w = torch.ones_like(pred)
    else:
        if mask.shape != pred.shape:
            mask = mask.reshape(mask.shape + (1,) * (pred.dim() - mask.dim())).expand_as(pred)
        w = mask.to(pred.dtype)
        # NaN * 0 is NaN: replace invalid entries before they enter any sum.
        pred = torch.where(mask, pred, torch.zeros_like(pred))
        target = torch.where(mask, target, torch.zeros_like(target))
    n = w.sum(0)
    mx = (w * pred).sum(0) / n.clamp_min(1)
    my = (w * target).sum(0) / n.clamp_min(1)
    dx = (pred - mx) * w
    dy = (target - my) * w
    denom_n = (n - correction).clamp_min(1)
    vx = (dx * dx).sum(0) / denom_n
    vy = (dy * dy).sum(0) / denom_n
    cov = (dx * dy).sum(0) / denom_n
    return 2 * cov / (vx + vy + (mx - my) ** 2 + CCC_EPS)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Regression task loss ``1 - CCC`` (Eq. 8), averaged over columns for ``(n, c)`` inputs."""
    return (1 - ccc(pred, target, mask)).mean()
