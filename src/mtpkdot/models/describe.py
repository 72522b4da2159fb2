"""Parameter counts of every registered model at its default configuration (``mtpkdot list --models``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtpkdot.models.adapters import Adapter
from mtpkdot.models.backbones import build_backbone
from mtpkdot.models.fusion import build_fusion
from mtpkdot.models.heads import LinearHead
from mtpkdot.models.tnet import TNet
from mtpkdot.registry import BACKBONES, FUSIONS

# the arguments a backbone needs beyond its defaults to be built for the listing
_BACKBONE_DEMO_KWARGS: dict[str, dict[str, Any]] = {"mlp": {"in_dim": 512}}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_models() -> list[tuple[str, int]]:
    """(name, parameter count) of each backbone (512-d output), each fusion on 2 x 512 inputs with
    2 outputs, the adapter, the T-Net and a linear head, all at their default sizes."""
    rows: list[tuple[str, int]] = []
    for name in BACKBONES.names():
        kwargs = _BACKBONE_DEMO_KWARGS.get(name, {})
        label = name + "".join(f" ({k}={v})" for k, v in kwargs.items())
        rows.append((f"backbone {label}", count_parameters(build_backbone(name, **kwargs))))
    for name in FUSIONS.names():
        rows.append((f"fusion {name} (2 x 512)", count_parameters(build_fusion(name, [512, 512], 2))))
    rows.append(("adapter 512-256-512", count_parameters(Adapter())))
    rows.append(("tnet 512-256-512", count_parameters(TNet(512, 512))))
    rows.append(("linear head 512-2", count_parameters(LinearHead(512, 2))))
    return rows
