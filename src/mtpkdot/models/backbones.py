"""Unimodal backbones (paper section IV-B, stage 1): each maps one modality's batch to a feature vector.

Every backbone has ``out_dim`` (the feature size, 512 by default). It registers with
:func:`register_backbone`, declaring what the pipeline needs to feed it: ``input_ndim``, the axes of ONE
store item it consumes (4 for video ``T x H x W x 3``, 3 for spectrograms ``C x F x T``, 2 for signals
``C x T``, 1 for feature vectors ``D``); the constructor arguments read from the item's shape
(``in_channels``, ``in_dim``); whether it takes pretrained ``weights=``. A built backbone carries its
``input_ndim``, which :class:`mtpkdot.models.Student` uses to recognise an extra sequence axis.

``r3d_18`` and ``resnet18_spec`` use torchvision's architectures and state-dict key names, so a
torchvision checkpoint file loads with ``weights=PATH`` (torchvision itself is not needed, and nothing
is ever downloaded). Both end at the pooled 512-d features: torchvision's classifier ``fc`` is not part
of them. When ``out_dim != 512`` a linear projection with the key ``proj`` follows the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtpkdot.models._call import call_checked
from mtpkdot.registry import BACKBONES

log = logging.getLogger(__name__)

RESNET_WIDTHS = (64, 128, 256, 512)


def _projection(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)


def _add_resnet_layers(net: nn.Module, block: type[nn.Module]) -> None:
    """ResNet-18's ``layer1``..``layer4`` (torchvision's keys): two ``block``s each, the first of
    layers 2-4 with stride 2, widths RESNET_WIDTHS from a 64-channel stem."""
    inplanes = 64
    for i, planes in enumerate(RESNET_WIDTHS, start=1):
        stride = 1 if i == 1 else 2
        net.add_module(f"layer{i}", nn.Sequential(block(inplanes, planes, stride), block(planes, planes, 1)))
        inplanes = planes


# ---------------------------------------------------------------------------------------------------
# R3D-18 (torchvision.models.video.r3d_18 without its classifier)
# ---------------------------------------------------------------------------------------------------


class _Block3d(nn.Module):
    """torchvision's video ``BasicBlock`` with ``Conv3DSimple``: keys ``conv1.0``, ``conv1.1``, ``conv2.0``..."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv3d(planes, planes, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(planes),
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R3D18(nn.Module):
    """R3D-18 (Tran et al. 2018) as torchvision builds it, ending at the pooled 512-d clip feature."""

    def __init__(self, out_dim: int = 512) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        _add_resnet_layers(self, _Block3d)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.proj = _projection(512, out_dim)
        _init_like_torchvision(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.proj(self.avgpool(x).flatten(1))


# ---------------------------------------------------------------------------------------------------
# ResNet-18 on spectrograms (torchvision.models.resnet18 without its classifier, any input channels)
# ---------------------------------------------------------------------------------------------------


class _Block2d(nn.Module):
    """torchvision's ``BasicBlock``: keys ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0/1``."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class ResNet18Spec(nn.Module):
    """ResNet-18 with its own ``conv1``/``bn1`` for ``in_channels`` spectrogram channels (e.g. 1 x 65 x 127)."""

    def __init__(self, out_dim: int = 512, in_channels: int = 1) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        _add_resnet_layers(self, _Block2d)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.proj = _projection(512, out_dim)
        _init_like_torchvision(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.proj(self.avgpool(x).flatten(1))


def _init_like_torchvision(module: nn.Module) -> None:
    # the same initialisation as torchvision, so training from scratch behaves like the reference models
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------
# Small models: tiny3d (CPU demo video), cnn1d (raw signals), mlp (feature vectors)
# ---------------------------------------------------------------------------------------------------


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return {1: nn.BatchNorm1d, 3: nn.BatchNorm3d}[dims](channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class Tiny3D(nn.Module):
    """Four 3D conv layers (stride 2) and a global pool: a few hundred thousand parameters for CPU demos."""

    def __init__(
        self, out_dim: int = 512, in_channels: int = 3, width: int = 16, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        widths = [width, 2 * width, 4 * width, 8 * width]
        # the stem keeps the (short) time axis and halves space; later layers halve all three axes
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, widths[0], (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
            _norm(norm, 3, widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv3d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                _norm(norm, 3, c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.proj = nn.Linear(widths[-1], out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(self.features(x)).flatten(1))


class CNN1D(nn.Module):
    """Five Conv1d-BN-ReLU-MaxPool blocks and a global average pool over time: any signal length."""

    def __init__(
        self,
        out_dim: int = 512,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        kernels: Sequence[int] = (7, 5, 5, 5, 5),
        pool: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError(f"cnn1d: channels {list(channels)} and kernels {list(kernels)} differ in length")
        self.out_dim = out_dim
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, k in zip(channels, kernels, strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False),
                _norm(norm, 1, c_out),
                nn.ReLU(inplace=True),
                # ceil_mode keeps at least one step, so very short signals still pass
                nn.MaxPool1d(pool, ceil_mode=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.proj = _projection(c_in, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(self.features(x)).flatten(1))


class MLPBackbone(nn.Module):
    """Linear-ReLU layers on precomputed feature vectors ``B x in_dim``."""

    def __init__(
        self, in_dim: int, out_dim: int = 512, hidden: Sequence[int] = (512,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------------
# Pretrained weights (torchvision checkpoint files; never downloaded)
# ---------------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a checkpoint file (plain, or wrapped in ``state_dict``/``model``; DDP prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; weights are never downloaded: fetch the torchvision "
            "checkpoint (e.g. r3d_18-b3b3357e.pth or resnet18-f37072fd.pth) yourself and pass its path"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"weights file {path} is not a readable torch checkpoint: {exc}") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_torchvision_weights(
    module: nn.Module, path: str | Path, droppable: Sequence[str] = ("fc.",), name: str = "backbone"
) -> list[str]:
    """Load a torchvision-format checkpoint into ``module``, strictly except for known parts.

    Keys starting with one of ``droppable`` (the classifier ``fc`` always, ``conv1`` for a spectrogram
    ResNet whose channel count differs) are dropped with a logged message when the module has no such
    key or its shape differs. The module's own ``proj`` keeps its initialisation. Every other key must
    match in name and shape, or a ``ValueError`` names the offending keys. Returns the dropped keys.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    dropped = []
    for key in list(state):
        if key.startswith(tuple(droppable)) and (key not in own or own[key].shape != state[key].shape):
            dropped.append(key)
            del state[key]
    # own keys that stay at their initialisation: the projection, and droppable keys whose shape differs
    missing = [k for k in own if k not in state and not k.startswith("proj.") and k not in dropped]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} ({len(keys)})")
        raise ValueError(f"{name}: weights file {path} does not match the architecture; " + "; ".join(parts))
    module.load_state_dict(state, strict=False)  # strictness was checked above, key by key
    if dropped:
        log.warning(
            "%s: loaded %s without %s (not part of this backbone or shape differs)",
            name,
            path,
            ", ".join(dropped),
        )
    return dropped


