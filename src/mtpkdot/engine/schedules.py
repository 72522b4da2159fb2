"""Learning-rate schedules: the factor on a stage's configured rate at each epoch, after a warm-up.

The rate is set once per epoch, before its first step, from the epoch number alone, so a resumed stage
needs no scheduler state. With ``warmup_epochs = W`` epoch ``e <= W`` trains at ``e / (W + 1)`` of the
rate (never zero, so no epoch is wasted); the schedule then runs over the ``n = epochs - W`` epochs
left, its own epoch ``k`` counted from 0. ``constant`` (the default) keeps the configured rate itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mtpkdot.registry import Registry

if TYPE_CHECKING:
    from mtpkdot.config import TrainConfig

SCHEDULES = Registry("lr schedule")
"""Name -> ``factor(k, n, tc)``: the rate's factor at epoch ``k`` (from 0) of the ``n`` after the warm-up."""


@SCHEDULES.register("constant")
def constant(k: int, n: int, tc: TrainConfig) -> float:
    """The configured rate throughout."""
    return 1.0


@SCHEDULES.register("cosine")
def cosine(k: int, n: int, tc: TrainConfig) -> float:
    """Half a cosine from the rate towards 0 (``CosineAnnealingLR`` with ``T_max = n``)."""
    return 0.5 * (1.0 + math.cos(math.pi * k / n))


@SCHEDULES.register("step")
def step(k: int, n: int, tc: TrainConfig) -> float:
    """The rate times ``step_factor`` every ``step_epochs`` epochs (``StepLR``)."""
    return tc.step_factor ** (k // tc.step_epochs)


def lr_factor(tc: TrainConfig, epoch: int) -> float:
    """The factor on ``tc.lr`` for ``epoch`` (from 1) of ``tc.epochs``: warm-up, then ``tc.schedule``."""
    warmup = tc.warmup_epochs
    if epoch <= warmup:
        return epoch / (warmup + 1)
    return float(SCHEDULES.get(tc.schedule)(epoch - warmup - 1, tc.epochs - warmup, tc))
