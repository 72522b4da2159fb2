"""``mtpkdot``: MT-PKDOT (paper Alg. 2): teacher pool, per-batch selection, relational OT + centroid."""

from __future__ import annotations

from typing import Literal

import torch

from mtpkdot.dist import all_reduce_mean, is_distributed
from mtpkdot.distill.loss_registry import build_loss
from mtpkdot.distill.method import Batch, Method
from mtpkdot.distill.methods.pkdot import PKDOTOptions
from mtpkdot.distill.selection import select_teacher
from mtpkdot.registry import METHODS


class MTPKDOTOptions(PKDOTOptions):
    """PKDOT's relational OT settings, the centroid term and the teacher selection (Alg. 2)."""

    centroid: Literal["similarity", "features", "none"] = "similarity"
    selection: Literal["per_batch", "per_sample"] = "per_batch"


@METHODS.register("mtpkdot")
class MTPKDOT(Method):
    """Multi-teacher pool, least-task-loss selection, alpha * task + beta * OT + gamma * centroid."""

    name = "mtpkdot"
    label = "MT-PKDOT (multi-teacher, OT + centroid)"
    short_name = "MT-PKDOT"
    order = 60
    citation = 'M. H. Aslam et al., "Multi Teacher Privileged Knowledge Distillation for Multimodal Expression Recognition"'
    options_model = MTPKDOTOptions

    def __init__(self, student, teacher_pool, task, cfg=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(student, teacher_pool, task, cfg)
        c = self.options
        centroid = None if c.centroid == "none" else c.centroid
        self.relational = build_loss(
            "relational_ot", k=c.k, blur=c.blur, p=c.p, debias=c.debias, centroid=centroid, scaling=c.scaling
        )
        self.per_sample = c.selection == "per_sample"
        self._selection: torch.Tensor | None = None

    def step_log(self) -> dict[str, torch.Tensor]:
        """``sel_<teacher>``: how often each teacher was selected in the last step (batches, 0/1, with
        per-batch selection; samples with per-sample selection), as device tensors."""
        if self._selection is None:
            return {}
        return {f"sel_{n}": c for n, c in zip(self.teacher_pool.names, self._selection, strict=True)}

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs, joint, task_loss = self._student_and_task(batch)
        teachers = self.teacher_pool(batch["teacher"])
        names = self.teacher_pool.names
        y, mask = batch["y"], batch.get("mask")
        feats = [teachers[n][0] for n in names]
        if self.per_sample:
            per = torch.stack([self.task.per_sample_loss(teachers[n][1], y, mask) for n in names])
            choice = select_teacher(per, self.teacher_pool.joint_index, per_sample=True)
            stacked = self._stack(feats, "per-sample selection")
            flat = stacked.reshape(len(names), -1, stacked.shape[-1])
            teacher = flat[choice, torch.arange(flat.shape[1], device=flat.device)]
            counts = torch.bincount(choice, minlength=len(names))
        else:
            losses = torch.stack([self.task.loss(teachers[n][1], y, mask) for n in names])
            if is_distributed():
                # Every rank must distil from the same teacher: select on the mean of the rank losses.
                losses = all_reduce_mean(losses)
            choice = select_teacher(losses, self.teacher_pool.joint_index)
            if all(f.shape == feats[0].shape for f in feats):
                teacher = torch.index_select(torch.stack(feats), 0, choice.view(1)).squeeze(0)
            else:
                teacher = feats[int(choice)]  # different dims: a Python choice, one host read
            counts = torch.nn.functional.one_hot(choice, len(names))
        self._selection = counts.detach()
        return outputs, self._weighted(task_loss, **self.relational(joint, teacher))

    @staticmethod
    def _stack(feats: list[torch.Tensor], what: str) -> torch.Tensor:
        if any(f.shape != feats[0].shape for f in feats):
            shapes = [tuple(f.shape) for f in feats]
            raise ValueError(f"mtpkdot {what} needs teacher features of one shape, got {shapes}")
        return torch.stack(feats)
