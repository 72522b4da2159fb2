"""``none``: the student without distillation (T-Net hallucination only), trained on the task alone.

Not a lower bound: the student sees the frozen T-Net's hallucinated privileged features, and the T-Net
was trained with the privileged modality. The prevalent modalities alone are the ``lower_bound`` row of
``summary.csv`` (the stage-1 model, or a fusion without T-Net branches; ``mtpkdot.pipeline.graph``).
"""

from __future__ import annotations

import torch

from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


@METHODS.register("none")
class NoDistillation(Method):
    """Student without distillation (T-Net hallucination only): task loss alone; total = task (unweighted)."""

    name = "none"
    label = "Student without distillation (T-Net hallucination only)"
    short_name = "the student without distillation"
    order = 10
    needs_teacher = False

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, _, task_loss = self._student_and_task(batch)
        return outputs, {"task": task_loss, "total": task_loss}
