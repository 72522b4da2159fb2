"""geomloss' tensorized Sinkhorn divergence with an in-place soft-min kernel (SinkhornLoss's default).

The algorithm is geomloss' own, called piece by piece: its cost matrices, epsilon schedule, symmetric
Sinkhorn loop with the final extrapolation that carries the gradient, and its dual cost. Only the
soft-min (the soft C-transform ``f_i = -eps log sum_j exp(h_j - C_ij / eps)``, the inner loop of every
iteration) is ours: geomloss' ``softmin_tensorized`` makes six passes over the ``n x m`` matrix with three
temporaries per call (divide, subtract, then logsumexp's max, subtract, exp, sum); here the divide and
subtract are one fused ``add`` and, where no gradient is recorded (every iteration but the last
extrapolation), the shift and the exponential run in place. Same values as ``SamplesLoss`` within
float32 rounding (``tests/test_distill_sinkhorn_fused.py``); 10-30 % faster on CPU (BENCHMARKS.md).

geomloss >= 0.3 keeps these functions in ``geomloss._legacy``, 0.2.x at the top level; should a future
release move them, :data:`AVAILABLE` is False and SinkhornLoss falls back to ``SamplesLoss``.
"""

from __future__ import annotations

import math

import torch

try:  # geomloss 0.3.x
    from geomloss._legacy.sinkhorn_divergence import (
        epsilon_schedule,
        max_diameter,
        sinkhorn_cost,
        sinkhorn_loop,
    )
    from geomloss._legacy.sinkhorn_samples import cost_routines
except ImportError:  # pragma: no cover - exercised only with geomloss 0.2.x installed
    try:
        from geomloss.sinkhorn_divergence import (
            epsilon_schedule,
            max_diameter,
            sinkhorn_cost,
            sinkhorn_loop,
        )
        from geomloss.sinkhorn_samples import cost_routines
    except ImportError:
        AVAILABLE = False
    else:
        AVAILABLE = True
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "sinkhorn_divergence", "softmin_inplace"]


def softmin_inplace(eps: float, c_xy: torch.Tensor, h_y: torch.Tensor) -> torch.Tensor:
    """``-eps * logsumexp_j(h_j - C_ij / eps)`` for ``B x N x M`` costs and ``B x M`` dual values.

    The drop-in replacement of geomloss' ``softmin_tensorized``: one fused pass builds the exponent
    (``h + C * (-1/eps)``); without a gradient to record, the row maximum is subtracted and the
    exponential taken in place instead of in new tensors.
    """
    eps = float(eps)  # geomloss' schedule holds numpy floats, which would become a tensor per use
    b = c_xy.shape[0]
    v = torch.add(h_y.view(b, 1, -1), c_xy, alpha=-1.0 / eps)
    if v.requires_grad:
        return torch.logsumexp(v, 2).view(b, -1) * (-eps)
    # Every entry is finite (finite clouds, checked upstream; geomloss' log-weights clamp zeros to
    # -1e5), so the row maximum needs no inf guard.
    shift = v.amax(2, keepdim=True)
    total = v.sub_(shift).exp_().sum(2)
    return total.log_().add_(shift.view(b, -1)).mul_(-eps)


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    p: int,
    blur: float,
    scaling: float,
    debias: bool,
    diameter: float | None,
) -> torch.Tensor:
    """Scalar debiased (or raw) Sinkhorn divergence between uniform ``n x d`` and ``m x d`` clouds.

    The same computation as ``geomloss.SamplesLoss("sinkhorn", p, blur, scaling=..., debias=...,
    diameter=..., backend="tensorized")(x, y)``; ``diameter=None`` estimates it from the data (one
    value read back, as geomloss does). The caller restores the grad mode (geomloss' loop leaves it on).
    """
    x3, y3 = x.unsqueeze(0), y.unsqueeze(0)
    n, m = x.shape[0], y.shape[0]
    a = torch.full((1, n), 1.0 / n, dtype=x.dtype, device=x.device)
    b = torch.full((1, m), 1.0 / m, dtype=y.dtype, device=y.device)
    # uniform weights: the log-weights are constants (geomloss' log_weights masks zero weights with a
    # boolean index, a device-to-host synchronisation on accelerators)
    a_log = torch.full((1, n), -math.log(n), dtype=x.dtype, device=x.device)
    b_log = torch.full((1, m), -math.log(m), dtype=y.dtype, device=y.device)
    cost = cost_routines[p]
    c_xy = cost(x3, y3.detach())
    c_yx = cost(y3, x3.detach())
    c_xx = cost(x3, x3.detach()) if debias else None
    c_yy = cost(y3, y3.detach()) if debias else None
    if diameter is None:
        diameter = max_diameter(x.detach(), y.detach())
    eps_list = epsilon_schedule(p, diameter, blur, scaling)
    f_aa, g_bb, g_ab, f_ba = sinkhorn_loop(
        softmin_inplace, a_log, b_log, c_xx, c_yy, c_xy, c_yx, eps_list, None, debias=debias
    )
    return sinkhorn_cost(blur**p, None, a, b, f_aa, g_bb, g_ab, f_ba, batch=True, debias=debias)[0]
