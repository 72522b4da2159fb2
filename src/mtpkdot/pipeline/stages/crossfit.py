"""Cross-fitted stage-1 backbones (``features.crossfit`` = K): per modality, one backbone per inner fold
of the fold's training subjects, trained without that inner fold's subjects, so that the teacher side
never sees a training sample's feature from a backbone that trained on its subject."""

from __future__ import annotations

import numpy as np

from mtpkdot.engine.seed import derive_seed
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.runner import Trainable
from mtpkdot.pipeline.stages.backbone import train_backbone


def inner_folds(ctx: FoldContext) -> list[np.ndarray]:
    """``features.crossfit`` = K: the fold's training samples in K subject-grouped inner folds (store
    indices, sorted). The subjects are shuffled with a seed of (seed, fold) and dealt out in turn, so
    the inner folds differ in size by at most one subject."""
    k = ctx.cfg.features.crossfit
    train = np.sort(np.asarray(ctx.split["train"]))
    subj = ctx.store.manifest["subject_id"].astype(str).to_numpy()[train]
    subjects = np.unique(subj)
    if len(subjects) < k:
        raise ValueError(
            f"features.crossfit={k}: fold {ctx.fold} (seed {ctx.seed}) has only {len(subjects)} training "
            "subjects; use fewer inner folds"
        )
    order = np.random.default_rng(derive_seed(ctx.seed, ctx.fold, "crossfit")).permutation(subjects)
    inner = {s: i % k for i, s in enumerate(order)}
    member = np.asarray([inner[s] for s in subj])
    return [train[member == j] for j in range(k)]


def crossfit_instance(instance: str) -> tuple[str, int]:
    """``video_2`` -> (``video``, 2): the modality and the 1-based inner fold of a cross-fitted backbone."""
    mod, inner = instance.rsplit("_", 1)
    return mod, int(inner)


def train_crossfit(ctx: FoldContext, instance: str) -> Trainable:
    """A stage-1 backbone trained on the fold's training subjects outside one inner fold: the features
    of that inner fold's samples come from it (``features.crossfit``)."""
    mod, j = crossfit_instance(instance)
    held = inner_folds(ctx)[j - 1]
    return train_backbone(ctx, mod, np.setdiff1d(ctx.split["train"], held))
