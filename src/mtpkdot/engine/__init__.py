"""Training engine: the loop (fit / evaluate), checkpoints with config hashes, seeding, DDP helpers."""

from mtpkdot.engine.checkpoint import (
    ConfigMismatchError,
    check_config,
    config_hash,
    load_checkpoint,
    save_checkpoint,
)
from mtpkdot.engine.loop import FitResult, StageInterrupted, fit, index_batches, predict, run_epoch
from mtpkdot.engine.seed import derive_seed, make_generator, seed_everything

__all__ = [
    "ConfigMismatchError",
    "FitResult",
    "StageInterrupted",
    "check_config",
    "config_hash",
    "derive_seed",
    "fit",
    "index_batches",
    "load_checkpoint",
    "make_generator",
    "predict",
    "run_epoch",
    "save_checkpoint",
    "seed_everything",
]
