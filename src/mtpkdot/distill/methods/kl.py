"""``kl``: logit distillation with softened KL (Hinton; the Makantasis et al. baseline)."""

from __future__ import annotations

import torch

from mtpkdot.distill.losses import kl_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


@METHODS.register("kl")
class KLPKD(Method):
    """KL on temperature-softened logits of the joint teacher: alpha * task + beta * T^2 KL."""

    name = "kl"

    def __init__(self, student, teacher_pool, task, cfg=None) -> None:  # type: ignore[no-untyped-def]
        if task.kind != "classification":
            raise ValueError(
                "method 'kl' is not applicable to a regression task (it distils class probabilities); "
                "remove 'kl' from student.methods or use cosine, mse, pkdot or mtpkdot"
            )
        super().__init__(student, teacher_pool, task, cfg)

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, _, task_loss = self._student_and_task(batch)
        _, teacher_outputs = self.teacher_pool.joint(batch["teacher"])
        return outputs, self._weighted(task_loss, kl=kl_loss(outputs, teacher_outputs, self.cfg.temperature))
