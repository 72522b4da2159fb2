"""``cosine``: point-to-point cosine feature PKD (Aslam et al., CVPRw'23) on the joint teacher."""

from __future__ import annotations

import torch

from mtpkdot.distill.losses import cosine_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


@METHODS.register("cosine")
class CosinePKD(Method):
    """Point-to-point cosine PKD on F_joint: alpha * task + beta * mean(1 - cos)."""

    name = "cosine"
    label = "Cosine feature PKD (Aslam et al., CVPRw'23)"
    short_name = "Cosine PKD"
    order = 20
    citation = 'M. H. Aslam et al., "Privileged knowledge distillation for dimensional emotion recognition in the wild", CVPR Workshops 2023'

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, joint, task_loss = self._student_and_task(batch)
        teacher, _ = self.teacher_pool.joint(batch["teacher"])
        return outputs, self._weighted(task_loss, cosine=cosine_loss(joint, teacher))
