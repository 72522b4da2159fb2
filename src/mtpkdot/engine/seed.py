"""Seeding: one call makes a run reproducible on the CPU (same seed -> identical metrics).

:func:`derive_seed` hashes the run seed and names into a seed of their own, so that what one stage
draws (re-run on resume, or a method added to an existing run) does not depend on how many random
numbers earlier stages drew. The pipeline seeds a trained stage from (run seed, fold, stream) and its
batch order from (run seed, fold, stream, epoch); the stream is the stage's name, except that the
students of one fold and their lower bound share one stream on purpose: they start from the same
weights and see the same batches (``mtpkdot.pipeline.runner.draw_stream``). Exact resume restores every
global RNG state saved in ``last.pt`` (:func:`get_rng_state`).
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed from a base seed and names (``derive_seed(0, "fold1", "teacher")``)."""
    text = "/".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on the CPU also ask torch for deterministic kernels.

    ``warn_only`` keeps CUDA runs going where an op has no deterministic kernel (CUDA runs are
    reproducible only up to such kernels; CPU runs are exact).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator for shuffling and sampling, independent of the global RNG."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state a training epoch can touch (saved in ``last.pt`` for exact resume)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
