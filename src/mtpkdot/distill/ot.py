"""Entropic OT between similarity structures (paper Eqs. 6-7) and the relational KD loss (section III).

Accuracy and cost of geomloss' epsilon-scaling, measured with ``benchmarks/bench_losses.py`` (CPU, one
thread, float32, class-structured 512-d features, b = 64 and 128, k = 30) against a converged float64
debiased divergence of the same clouds. Iterations: ``2 + ceil(log(diameter / blur) / log(1 / scaling))``.

=========  ==========================  ===========================  =====================
scaling    rel. error, CPU diameter    rel. error, analytic bound   time vs 0.5 (b = 128)
=========  ==========================  ===========================  =====================
0.5        1.3e-3 .. 1.5e-3 (6 it.)    4e-3 .. 7e-3 (9 it.)         1x
0.7        5e-4 .. 7e-4                4e-4 .. 1e-3                 1.1x
0.9        1e-4 .. 3e-4                2e-4 .. 5e-4                 2x
0.99       1e-6 .. 8e-6                1e-6 .. 3e-6                 13x
0.999      about 5e-8                  about 1e-7                   ~100x
=========  ==========================  ===========================  =====================

The default 0.5 (the released code's) is within 1 % of the converged value, far below the
batch-to-batch noise of the loss; use 0.9 when the value itself matters, 0.99 or more only as an oracle.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from geomloss import SamplesLoss
from torch import nn

from mtpkdot.dist import all_gather_no_grad, all_gather_with_grad, is_distributed
from mtpkdot.distill import _sinkhorn
from mtpkdot.distill import similarity as _similarity
from mtpkdot.distill.losses import _rows, centroid_from_similarity
from mtpkdot.distill.similarity import select_anchors, similarity_matrix

__all__ = ["RelationalOTLoss", "SinkhornLoss", "relational_clouds"]

FiniteCheck = Literal["async", "sync", "off"]


def check_finite(*tensors: torch.Tensor, name: str, mode: FiniteCheck = "async") -> None:
    """Raise if any tensor holds NaN or inf, without a device-to-host copy unless ``mode='sync'``.

    On the CPU there is no device to wait for, so both modes raise a ValueError at once. On an
    accelerator, ``"async"`` uses ``torch._assert_async``: no synchronisation, the failure surfaces at
    the next synchronising call and ends the process (CUDA cannot recover from a device assert), which is
    what a NaN loss deserves in a training run; ``"sync"`` reads the flag back and raises a ValueError.
    """
    if mode == "off":
        return
    ok = torch.isfinite(tensors[0]).all()
    for t in tensors[1:]:
        ok = ok & torch.isfinite(t).all()
    msg = f"{name} hold NaN or inf values"
    if _similarity.on_host(tensors[0]) or mode == "sync":
        if not bool(ok):
            raise ValueError(msg)
    else:
        torch._assert_async(ok, msg)


def bounding_box_diameter(x: torch.Tensor, y: torch.Tensor) -> float:
    """Diagonal of the bounding box of both clouds (geomloss' own estimate); reads one number back."""
    both = torch.cat([x.detach(), y.detach()])
    return float(torch.linalg.vector_norm(both.amax(0) - both.amin(0)))


class SinkhornLoss(nn.Module):
    """Debiased Sinkhorn divergence between two point clouds (Eqs. 6-7), geomloss underneath.

    ``loss(x, y)`` on ``n x d`` and ``m x d`` clouds with uniform weights returns a scalar:
    ``S_eps(x, y) = OT_eps(x, y) - OT_eps(x, x)/2 - OT_eps(y, y)/2`` with cost ``|x - y|^p / p`` and
    ``epsilon = blur**p`` (defaults: p = 2, blur = 0.1, so cost ``|x - y|^2 / 2`` and epsilon = 0.01,
    the released code's loss). ``debias=False`` gives the raw ``OT_eps(x, y)``. ``OT_eps`` includes
    the entropic term ``eps * KL(pi | a x b)``: it equals POT's ``ot.solve(M, reg=eps,
    reg_type="KL").value`` with ``M = ot.dist(x, y) / 2`` (not ``value_linear``, and not
    ``ot.sinkhorn2``, which drop the entropic term).

    ``scaling`` is the ratio of two successive blur values in geomloss' epsilon-scaling; closer to 1
    converges further at a higher cost (module docstring and docs/distill.md give measured numbers).

    ``diameter`` (an upper bound of the distance between any two points) sets the start of the
    epsilon schedule. Pass it (here or per call) to avoid a device-to-host synchronisation; with
    ``None`` geomloss estimates it from the data, which reads one number back from the device.
    :class:`RelationalOTLoss` passes an analytic bound on accelerators (see its ``diameter``).

    The caller's grad mode is restored after the call (geomloss re-enables grad inside ``no_grad``),
    and under ``no_grad`` the result carries no graph. Non-finite input raises (see
    :func:`check_finite`). Half-precision inputs run in float32.

    ``backend="fused"`` (default): geomloss' tensorized algorithm (dense ``n x m`` cost matrices, the
    fastest for the batch sizes of KD) with an in-place soft-min kernel, same values within float32
    rounding and 10-30 % faster (:mod:`mtpkdot.distill._sinkhorn`). Any geomloss backend name
    (``"tensorized"``, ``"online"``, ``"multiscale"``, ``"auto"``) calls ``geomloss.SamplesLoss`` itself.
    """

    def __init__(
        self,
        blur: float = 0.1,
        p: int = 2,
        debias: bool = True,
        scaling: float = 0.5,
        diameter: float | None = None,
        check_finite: FiniteCheck = "async",
        backend: str = "fused",
    ) -> None:
        super().__init__()
        if p not in (1, 2):
            raise ValueError(f"SinkhornLoss: p must be 1 or 2, got {p}")
        if blur <= 0:
            raise ValueError(f"SinkhornLoss: blur must be > 0, got {blur}")
        if not 0 < scaling < 1:
            raise ValueError(f"SinkhornLoss: scaling must be in (0, 1), got {scaling}")
        if check_finite not in ("async", "sync", "off"):
            raise ValueError(
                f"SinkhornLoss: check_finite must be 'async', 'sync' or 'off', got {check_finite!r}"
            )
        if backend not in ("fused", "tensorized", "online", "multiscale", "auto"):
            raise ValueError(
                "SinkhornLoss: backend must be 'fused' or a geomloss backend "
                f"('tensorized', 'online', 'multiscale', 'auto'), got {backend!r}"
            )
        self.blur, self.p, self.debias, self.scaling = blur, p, debias, scaling
        self.diameter, self.check_finite, self.backend = diameter, check_finite, backend
        self._samples: SamplesLoss | None = None

    def extra_repr(self) -> str:
        return (
            f"blur={self.blur}, p={self.p}, debias={self.debias}, scaling={self.scaling}, "
            f"diameter={self.diameter}, backend={self.backend!r}"
        )

    def _solver(self, diameter: float | None) -> SamplesLoss:
        # One geomloss module; the diameter may change per call (RelationalOTLoss on the CPU), and
        # SamplesLoss reads the attribute at each call.
        if self._samples is None:
            self._samples = SamplesLoss(
                "sinkhorn",
                p=self.p,
                blur=self.blur,
                debias=self.debias,
                scaling=self.scaling,
                backend="tensorized" if self.backend == "fused" else self.backend,
            )
        self._samples.diameter = diameter
        return self._samples

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, diameter: float | None = None, checked: bool = False
    ) -> torch.Tensor:
        """``checked=True``: the caller has already verified that both clouds are finite."""
        if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"SinkhornLoss expects two point clouds n x d and m x d, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        if not checked:
            check_finite(x, y, name="SinkhornLoss: the point clouds", mode=self.check_finite)
        diameter = self.diameter if diameter is None else float(diameter)
        grad_mode = torch.is_grad_enabled()
        try:
            with _similarity.full_precision(x.device.type):
                if self.backend == "fused" and _sinkhorn.AVAILABLE:
                    value = _sinkhorn.sinkhorn_divergence(
                        x,
                        y,
                        p=self.p,
                        blur=self.blur,
                        scaling=self.scaling,
                        debias=self.debias,
                        diameter=diameter,
                    )
                else:
                    value = self._solver(diameter)(x, y)
        finally:
            torch.set_grad_enabled(grad_mode)
        return value if grad_mode else value.detach()


