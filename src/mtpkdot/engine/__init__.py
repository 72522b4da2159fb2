"""Training engine: the trainer (early stopping, exact resume) and its callbacks, optimizers,
learning-rate schedules, checkpoints with config hashes, seeding, DDP helpers."""

from mtpkdot.engine.callbacks import Callback, StageInterrupted, standard_callbacks
from mtpkdot.engine.checkpoint import (
    ConfigMismatchError,
    check_config,
    config_hash,
    load_checkpoint,
    save_checkpoint,
)
from mtpkdot.engine.loop import FitResult, Selection, Trainer, index_batches, predict, run_epoch
from mtpkdot.engine.optim import OPTIMIZERS, build_optimizer
from mtpkdot.engine.schedules import SCHEDULES, lr_factor
from mtpkdot.engine.seed import derive_seed, make_generator, seed_everything

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "ConfigMismatchError",
    "FitResult",
    "Selection",
    "StageInterrupted",
    "Trainer",
    "build_optimizer",
    "check_config",
    "config_hash",
    "derive_seed",
    "index_batches",
    "load_checkpoint",
    "lr_factor",
    "make_generator",
    "predict",
    "run_epoch",
    "save_checkpoint",
    "seed_everything",
    "standard_callbacks",
]
