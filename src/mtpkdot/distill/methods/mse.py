"""``mse``: point-to-point feature MSE PKD (Makantasis et al., TAC'23) on the joint teacher."""

from __future__ import annotations

import torch

from mtpkdot.distill.losses import mse_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


@METHODS.register("mse")
class MSEPKD(Method):
    """Point-to-point feature MSE on F_joint: alpha * task + beta * MSE."""

    name = "mse"
    label = "MSE feature PKD (Makantasis et al., TAC'23)"
    short_name = "MSE PKD"
    order = 30
    citation = 'K. Makantasis et al., "From the lab to the wild: Affect modeling via privileged information", IEEE Trans. Affective Computing 2023'

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, joint, task_loss = self._student_and_task(batch)
        teacher, _ = self.teacher_pool.joint(batch["teacher"])
        return outputs, self._weighted(task_loss, mse=mse_loss(joint, teacher))