def relational_clouds(
    student: torch.Tensor, teacher: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The two ``b x k`` row clouds of the relational loss and the similarity matrices they come from.

    Similarity matrices (Eqs. 2-5), each shifted by its own minimum (``S - S.min()``, non-negative; the
    student's minimum is part of the graph), anchors from the teacher (ascending similarity), the same
    columns gathered from the student. ``k`` is clipped to ``b - 1`` for small batches. Returns
    ``(x_student, y_teacher, S_student, S_teacher, k_used)``; the teacher side carries no graph.
    """
    b = student.shape[0]
    with torch.no_grad():
        s_t = similarity_matrix(teacher.detach())
        k = min(k, b - 1)
        idx = select_anchors(s_t, k)
        y = s_t.gather(1, idx) - s_t.min()
    s_s = similarity_matrix(student)
    # gather, then shift: the same values as shifting the whole b x b matrix first, with less work
    x = s_s.gather(1, idx) - s_s.min()
    return x, y, s_s, s_t, k


class RelationalOTLoss(nn.Module):
    """Relational KD of PKDOT / MT-PKDOT: Sinkhorn between anchor rows of similarity matrices (+ Eq. 9).

    ``loss(student_features, teacher_features)`` with ``b x d_s`` and ``b x d_t`` features (dims may
    differ; leading axes of ``B x L x d`` inputs are flattened) returns ``{"ot": scalar}`` and, when
    ``centroid`` is ``"similarity"`` or ``"features"``, ``"centroid"`` (see
    :func:`mtpkdot.distill.centroid_loss`; ``"features"`` needs equal dims).

    Steps (paper section III-B/C, Eqs. 2-7): cosine similarity matrices of both sides; each shifted by its
    own minimum; per row the ``k`` least-similar teacher columns in ascending order; the same columns of
    the student; the debiased Sinkhorn divergence (:class:`SinkhornLoss`) between the two clouds of
    ``b`` points in R^k. The teacher side is computed without a graph and every step stays on the device.

    ``diameter`` sets the start of the epsilon schedule without a device-to-host copy:
    ``"auto"`` (default) uses the analytic bound ``2 * sqrt(k)`` on an accelerator (shifted similarities
    lie in [0, 2]) and, on the CPU, where reading a value is no synchronisation, the bounding-box
    diagonal of the two clouds as geomloss estimates it (typically 5-15x smaller for trained features,
    so 3-4 fewer Sinkhorn iterations at ``scaling=0.5``); ``"bound"`` always uses the analytic bound; a
    number is used as given. At ``scaling=0.5`` the schedules give values that differ by about 1e-3
    relative (both within the accuracy of that scaling, see the module docstring).

    Small batches: with ``b <= k`` the loss uses ``k = b - 1`` anchors (a short last batch still
    trains); with ``b < 2`` there is no relation to distil and every term is a zero connected to the
    student graph.

    Under ``torch.distributed`` (and ``gather=True``) the student features are all-gathered with
    gradient and the teacher features without, so the loss is computed on the global batch; the value
    is the global loss on every rank and DDP's gradient average yields the single-process gradient
    (see :mod:`mtpkdot.dist`).
    """

    def __init__(
        self,
        k: int = 30,
        blur: float = 0.1,
        p: int = 2,
        debias: bool = True,
        centroid: Literal["similarity", "features"] | None = None,
        scaling: float = 0.5,
        gather: bool = True,
        check_finite: FiniteCheck = "async",
        diameter: float | Literal["auto", "bound"] = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(diameter, (int, float)) and diameter not in ("auto", "bound"):
            raise ValueError(
                f"RelationalOTLoss: diameter must be 'auto', 'bound' or a number, got {diameter!r}"
            )
        self.diameter = diameter
        if k < 1:
            raise ValueError(f"RelationalOTLoss: k must be >= 1, got {k}")
        if centroid == "none":
            centroid = None
        if centroid not in (None, "similarity", "features"):
            raise ValueError(
                f"RelationalOTLoss: centroid must be None, 'similarity' or 'features', got {centroid!r}"
            )
        self.k, self.centroid, self.gather = k, centroid, gather
        self.sinkhorn = SinkhornLoss(
            blur=blur, p=p, debias=debias, scaling=scaling, check_finite=check_finite
        )

    def extra_repr(self) -> str:
        return f"k={self.k}, centroid={self.centroid!r}, gather={self.gather}, diameter={self.diameter!r}"

    def _diameter(self, x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[float, bool]:
        """(diameter, whether the clouds were found finite on the way)."""
        if not isinstance(self.diameter, str):
            return float(self.diameter), False
        bound = 2.0 * math.sqrt(k)
        if self.diameter == "auto" and _similarity.on_host(x):
            box = bounding_box_diameter(x, y)
            if not math.isfinite(box):  # NaN or inf anywhere in the clouds makes the box non-finite
                if self.sinkhorn.check_finite != "off":
                    raise ValueError("RelationalOTLoss: the similarity clouds hold NaN or inf values")
                return bound, False
            # not below blur: identical clouds have a zero box, and the schedule needs a positive start
            return min(max(box, self.sinkhorn.blur), bound), True
        return bound, False

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        s, t = _rows(student_features), _rows(teacher_features)
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"RelationalOTLoss: student has {s.shape[0]} rows, teacher {t.shape[0]}")
        if self.centroid == "features" and s.shape[1] != t.shape[1]:
            raise ValueError(
                f"RelationalOTLoss(centroid='features') needs equal feature dims, got student {s.shape[1]} "
                f"and teacher {t.shape[1]}; use centroid='similarity'"
            )
        if self.gather and is_distributed():
            s = all_gather_with_grad(s)
            t = all_gather_no_grad(t)
        if s.shape[0] < 2:
            zero = s.sum() * 0.0
            out = {"ot": zero}
            if self.centroid is not None:
                out["centroid"] = zero
            return out
        x, y, s_s, s_t, k = relational_clouds(s, t, self.k)
        diameter, checked = self._diameter(x, y, k)
        out = {"ot": self.sinkhorn(x, y, diameter=diameter, checked=checked)}
        if self.centroid == "similarity":
            out["centroid"] = centroid_from_similarity(s_s, s_t)
        elif self.centroid == "features":
            out["centroid"] = (t.detach().float().mean(0) - s.float().mean(0)).pow(2).sum()
        return out