# ---------------------------------------------------------------------------------------------------
# Registered factories
# ---------------------------------------------------------------------------------------------------


@dataclass
class Backbone:
    """A registered backbone: its factory and what the pipeline needs to know to feed it.

    ``input_ndim``: axes of one store item (batch and sequence axes excluded). ``shape_args``:
    constructor argument -> axis of the item it is read from (``{"in_channels": 0}``). ``weights``:
    whether the factory takes a pretrained checkpoint as ``weights=PATH``.
    """

    build: Callable[..., nn.Module]
    input_ndim: int
    shape_args: dict[str, int] = field(default_factory=dict)
    weights: bool = False

    def __post_init__(self) -> None:
        self.__doc__ = self.build.__doc__  # `mtpkdot list` shows the factory's own description

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.build(*args, **kwargs)


def register_backbone(
    name: str, *, input_ndim: int, shape_args: Mapping[str, int] | None = None, weights: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a backbone factory under ``name`` with its declarations (see :class:`Backbone`).

    The factory takes ``out_dim`` and returns a module mapping a batch of items to ``B x out_dim``.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONES.register(name)(Backbone(factory, input_ndim, dict(shape_args or {}), weights))
        return factory

    return deco


@register_backbone("r3d_18", input_ndim=4, weights=True)
def r3d_18(out_dim: int = 512, weights: str | Path | None = None) -> R3D18:
    """R3D-18 video backbone, clips B x 3 x T x 112 x 112, torchvision keys (paper IV-B, Biovid visual)."""
    model = R3D18(out_dim=out_dim)
    if weights is not None:
        load_torchvision_weights(model, weights, droppable=("fc.",), name="r3d_18")
    return model


@register_backbone("tiny3d", input_ndim=4)
def tiny3d(out_dim: int = 512, in_channels: int = 3, width: int = 16, norm: str = "batch") -> Tiny3D:
    """Small 3D CNN for CPU demos, clips B x 3 x T x 64 x 64 (stand-in for R3D-18, paper IV-B)."""
    return Tiny3D(out_dim=out_dim, in_channels=in_channels, width=width, norm=norm)


@register_backbone("resnet18_spec", input_ndim=3, shape_args={"in_channels": 0}, weights=True)
def resnet18_spec(
    out_dim: int = 512, in_channels: int = 1, weights: str | Path | None = None
) -> ResNet18Spec:
    """ResNet-18 on spectrograms B x C x F x T (paper IV-B: EMG 65 x 127, audio 64 x 107)."""
    model = ResNet18Spec(out_dim=out_dim, in_channels=in_channels)
    if weights is not None:
        # an ImageNet checkpoint has a 3-channel conv1: keep ours when the channel count differs
        load_torchvision_weights(model, weights, droppable=("fc.", "conv1."), name="resnet18_spec")
    return model


@register_backbone("cnn1d", input_ndim=2, shape_args={"in_channels": 0})
def cnn1d(
    out_dim: int = 512,
    in_channels: int = 1,
    channels: Sequence[int] = (32, 64, 128, 256, 512),
    kernels: Sequence[int] = (7, 5, 5, 5, 5),
    pool: int = 4,
    norm: str = "batch",
) -> CNN1D:
    """1D CNN on raw signals B x C x T of any length (paper IV-B, Biovid A EDA)."""
    return CNN1D(out_dim, in_channels, channels=channels, kernels=kernels, pool=pool, norm=norm)


@register_backbone("mlp", input_ndim=1, shape_args={"in_dim": 0})
def mlp(
    out_dim: int = 512, in_dim: int | None = None, hidden: Sequence[int] = (512,), dropout: float = 0.0
) -> MLPBackbone:
    """MLP on precomputed feature vectors B x in_dim (paper IV-B backbone for a modality given as features)."""
    if in_dim is None:
        raise ValueError("backbone 'mlp' needs in_dim= (the size of the input feature vectors)")
    return MLPBackbone(in_dim=in_dim, out_dim=out_dim, hidden=hidden, dropout=dropout)


def _declared(name: str) -> Backbone:
    entry = BACKBONES.get(name)
    if not isinstance(entry, Backbone):
        raise TypeError(
            f"backbone {name!r} was registered without its declarations; register it with "
            "mtpkdot.models.register_backbone(name, input_ndim=..., shape_args=..., weights=...)"
        )
    return entry


def input_ndim(name: str) -> int:
    """Axes of one store item the backbone ``name`` consumes (video 4, spectrogram 3, signal 2, vector 1)."""
    return _declared(name).input_ndim


def input_kwargs(name: str, item_shape: tuple[int, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of backbone ``name`` read from the shape of a stored sample
    (``in_channels``, ``in_dim``; a leading sequence axis is ignored); ``given`` wins."""
    spec = _declared(name)
    item = tuple(item_shape)[len(item_shape) - spec.input_ndim :]
    kw = dict(given)
    for arg, axis in spec.shape_args.items():
        kw.setdefault(arg, int(item[axis]))
    return kw


def accepts_weights(name: str) -> bool:
    """Whether backbone ``name`` takes a pretrained checkpoint as ``weights=``."""
    return _declared(name).weights


def build_backbone(name: str, out_dim: int = 512, **kwargs: Any) -> nn.Module:
    """Build the registered backbone ``name``; the result has ``out_dim`` and ``input_ndim`` and maps a
    batch to ``B x out_dim``."""
    spec = _declared(name)
    model = call_checked(f"backbone {name!r}", spec.build, out_dim=out_dim, **kwargs)
    model.input_ndim = spec.input_ndim
    return model
