"""The distillation core: the equations of MT-PKDOT (Eqs. 1-10, Alg. 1-2) on plain tensors.

Use the losses on their own::

    from mtpkdot.distill import RelationalOTLoss
    loss = RelationalOTLoss(k=30, centroid="similarity")
    terms = loss(student_features, teacher_features)   # {"ot": ..., "centroid": ...}

or by their registered names through :func:`build_loss` (``mtpkdot list`` shows them), or the registered
training methods (``none``, ``cosine``, ``mse``, ``kl``, ``pkdot``, ``mtpkdot``) through
:func:`build_method`. Every loss takes the student side first: ``loss(student, teacher)``. See
docs/distill.md.
"""

from mtpkdot.distill import methods  # noqa: E402,F401  (registers the six methods)
from mtpkdot.distill.loss_registry import build_loss
from mtpkdot.distill.losses import (
    alignment_loss,
    ccc,
    ccc_loss,
    centroid_loss,
    cosine_loss,
    kl_loss,
    mse_loss,
)
from mtpkdot.distill.method import Method, build_method
from mtpkdot.distill.ot import RelationalOTLoss, SinkhornLoss, relational_clouds
from mtpkdot.distill.pool import TeacherPool
from mtpkdot.distill.selection import select_teacher
from mtpkdot.distill.similarity import select_anchors, similarity_matrix

__all__ = [
    "Method",
    "RelationalOTLoss",
    "SinkhornLoss",
    "TeacherPool",
    "alignment_loss",
    "build_loss",
    "build_method",
    "ccc",
    "ccc_loss",
    "centroid_loss",
    "cosine_loss",
    "kl_loss",
    "mse_loss",
    "relational_clouds",
    "select_anchors",
    "select_teacher",
    "similarity_matrix",
]
