"""``none``: the prevalent-only student, trained on the task alone (the paper's lower bound)."""

from __future__ import annotations

import torch

from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


@METHODS.register("none")
class NoDistillation(Method):
    """Prevalent modality only, task loss alone (lower bound); total = task (unweighted)."""

    name = "none"
    needs_teacher = False

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, _, task_loss = self._student_and_task(batch)
        return outputs, {"task": task_loss, "total": task_loss}
