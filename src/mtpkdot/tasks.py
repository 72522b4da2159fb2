"""The prediction task: its loss (paper Eq. 8), per-sample loss (teacher selection) and metrics.

``Task(kind, num_outputs, names)`` covers classification (cross-entropy, accuracy in percent) and
regression (mean over targets of 1 - CCC with population moments, CCC per target on all valid values).
Predictions ``... x C`` and labels (``...`` class ids, or ``... x C`` targets) may carry any leading axes
(``B x L`` for sequences): they are flattened. ``mask`` (bool) marks valid labels: same shape as the
class-id labels, or for regression the shape of the targets or of their leading axes; regression labels
that are NaN (Affwild2 frames annotated -5, stored as NaN) count as invalid as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from mtpkdot.metrics import ccc

__all__ = ["TASKS", "Task"]

# Named tasks of the paper's datasets: task name -> (kind, output names).
TASKS: dict[str, tuple[str, list[str]]] = {
    "bl1_pa4": ("classification", ["BL1", "PA4"]),
    "five_class": ("classification", ["BL1", "PA1", "PA2", "PA3", "PA4"]),
    "va": ("regression", ["valence", "arousal"]),
}


@dataclass
class Task:
    """A classification or regression task: loss, per-sample loss, metrics and the selection metric."""

    kind: Literal["classification", "regression"]
    num_outputs: int
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"Task.kind must be 'classification' or 'regression', got {self.kind!r}")
        if self.num_outputs < 1 or (self.kind == "classification" and self.num_outputs < 2):
            raise ValueError(f"Task: {self.kind} needs more outputs, got num_outputs={self.num_outputs}")
        if not self.names:
            prefix = "class" if self.kind == "classification" else "target"
            self.names = [f"{prefix}{i}" for i in range(self.num_outputs)]
        if len(self.names) != self.num_outputs:
            raise ValueError(f"Task: {len(self.names)} names for {self.num_outputs} outputs")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_name(cls, task: str) -> Task:
        """``bl1_pa4`` | ``five_class`` | ``va``, or ``classification:<n>`` / ``classification:a,b,...`` /
        ``regression:<name>,<name>,...`` for other data."""
        if task in TASKS:
            kind, names = TASKS[task]
            return cls(kind, len(names), list(names))  # type: ignore[arg-type]
        kind, _, spec = task.partition(":")
        if kind in ("classification", "regression") and spec:
            if kind == "classification" and spec.isdigit():
                return cls("classification", int(spec))
            names = [n.strip() for n in spec.split(",") if n.strip()]
            return cls(kind, len(names), names)  # type: ignore[arg-type]
        raise ValueError(
            f"unknown task {task!r}: use one of {sorted(TASKS)}, 'classification:<n>', "
            "'classification:<a>,<b>,...' or 'regression:<name>,...'"
        )

    @classmethod
    def for_dataset(cls, dataset: str, task: str) -> Task:
        """The task ``task`` of a registered dataset (``data.dataset``, ``data.task`` in the config): a
        named task must be one the dataset's reader declares (its ``tasks``; a reader without named
        tasks, or a dataset not registered, takes any)."""
        from mtpkdot.registry import DATASETS

        allowed = DATASETS.get(dataset).tasks if dataset in DATASETS else None
        if allowed is not None and task not in allowed and ":" not in task:
            raise ValueError(
                f"data.task {task!r} does not exist for dataset {dataset!r}; choose one of {list(allowed)}"
            )
        return cls.from_name(task)

    @classmethod
    def from_config(cls, cfg: Any) -> Task:
        """From a :class:`mtpkdot.config.Config` (or its ``data`` section): ``data.dataset`` + ``data.task``."""
        data = getattr(cfg, "data", cfg)
        return cls.for_dataset(data.dataset, data.task)

    # ------------------------------------------------------------------ properties
    @property
    def primary_metric(self) -> str:
        """Metric used for model selection (higher is better)."""
        return "accuracy" if self.kind == "classification" else "ccc_mean"

    # ------------------------------------------------------------------ flattening
    def _flat(
        self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pred n x C, labels, valid) with leading axes flattened; ``valid`` is n (cls) or n x C (reg)."""
        c = self.num_outputs
        if pred.dtype in (torch.float16, torch.bfloat16):
            pred = pred.float()  # CE / CCC moments in full precision under AMP
        if pred.shape[-1] != c:
            raise ValueError(f"Task: predictions have {pred.shape[-1]} outputs, the task has {c}")
        if self.kind == "classification":
            if y.shape != pred.shape[:-1]:
                raise ValueError(
                    f"Task: labels {tuple(y.shape)} do not match predictions {tuple(pred.shape)}"
                )
            valid = torch.ones_like(y, dtype=torch.bool) if mask is None else mask.to(torch.bool)
            if valid.shape != y.shape:
                raise ValueError(f"Task: mask {tuple(valid.shape)} does not match labels {tuple(y.shape)}")
            return pred.reshape(-1, c), y.reshape(-1).long(), valid.reshape(-1)
        if y.dim() == pred.dim() + 1:
            # One prediction per clip covers every frame of that clip (B x L x C vs B x L x F x C).
            pred = pred.unsqueeze(-2).expand(*pred.shape[:-1], y.shape[-2], c)
        if y.shape != pred.shape:
            raise ValueError(f"Task: targets {tuple(y.shape)} do not match predictions {tuple(pred.shape)}")
        valid = torch.isfinite(y)
        if mask is not None:
            mask = mask.to(torch.bool)
            if mask.shape == y.shape[:-1]:
                mask = mask.unsqueeze(-1)
            valid = valid & mask.expand_as(y)
        return pred.reshape(-1, c), y.reshape(-1, c), valid.reshape(-1, c)

    # ------------------------------------------------------------------ losses
    def loss(self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Task loss (Eq. 8): cross-entropy over valid samples, or the mean over targets of 1 - CCC."""
        p, t, valid = self._flat(pred, y, mask)
        if self.kind == "classification":
            per = F.cross_entropy(p, torch.where(valid, t, torch.zeros_like(t)), reduction="none")
            w = valid.to(per.dtype)
            return (per * w).sum() / w.sum().clamp_min(1)
        return (1 - ccc(p, t, valid)).mean()

    def per_sample_loss(
        self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss per prediction row ``(n,)`` (leading axes of ``pred`` flattened), 0 where nothing is valid.

        Cross-entropy, or for regression the mean squared error over the valid targets of the row (and
        over its frames when the labels carry a frame axis); CCC is not defined on a single sample. Used by
        per-sample teacher selection.
        """
        if self.kind == "classification":
            p, t, valid = self._flat(pred, y, mask)
            per = F.cross_entropy(p, torch.where(valid, t, torch.zeros_like(t)), reduction="none")
            return per * valid.to(per.dtype)
        rows = pred.shape[:-1].numel()
        p, t, valid = self._flat(pred, y, mask)
        w = valid.to(p.dtype).reshape(rows, -1)
        err = (p - torch.where(valid, t, p)).pow(2).reshape(rows, -1) * w
        return err.sum(1) / w.sum(1).clamp_min(1)

    # ------------------------------------------------------------------ metrics
    @torch.no_grad()
    def metrics(
        self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, float]:
        """``{"accuracy": percent}``, or ``{"ccc_<name>": ..., "ccc_mean": ...}`` with each CCC computed on
        every valid value concatenated (not a mean of per-video CCCs) and ``ccc_mean`` their mean."""
        p, t, valid = self._flat(pred.detach(), y.detach(), mask)
        if self.kind == "classification":
            correct = ((p.argmax(1) == t) & valid).sum()
            total = valid.sum().clamp_min(1)
            return {"accuracy": float(100.0 * correct / total)}
        values = ccc(p.double(), t.double(), valid)
        out = {f"ccc_{name}": float(v) for name, v in zip(self.names, values, strict=True)}
        out["ccc_mean"] = float(values.mean())
        return out
