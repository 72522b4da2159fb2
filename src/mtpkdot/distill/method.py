"""The ``Method`` contract shared by every student-training method (mdistiller style).

A method wraps the student and the frozen teachers and turns a batch into predictions and losses:

* ``forward_train(batch) -> (outputs, losses)``: ``losses`` holds every term unweighted (``"task"``,
  ``"ot"``, ``"centroid"``, ``"cosine"``, ``"mse"``, ``"kl"`` as applicable) and ``"total"`` (weighted,
  the one to back-propagate);
* ``forward_test(batch) -> outputs``: reads only ``batch["student"]``; the student path never receives a
  privileged modality;
* the teacher pool stays in eval mode whatever ``train()`` is called with, and never gets gradients;
* ``step_log() -> {name: device tensor}``: what the last ``forward_train`` step wants logged (MT-PKDOT:
  its teacher-selection counts ``sel_<teacher>``); the pipeline sums it over an epoch's steps on the
  device and logs the sums per epoch, so no step reads a value back to the host;
* randomness of the method's own (sampling, random projections ...) is drawn from ``self.generator``
  (a CPU ``torch.Generator`` the pipeline seeds per method), never from the global RNG: the global
  stream is shared by every student of a (seed, fold) (common random numbers: same initial weights,
  same batch order, same dropout masks), so a method that drew from it would change the others' draws.

Each method declares, as class attributes, how the results tables show it: ``label`` (its description),
``short_name`` (in the report's sentences), ``order`` (its place among the rows; the reference rows
``lower_bound`` and ``teacher`` are in :data:`mtpkdot.layout.REFERENCE_ROWS`) and ``citation``.

Batches: ``{"student": {prevalent modality: tensor}, "teacher": {every modality: cached feature tensor},
"y": labels, "mask": bool tensor or None}``. The student is called as ``student(batch["student"]) ->
(outputs, joint)``; the pool as described in :class:`mtpkdot.distill.TeacherPool`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from mtpkdot.config import DistillConfig, MethodOptions
from mtpkdot.distill.pool import TeacherPool

if TYPE_CHECKING:  # runtime import would be circular (mtpkdot.tasks uses mtpkdot.distill.losses)
    from mtpkdot.tasks import Task

__all__ = ["Method", "applicable_methods", "build_method"]

Batch = dict[str, Any]


class Method(nn.Module):
    """Base class: a student, a frozen teacher pool, a task and the distillation settings."""

    name: ClassVar[str] = "base"
    needs_teacher: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")  # task kinds it applies to
    # how the results tables show it (a method without them is shown by its name, after the others)
    label: ClassVar[str] = ""
    short_name: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    citation: ClassVar[str] = ""
    # its own settings, the config's ``distill.<name>`` section (Eq. 10's weights are shared: ``cfg``)
    options_model: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(
        self,
        student: nn.Module,
        teacher_pool: TeacherPool | None,
        task: Task,
        cfg: DistillConfig | None = None,
    ) -> None:
        super().__init__()
        cfg = DistillConfig() if cfg is None else cfg
        if task.kind not in self.tasks:
            raise ValueError(
                f"method {self.name!r} is not applicable to a {task.kind} task; remove it from "
                "student.methods (applicable: " + ", ".join(applicable_methods(task.kind)) + ")"
            )
        if self.needs_teacher and teacher_pool is None:
            raise ValueError(f"method {self.name!r} needs a teacher pool")
        self.student = student
        self.teacher_pool = teacher_pool
        self.task = task
        self.cfg = cfg
        self.options = cfg.options(self.name, self.options_model)
        # the method's own random draws (see the module docstring); the pipeline seeds it per method
        self.generator = torch.Generator().manual_seed(0)
        if teacher_pool is not None:
            teacher_pool.requires_grad_(False)
            teacher_pool.eval()

    # ------------------------------------------------------------------ modes and parameters
    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher_pool is not None:
            self.teacher_pool.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimiser steps: the student's parameters that require grad, frozen T-Nets excluded."""
        frozen = {id(p) for p in getattr(self.student, "tnets", nn.Module()).parameters()}
        own = getattr(self.student, "trainable_parameters", None)
        for p in own() if callable(own) else self.student.parameters():
            if p.requires_grad and id(p) not in frozen:
                yield p

    # ------------------------------------------------------------------ forward passes
    def forward_test(self, batch: Batch) -> torch.Tensor:
        """Student predictions from the prevalent modalities only (``batch["student"]``)."""
        outputs, _ = self.student(batch["student"])
        return outputs

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def forward(self, batch: Batch) -> Any:
        return self.forward_train(batch) if self.training else self.forward_test(batch)

    def step_log(self) -> dict[str, torch.Tensor]:
        """What the last ``forward_train`` step logs (module docstring); none by default."""
        return {}

    # ------------------------------------------------------------------ helpers for subclasses
    def _student_and_task(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs, joint = self.student(batch["student"])
        task_loss = self.task.loss(outputs, batch["y"], batch.get("mask"))
        return outputs, joint, task_loss

    def _weighted(self, task_loss: torch.Tensor, **terms: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 10: ``alpha * task + beta * (ot | cosine | mse | kl) + gamma * centroid``."""
        losses = {"task": task_loss, **terms}
        total = self.cfg.alpha * task_loss
        for key, value in terms.items():
            total = total + (self.cfg.gamma if key == "centroid" else self.cfg.beta) * value
        losses["total"] = total
        return losses


def build_method(
    name: str,
    student: nn.Module,
    teacher_pool: TeacherPool | None,
    task: Task,
    cfg: DistillConfig | None = None,
) -> Method:
    """Instantiate the registered method ``name`` (``mtpkdot list`` shows them)."""
    from mtpkdot.registry import METHODS

    return METHODS.get(name)(student, teacher_pool, task, cfg)


def applicable_methods(kind: str) -> list[str]:
    """Names of the registered methods that apply to a task kind (``classification`` / ``regression``)."""
    from mtpkdot.registry import METHODS

    return [name for name, cls in METHODS.items() if kind in cls.tasks]
