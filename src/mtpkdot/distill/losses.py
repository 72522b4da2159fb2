"""Point losses of the paper: task (Eq. 8), alignment (Eq. 1), centroid (Eq. 9) and the PKD baselines.

Every function takes plain tensors, stays on their device and never synchronises with the host. The
student side comes first, the teacher side second (``loss(student, teacher)``); teacher-side arguments
are detached: gradients never reach a teacher.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from mtpkdot.distill.similarity import similarity_matrix

# CCC lives below both distill and tasks (the task metric and loss); re-exported as public API here
from mtpkdot.metrics import CCC_EPS, ccc, ccc_loss  # noqa: F401

__all__ = [
    "alignment_loss",
    "ccc",
    "ccc_loss",
    "centroid_loss",
    "cosine_loss",
    "kl_loss",
    "mse_loss",
]


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Flatten every leading axis: ``B x L x d`` -> ``(B*L) x d`` (sequence models give one row per step)."""
    return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x


def alignment_loss(adapted_list: list[torch.Tensor], joint: torch.Tensor) -> torch.Tensor:
    """Self-distillation alignment (Eq. 1, Alg. 1): ``sum_i mean_batch(1 - cos(F'_i, F_joint))``.

    ``F_joint`` is detached (the joint teacher is frozen), so only the adapted features move; the
    released code did not detach it and retrained the joint model instead.
    """
    if not adapted_list:
        raise ValueError("alignment_loss needs at least one adapted feature tensor")
    target = _rows(joint.detach())
    total = joint.new_zeros(())
    for i, adapted in enumerate(adapted_list):
        a = _rows(adapted)
        if a.shape != target.shape:
            raise ValueError(
                f"alignment_loss: adapted feature {i} has shape {tuple(a.shape)}, joint {tuple(target.shape)}"
            )
        total = total + (1 - F.cosine_similarity(a, target, dim=1, eps=1e-8)).mean()
    return total


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Point-to-point cosine PKD (Aslam et al.): mean over samples of ``1 - cos(s_i, t_i)``.

    One cosine per sample, not the released code's single cosine of the flattened batch.
    """
    s, t = _rows(student), _rows(teacher.detach())
    _same_dims("cosine_loss", s, t)
    return (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Point-to-point feature MSE (Makantasis et al.): mean squared difference over all entries."""
    s, t = _rows(student), _rows(teacher.detach())
    _same_dims("mse_loss", s, t)
    return F.mse_loss(s, t)


def kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Hinton KD on softened logits: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over samples."""
    if temperature <= 0:
        raise ValueError(f"kl_loss: temperature must be > 0, got {temperature}")
    s, t = _rows(student_logits), _rows(teacher_logits.detach())
    _same_dims("kl_loss", s, t)
    log_p_s = F.log_softmax(s / temperature, dim=1)
    log_p_t = F.log_softmax(t / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def centroid_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    space: Literal["similarity", "features"] = "similarity",
) -> torch.Tensor:
    """Centroid alignment (Eq. 9): squared l2 distance between teacher and student centroids.

    ``space="similarity"`` (default): centroids are the column means of the two ``b x b`` cosine
    similarity matrices computed from the features (as the released code, which however used the
    non-squared norm); basis-free, so teacher and student dims may differ.
    ``space="features"``: the paper's literal form on the feature means; dims must agree.
    Inputs are features ``b x d`` (leading axes flattened); the teacher side is detached.
    """
    s, t = _rows(student), _rows(teacher.detach())
    if t.shape[0] != s.shape[0]:
        raise ValueError(f"centroid_loss: student has {s.shape[0]} rows, teacher {t.shape[0]}")
    if space == "similarity":
        with torch.no_grad():
            s_t = similarity_matrix(t)
        return centroid_from_similarity(similarity_matrix(s), s_t)
    if space == "features":
        if t.shape[1] != s.shape[1]:
            raise ValueError(
                f"centroid_loss(space='features') needs equal feature dims, got student {s.shape[1]} and "
                f"teacher {t.shape[1]}; use space='similarity' for features of different dims"
            )
        return (t.mean(0) - s.mean(0)).pow(2).sum()
    raise ValueError(f"centroid_loss: space must be 'similarity' or 'features', got {space!r}")


def centroid_from_similarity(s_student: torch.Tensor, s_teacher: torch.Tensor) -> torch.Tensor:
    """Squared l2 between the column means of two similarity matrices (shared by the relational loss)."""
    return (s_teacher.mean(0) - s_student.mean(0)).pow(2).sum()


def _same_dims(name: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.shape != t.shape:
        raise ValueError(
            f"{name}: student {tuple(s.shape)} and teacher {tuple(t.shape)} differ; point-to-point losses "
            "need features of the same shape (same fusion kind for teacher and student)"
        )
