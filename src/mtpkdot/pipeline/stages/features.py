"""The feature cache: every store sample's features from each frozen stage-1 backbone, computed once per
fold for the stages after it (with ``features.crossfit``, training rows from the cross-fitted backbones)."""

from __future__ import annotations

import json

import numpy as np
import torch

from mtpkdot import layout
from mtpkdot.atomic import atomic_write
from mtpkdot.engine.checkpoint import file_hash
from mtpkdot.engine.loop import chunks, predict
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.stages.backbone import load_backbone
from mtpkdot.pipeline.stages.common import chunks_of
from mtpkdot.pipeline.stages.crossfit import inner_folds


def backbone_features(
    ctx: FoldContext, mod: str, stage: str | None = None, idx: np.ndarray | None = None
) -> np.ndarray:
    """Features of every store sample (or of samples ``idx``) from one frozen backbone of ``mod`` (eval mode)."""
    backbone, norm = load_backbone(ctx, mod, stage)
    arr = ctx.store.array(mod)
    bs = ctx.cfg.backbones[mod].batch_size

    def forward(idx: torch.Tensor) -> torch.Tensor:
        x, lead = norm(arr[idx.numpy()], ctx.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=ctx.amp and ctx.device.type == "cuda"):
            f = backbone(x)
        return f.float().reshape(*lead, -1)

    batches = chunks(arr.shape[0], max(bs, 1)) if idx is None else chunks_of(idx, max(bs, 1))
    return predict(forward, batches, [backbone]).numpy().astype(np.float32)


def affine_map(source: np.ndarray, target: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least-squares affine map ``W`` ((d_s + 1) x d_t) with ``[source, 1] @ W ~ target``, ridge
    ``ridge`` x the mean diagonal of the Gram matrix (bias not penalised).

    Cross-fitted backbones each learn their own feature coordinates: a teacher trained on rows of K
    different encoders cannot read the stage-1 encoder's validation and test rows (before this map the
    shared-1 results gave a cross-fitted teacher 65 +- 20 % against 92 % without cross-fitting). So every
    inner backbone's rows are mapped into the stage-1 coordinates by a map fitted on the samples both
    encoders trained on (the same footing for both), then applied to its held-out subjects."""
    a = np.hstack([source.astype(np.float64), np.ones((len(source), 1))])
    gram = a.T @ a
    penalty = ridge * float(np.trace(gram[:-1, :-1])) / max(a.shape[1] - 1, 1)
    reg = np.eye(a.shape[1]) * penalty
    reg[-1, -1] = 0.0
    return np.linalg.solve(gram + reg, a.T @ target.astype(np.float64))


def apply_affine(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (np.hstack([x.astype(np.float64), np.ones((len(x), 1))]) @ w).astype(np.float32)


def _crossfit_stages(ctx: FoldContext, mod: str) -> list[str]:
    return [layout.crossfit_stage(mod, j) for j in range(1, ctx.cfg.features.crossfit + 1)]


def extract_features(ctx: FoldContext) -> None:
    """Features of every store sample from each frozen backbone (eval mode), keyed by checkpoint hash.

    With ``features.crossfit`` = K, ``<mod>.npy`` (what the teacher side trains on) takes each training
    sample's row from the cross-fitted backbone that did not see its subject, mapped into the stage-1
    backbone's coordinates (:func:`affine_map`), every other row from the stage-1 backbone;
    ``<mod>_full.npy`` (the student's input, prevalent modalities) is the stage-1 backbone's features of
    every sample.
    """
    d = ctx.stage_dir(layout.FEATURES)
    if not ctx.write:
        return
    meta: dict[str, dict[str, str]] = {"backbone_checkpoints": {}}
    folds = inner_folds(ctx) if ctx.cfg.features.crossfit else []
    for mod in ctx.order:
        feats = backbone_features(ctx, mod)
        meta["backbone_checkpoints"][mod] = file_hash(ctx.stage_dir(layout.backbone_stage(mod)) / layout.BEST)
        if folds:
            if mod in ctx.prevalent:
                full = feats.copy()
                atomic_write(d / layout.student_feature_file(mod), lambda fh, full=full: np.save(fh, full))
            train = np.sort(np.asarray(ctx.split["train"]))
            stage1 = feats[train]  # the map's targets stay the stage-1 rows while rows are replaced
            for held, stage in zip(folds, _crossfit_stages(ctx, mod), strict=True):
                inner = backbone_features(ctx, mod, stage, train)
                seen = ~np.isin(train, held)
                w = affine_map(inner[seen], stage1[seen])
                feats[held] = apply_affine(inner[~seen], w)
                meta.setdefault("crossfit_checkpoints", {})[stage] = file_hash(
                    ctx.stage_dir(stage) / layout.BEST
                )
        atomic_write(d / layout.feature_file(mod), lambda fh, feats=feats: np.save(fh, feats))
    ctx.write_json(d / layout.FEATURE_META, meta)


def check_feature_cache(ctx: FoldContext) -> None:
    """The cache must come from the current backbone checkpoints (a retrained backbone invalidates it)."""
    meta_path = ctx.stage_dir(layout.FEATURES) / layout.FEATURE_META
    meta = json.loads(meta_path.read_text())
    expected = {mod: layout.backbone_stage(mod) for mod in ctx.order}
    stored = dict(meta["backbone_checkpoints"])
    if ctx.cfg.features.crossfit:
        expected.update({s: s for mod in ctx.order for s in _crossfit_stages(ctx, mod)})
        stored.update(meta.get("crossfit_checkpoints", {}))
    for key, stage in expected.items():
        now = file_hash(ctx.stage_dir(stage) / layout.BEST)
        if stored.get(key) != now:
            raise RuntimeError(
                f"{meta_path}: the feature cache of {key!r} was computed with another backbone checkpoint; "
                f"delete {ctx.stage_dir(layout.FEATURES)} to recompute it"
            )
