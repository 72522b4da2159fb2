"""The optimizer registry: a config's ``optimizer`` name -> the torch optimizer of a stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mtpkdot.registry import Registry

if TYPE_CHECKING:
    from mtpkdot.config import TrainConfig

OPTIMIZERS = Registry("optimizer")
"""Name -> ``build(params, tc)``, reading the rate, weight decay and its own settings from ``tc``."""


@OPTIMIZERS.register("adam")
def adam(params: list[nn.Parameter], tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient."""
    return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: list[nn.Parameter], tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: list[nn.Parameter], tc: TrainConfig) -> torch.optim.Optimizer:
    """SGD with (heavy-ball) ``momentum``."""
    return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)


def build_optimizer(params: list[nn.Parameter], tc: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``tc.optimizer`` names, over ``params``."""
    return OPTIMIZERS.get(tc.optimizer)(params, tc)
