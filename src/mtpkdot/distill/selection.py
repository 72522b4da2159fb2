"""Teacher selection (paper Alg. 2, section III-D b): the least task loss wins, ties go to the joint teacher."""

from __future__ import annotations

import torch

__all__ = ["select_teacher"]


def select_teacher(
    task_losses: torch.Tensor, joint_index: int, per_sample: bool = False, tol: float = 0.0
) -> torch.Tensor:
    """Index of the teacher with the least task loss (Alg. 2, line 7); returns a tensor, no host sync.

    ``per_sample=False``: ``task_losses`` is 1-D (one loss per teacher on the batch); returns a 0-d
    LongTensor. ``per_sample=True``: ``task_losses`` is ``n_teachers x b`` (per-sample losses); returns
    ``b`` indices. The joint teacher wins whenever its loss is within ``tol`` of the minimum (ties go
    to the joint teacher: it falls back to the fused representation, section III-D c), otherwise the
    first teacher with the minimum. ``joint_index`` may be negative (``-1`` = last).
    """
    if per_sample:
        if task_losses.dim() != 2:
            raise ValueError(
                f"select_teacher(per_sample=True) expects n_teachers x b losses, got shape {tuple(task_losses.shape)}"
            )
    elif task_losses.dim() != 1:
        raise ValueError(
            f"select_teacher expects a 1-D tensor of per-teacher losses, got shape {tuple(task_losses.shape)}"
        )
    n = task_losses.shape[0]
    if n == 0:
        raise ValueError("select_teacher: no teachers")
    if not -n <= joint_index < n:
        raise ValueError(f"select_teacher: joint_index {joint_index} out of range for {n} teachers")
    joint_index %= n
    losses = task_losses.detach()
    best = losses.argmin(dim=0)
    joint_wins = losses[joint_index] <= losses.min(dim=0).values + tol
    return torch.where(joint_wins, torch.full_like(best, joint_index), best)
