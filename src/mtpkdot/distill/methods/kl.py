"""``kl``: logit distillation with softened KL (Hinton; the Makantasis et al. baseline)."""

from __future__ import annotations

import torch
from pydantic import Field

from mtpkdot.config import MethodOptions
from mtpkdot.distill.losses import kl_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.registry import METHODS


class KLOptions(MethodOptions):
    temperature: float = Field(4.0, gt=0, description="softening temperature of both distributions")


@METHODS.register("kl")
class KLPKD(Method):
    """KL on temperature-softened logits of the joint teacher: alpha * task + beta * T^2 KL."""

    name = "kl"
    label = "KL on softened logits (Makantasis et al., TAC'23)"
    short_name = "KL PKD"
    order = 40
    citation = 'G. E. Hinton et al., "Distilling the knowledge in a neural network", arXiv:1503.02531, 2015; as a PKD baseline: K. Makantasis et al., IEEE Trans. Affective Computing 2023'
    options_model = KLOptions
    tasks = ("classification",)  # it distils class probabilities (paper Table II: N/A for Affwild2)

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, _, task_loss = self._student_and_task(batch)
        _, teacher_outputs = self.teacher_pool.joint(batch["teacher"])
        return outputs, self._weighted(
            task_loss, kl=kl_loss(outputs, teacher_outputs, self.options.temperature)
        )
