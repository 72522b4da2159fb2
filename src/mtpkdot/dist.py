"""Collectives for multi-process training, on public ``torch.distributed`` calls.

Both the distillation losses and the training loop use them, so they sit below both packages.

Relational losses (Eqs. 2-9) need the whole batch: under DDP each rank holds ``b / world_size`` rows, so
the student features are gathered with :func:`all_gather_with_grad` (differentiable) and the teacher
features with :func:`all_gather_no_grad`. Every helper is the identity when no process group is
initialised, so the same code runs in a single process.

Gradient convention of :func:`all_gather_with_grad`: its backward is the adjoint of the all-gather for the
*sum* of the per-rank losses: rank r receives ``sum_q dL_q / dx_r``. When every rank computes the same loss
on the gathered batch (``L_q = L``), that is ``world_size * dL/dx_r``; DDP then averages parameter
gradients over ranks, which divides by ``world_size`` again, so the update equals the single-process update
on the concatenated batch. Losses therefore return the plain global value (no rescaling).

Per-rank batch sizes must be equal: ``mtpkdot.engine.loop.index_batches`` gives every rank the same
number of rows of each global batch (the rows left over when the batch size is not a multiple of the
world size are dropped). Ragged sizes are not supported because learning them would need a host
synchronisation per step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "all_reduce_mean",
    "all_reduce_sum",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def _gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0; backward sums the gradients over ranks, keeps our slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows = x.shape[0]
        ctx.rank = dist.get_rank()
        return _gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # Each rank's loss may depend on every rank's rows: the gradient for our rows is the sum of
        # what every rank computed for them (all-reduce; gloo has no reduce-scatter for all dtypes).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather along dim 0 (rank order); identity without a process group.

    See the module docstring for the gradient convention (sum over ranks, then DDP's average).
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 without a graph (teacher features); identity without a process group."""
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    with torch.no_grad():
        return _gather(x.detach())


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, returned as a new tensor without a graph (``x`` is left unchanged)."""
    out = x.detach().clone()
    if is_distributed() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks, without a graph (used to make teacher selection global)."""
    return all_reduce_sum(x) / world_size()
