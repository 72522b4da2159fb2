"""The student (paper Sec. IV-B "Student", Fig. 2): prevalent features + hallucinated privileged features -> fusion.

The student never sees privileged data: each privileged modality is replaced by the output of its frozen
T-Net applied to the concatenated prevalent features, and a fresh fusion module of the teacher's kind
combines all features in the teacher's modality order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn


class Student(nn.Module):
    """Student network: ``student({prevalent mod: tensor}) -> (outputs, joint)``.

    Without ``backbones`` the inputs are cached prevalent features (``B x d`` or ``B x L x d``). With
    ``backbones`` (end-to-end fine-tuning) they are raw inputs passed through ``backbones[mod]``; a raw
    input with two axes more than one item of the backbone (its declared ``input_ndim``), e.g. video
    ``B x L x C x T x H x W``, is a sequence of L clips: it is flattened to ``(B*L) x C x T x H x W`` for
    the backbone and its features are reshaped to ``B x L x d``.

    The T-Nets are frozen (no gradients, always in eval mode, also under ``student.train()``); their
    input is detached, as the released code does, so the hallucination stays a fixed function of the
    prevalent features and the task gradient reaches the backbone only through the prevalent path.
    """

    def __init__(
        self,
        fusion: nn.Module,
        tnets: Mapping[str, nn.Module],
        order: Sequence[str],
        prevalent: Sequence[str],
        backbones: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.order = list(order)
        self.prevalent = list(prevalent)
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"Student: modality order {self.order} has duplicates")
        if not self.prevalent or not set(self.prevalent) <= set(self.order):
            raise ValueError(
                f"Student: prevalent {self.prevalent} must be a non-empty subset of order {self.order}"
            )
        self.privileged = [m for m in self.order if m not in self.prevalent]
        if set(tnets) != set(self.privileged):
            raise ValueError(
                f"Student: needs one T-Net per privileged modality {self.privileged}, got {sorted(tnets)}"
            )
        in_dims = getattr(fusion, "in_dims", None)
        if in_dims is not None and len(in_dims) != len(self.order):
            raise ValueError(
                f"Student: fusion takes {len(in_dims)} modalities but order has {len(self.order)}"
            )
        if backbones is not None and set(backbones) != set(self.prevalent):
            raise ValueError(
                f"Student: backbones must be given for exactly the prevalent modalities {self.prevalent}, "
                f"got {sorted(backbones)}"
            )
        self.fusion = fusion
        self.tnets = nn.ModuleDict(dict(tnets))
        self.tnets.requires_grad_(False)
        self.tnets.eval()
        self.backbones = nn.ModuleDict(dict(backbones)) if backbones is not None else None

    def train(self, mode: bool = True) -> Student:
        super().train(mode)
        self.tnets.eval()  # frozen: dropout/normalisation must not change with the student's mode
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimiser steps: the fusion, and the backbones when fine-tuning."""
        yield from self.fusion.parameters()
        if self.backbones is not None:
            yield from self.backbones.parameters()

    def _check_inputs(self, inputs: Mapping[str, Tensor]) -> None:
        extra = [m for m in inputs if m not in self.prevalent]
        if extra:
            privileged = [m for m in extra if m in self.privileged]
            what = f"privileged modality {privileged}" if privileged else f"unknown modality {extra}"
            raise ValueError(
                f"Student received {what}: only the prevalent modalities {self.prevalent} may enter the "
                "student (privileged data is not available at test time)"
            )
        missing = [m for m in self.prevalent if m not in inputs]
        if missing:
            raise ValueError(f"Student: prevalent modality {missing} is missing from the inputs")

    def _encode_one(self, mod: str, x: Tensor) -> Tensor:
        if self.backbones is None:
            return x
        backbone = self.backbones[mod]
        ndim = getattr(backbone, "input_ndim", None)  # axes of one item, set by build_backbone
        if ndim is not None and x.dim() == ndim + 2:
            b, seq = x.shape[:2]
            return backbone(x.flatten(0, 1)).reshape(b, seq, -1)
        return backbone(x)

    def encode(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Features of every modality in ``order``: prevalent ones encoded, privileged ones hallucinated."""
        self._check_inputs(inputs)
        feats = {m: self._encode_one(m, inputs[m]) for m in self.prevalent}
        shapes = {tuple(f.shape[:-1]) for f in feats.values()}
        if len(shapes) != 1:
            raise ValueError(f"Student: prevalent features differ in their leading axes: {sorted(shapes)}")
        source = torch.cat([feats[m] for m in self.prevalent], dim=-1).detach()
        for m in self.privileged:
            feats[m] = self.tnets[m](source)
        return {m: feats[m] for m in self.order}

    def forward(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        feats = self.encode(inputs)
        return self.fusion([feats[m] for m in self.order])
