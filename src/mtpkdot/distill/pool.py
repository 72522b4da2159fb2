"""The frozen multi-teacher pool of MT-PKDOT (paper section III-A and Alg. 2)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["TeacherPool"]


class TeacherPool(nn.Module):
    """Frozen teachers: one adapted teacher per modality (adapter + head) and the joint fusion teacher.

    ``pool(features)`` maps cached backbone features ``{modality: tensor}`` to
    ``{name: (teacher_features, teacher_outputs)}`` with names ``"<modality>"`` for each adapted teacher
    (in ``order``) and ``"joint"`` last (``F_joint`` and the fusion outputs). Parameters never require
    grad, the pool is always in eval mode (``train()`` is a no-op for it) and runs under ``no_grad``.
    An empty ``adapters`` dict gives the single joint teacher of PKDOT and the point-to-point baselines.
    """

    def __init__(
        self,
        fusion: nn.Module,
        adapters: Mapping[str, nn.Module] | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        order: list[str] | None = None,
    ) -> None:
        super().__init__()
        adapters = dict(adapters or {})
        heads = dict(heads or {})
        if set(adapters) != set(heads):
            raise ValueError(
                f"TeacherPool: adapters {sorted(adapters)} and heads {sorted(heads)} must name the same modalities"
            )
        self.order = list(order) if order is not None else sorted(adapters)
        missing = [m for m in adapters if m not in self.order]
        if missing:
            raise ValueError(f"TeacherPool: adapted modalities {missing} are not in order {self.order}")
        if "joint" in adapters:
            raise ValueError("TeacherPool: 'joint' is reserved for the fusion teacher")
        self.fusion = fusion
        self.adapters = nn.ModuleDict(adapters)
        self.heads = nn.ModuleDict(heads)
        self.requires_grad_(False)
        super().train(False)

    @property
    def names(self) -> list[str]:
        """Teacher names in pool order: adapted modalities (in ``order``), then ``"joint"``."""
        return [m for m in self.order if m in self.adapters] + ["joint"]

    @property
    def joint_index(self) -> int:
        return len(self.names) - 1

    def train(self, mode: bool = True) -> TeacherPool:
        # Frozen teachers: dropout and batch-norm statistics must not change during student training.
        return super().train(False)

    def _inputs(self, features: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [m for m in self.order if m not in features]
        if missing:
            raise KeyError(
                f"TeacherPool: batch['teacher'] lacks modalities {missing} (has {sorted(features)})"
            )
        return [features[m] for m in self.order]

    @torch.no_grad()
    def joint(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint teacher only: ``(F_joint, outputs)``."""
        outputs, joint = self.fusion(self._inputs(features))
        return joint, outputs

    @torch.no_grad()
    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        self._inputs(features)  # clear error for a missing modality
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in self.names[:-1]:
            adapted = self.adapters[m](features[m])
            out[m] = (adapted, self.heads[m](adapted))
        out["joint"] = self.joint(features)
        return out
