"""Cosine similarity matrices (paper Eqs. 2-5) and anchor selection (section III-C)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

__all__ = ["on_host", "select_anchors", "similarity_matrix"]

# Norms below this are treated as zero: a zero feature row then has similarity 0 with every row (itself
# included) instead of the NaN that the released code's unguarded division produces.
NORM_EPS = 1e-8


def on_host(t: torch.Tensor) -> bool:
    """True for CPU tensors: reading their values is no device-to-host synchronisation, so the CPU may
    take faster paths that look at the data (tests patch this to exercise the accelerator path)."""
    return t.device.type == "cpu"


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off: similarities and Sinkhorn run in float32 or float64 even inside an AMP region
    (exp(-cost / 0.01) underflows in half precision)."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return contextlib.nullcontext()  # entering an autocast context costs more than this check
        return torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, TypeError):  # a device type without autocast support, or torch < 2.4
        return contextlib.nullcontext()


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity ``S = (X X^T) / (N N^T)`` of a ``b x d`` matrix (Eqs. 2-5), ``b x b``.

    Each row is divided by ``max(||x_i||, 1e-8)``, so a zero row gives 0 (never NaN) and finite gradients.
    Half-precision inputs (and autocast regions) are computed in float32: the guard and the later
    Sinkhorn need the range.
    """
    if x.dim() != 2:
        raise ValueError(f"similarity_matrix expects a b x d matrix, got shape {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    with full_precision(x.device.type):
        norm = torch.linalg.vector_norm(x, dim=1).clamp_min(NORM_EPS)
        if x.shape[0] <= x.shape[1]:
            # b <= d: dividing the b x b Gram matrix is cheaper than normalising the b x d rows
            return (x @ x.T) / (norm[:, None] * norm[None, :])
        unit = x / norm[:, None]
        return unit @ unit.T


def select_anchors(s_teacher: torch.Tensor, k: int, exclude_self: bool = True) -> torch.Tensor:
    """Per row, the indices of the ``k`` least-similar columns, in ascending order of similarity.

    Returns a LongTensor ``b x k`` (``torch.topk(largest=False, sorted=True)``). The order is part of the
    loss: each row becomes a point in R^k and the OT cost compares coordinate j across rows, whereas the
    released code's ``numpy.argpartition`` leaves it undefined.

    The diagonal (a sample's similarity with itself) is never an anchor when ``exclude_self`` (default):
    it is the largest value of its row, so with ``k < b`` it is not picked in practice anyway; excluding
    it makes degenerate batches (duplicate or zero rows, where ties reach the diagonal) well defined.
    Then ``k <= b - 1`` is required (``k <= b`` without the exclusion); anything else raises.
    """
    if s_teacher.dim() != 2 or s_teacher.shape[0] != s_teacher.shape[1]:
        raise ValueError(f"select_anchors expects a square b x b matrix, got shape {tuple(s_teacher.shape)}")
    b = s_teacher.shape[0]
    limit = b - 1 if exclude_self else b
    if not 1 <= k <= limit:
        raise ValueError(
            f"select_anchors: k={k} anchors need 1 <= k <= {limit} for a batch of b={b}"
            + (" (the diagonal is excluded)" if exclude_self else "")
        )
    s = s_teacher.detach()
    if on_host(s) and s.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(_anchors_host(s.numpy(), k, exclude_self))
    if exclude_self:
        s = s.clone()
        s.diagonal().fill_(float("inf"))
    return torch.topk(s, k, dim=1, largest=False, sorted=True).indices


def _anchors_host(a: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """``select_anchors`` on the CPU, several times faster than ``torch.topk``: partition, then sort
    only the k selected values. Same result up to the order of exact ties."""
    rows = np.arange(a.shape[0])[:, None]
    part = np.argpartition(a, k - 1, axis=1)[:, :k]
    if exclude_self:
        # The diagonal is the largest value of its row, so it is only picked in degenerate rows (ties
        # with the diagonal); redo just those rows without it instead of copying the whole matrix.
        hit = np.flatnonzero((part == rows).any(axis=1))
        if hit.size:
            sub = a[hit]  # fancy indexing copies
            sub[np.arange(hit.size), hit] = np.inf
            part[hit] = np.argpartition(sub, k - 1, axis=1)[:, :k]
    order = np.argsort(a[rows, part], axis=1, kind="stable")
    return part[rows, order]
