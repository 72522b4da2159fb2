"""``pkdot``: PKDOT (Aslam et al.), relational OT distillation from the single joint teacher."""

from __future__ import annotations

import torch
from pydantic import Field

from mtpkdot.config import MethodOptions
from mtpkdot.distill.loss_registry import build_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


class PKDOTOptions(MethodOptions):
    """Relational OT settings (section III of the paper)."""

    k: int = Field(30, ge=1, description="anchors per row")
    blur: float = Field(0.1, gt=0)
    p: int = Field(2, ge=1, le=2)
    debias: bool = True
    scaling: float = Field(0.5, gt=0, lt=1)


@METHODS.register("pkdot")
class PKDOT(Method):
    """Single joint teacher, relational OT: alpha * task + beta * OT (no centroid)."""

    name = "pkdot"
    label = "PKDOT (single joint teacher, OT)"
    short_name = "PKDOT"
    order = 50
    citation = 'M. H. Aslam et al., "Distilling privileged multimodal information for expression recognition using optimal transport", IEEE FG 2024'
    options_model = PKDOTOptions

    def __init__(self, student, teacher_pool, task, cfg=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(student, teacher_pool, task, cfg)
        c = self.options
        self.relational = build_loss(
            "relational_ot", k=c.k, blur=c.blur, p=c.p, debias=c.debias, centroid=None, scaling=c.scaling
        )

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, joint, task_loss = self._student_and_task(batch)
        teacher, _ = self.teacher_pool.joint(batch["teacher"])
        return outputs, self._weighted(task_loss, **self.relational(joint, teacher))
