"""What each stage of one fold does differently (DESIGN sections 3-4; paper Sec. III, Alg. 1-2, Sec. IV-B).

The stages and their order are declared in :mod:`mtpkdot.pipeline.graph`; what every stage shares
(skip when done, seed, fit, select, test once, mark done) is :mod:`mtpkdot.pipeline.runner`. A trained
stage here only builds a :class:`~mtpkdot.pipeline.runner.Trainable` (modules, step, evaluation,
hooks); ``load_*`` read a finished stage's selected checkpoint for the stages after it.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.atomic import atomic_save_npz, atomic_write
from mtpkdot.engine.checkpoint import file_hash, load_checkpoint
from mtpkdot.engine.loop import chunks, predict
from mtpkdot.engine.seed import derive_seed, make_generator
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.inputs import (
    Normalizer,
    backbone_kwargs,
    expand_to_frames,
    frame_targets,
    item_ndim,
    targets,
)
from mtpkdot.pipeline.runner import Trainable, train_and_test

EVAL_BATCH = 256
TSNE_CAP = 500


# ---------------------------------------------------------------------------------------------
# helpers
def _labels(ctx: FoldContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    y, mask = targets(np.asarray(ctx.store.labels))
    return y.to(ctx.device), None if mask is None else mask.to(ctx.device)


def _frame_labels(ctx: FoldContext, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    labels = np.asarray(ctx.store.labels)
    return frame_targets(labels[np.asarray(idx)])


def score(ctx: FoldContext, preds: torch.Tensor, idx: np.ndarray) -> dict[str, float]:
    """Task metrics of predictions for store samples ``idx`` (regression: over every valid frame)."""
    y, mask = _frame_labels(ctx, idx)
    return {k: float(v) for k, v in ctx.task.metrics(expand_to_frames(preds, y), y, mask).items()}


def _task_loss(
    ctx: FoldContext, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    return ctx.task.loss(out.float(), y, mask)


def _best_modules(ctx: FoldContext, stage: str) -> dict[str, Any]:
    """The state dicts of ``stage``'s selected checkpoint (``best.pt``), by module name."""
    return load_checkpoint(ctx.stage_dir(stage) / layout.BEST, ctx.section(stage))["modules"]


# ---------------------------------------------------------------------------------------------
# stage 1: unimodal backbones
def build_modality_backbone(
    ctx: FoldContext, mod: str, fit_norm: bool = True, train_idx: np.ndarray | None = None
) -> tuple[nn.Module, Normalizer]:
    from mtpkdot.models import build_backbone

    mc = ctx.cfg.data.modalities[mod]
    arr = ctx.store.array(mod)
    nd = item_ndim(mc.backbone, mc.kind)
    kw = backbone_kwargs(mc.backbone, mc.kind, tuple(arr.shape[1:]), mc.backbone_kwargs)
    factory_params = _params_of_backbone(mc.backbone)
    if mc.weights is not None:
        if "weights" not in factory_params:
            raise ValueError(
                f"data.modalities.{mod}.weights: backbone {mc.backbone!r} takes no pretrained weights"
            )
        kw["weights"] = str(mc.weights)
    net = build_backbone(mc.backbone, out_dim=mc.feature_dim, **kw)
    fit_on = ctx.split["train"] if train_idx is None else train_idx
    norm = Normalizer.fit(arr, fit_on, mc.kind, nd) if fit_norm else Normalizer(mc.kind, nd)
    return net, norm


def _params_of_backbone(name: str) -> set[str]:
    from mtpkdot.registry import BACKBONES

    return set(inspect.signature(BACKBONES.get(name)).parameters)


class Encoder(nn.Module):
    """Backbone + linear head of stage 1, with the input normalisation statistics as buffers."""

    def __init__(self, backbone: nn.Module, head: nn.Module, norm: Normalizer) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        # the input statistics travel with the weights (feature cache, export)
        if norm.mean is not None:
            self.register_buffer("norm_mean", norm.mean.clone())
            self.register_buffer("norm_std", norm.std.clone())


def train_backbone(ctx: FoldContext, mod: str, train_idx: np.ndarray | None = None) -> Trainable:
    """Stage 1 (Sec. IV-B): one modality's backbone with a linear head on the task.

    ``train_idx``: the samples it trains on (and normalises with), default the fold's training role.
    """
    from mtpkdot.models import LinearHead

    mc = ctx.cfg.data.modalities[mod]
    tc = mc.train
    backbone, norm = build_modality_backbone(ctx, mod, train_idx=train_idx)
    model = Encoder(backbone, LinearHead(mc.feature_dim, ctx.task.num_outputs), norm).to(ctx.device)
    arr = ctx.store.array(mod)
    y_all, mask_all = _labels(ctx)
    dev = ctx.device

    def forward(idx: torch.Tensor) -> torch.Tensor:
        x, lead = norm(arr[idx.numpy()], dev)
        f = model.backbone(x)
        return model.head(f).reshape(*lead, -1)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out = forward(idx)
        y = y_all[idx.to(dev)]
        m = None if mask_all is None else mask_all[idx.to(dev)]
        loss = _task_loss(ctx, out, y, m)
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        preds = predict(forward, list(chunks_of(idx, tc.batch_size)), [model])
        return score(ctx, preds, idx)

    params = [p for p in model.parameters() if p.requires_grad]
    return Trainable(
        {"model": model}, params, tc, compute, evaluate, ctx.task.primary_metric, train_idx=train_idx
    )


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


def chunks_of(idx: np.ndarray, size: int) -> list[torch.Tensor]:
    t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return [t[i : i + size] for i in range(0, len(t), size)]


def load_backbone(ctx: FoldContext, mod: str, stage: str | None = None) -> tuple[nn.Module, Normalizer]:
    """The fold's trained backbone of ``mod`` (best validation epoch) and its input normaliser;
    ``stage``: another stage holding a backbone of ``mod`` (a cross-fitted one)."""
    stage = stage or layout.backbone_stage(mod)
    backbone, norm = build_modality_backbone(ctx, mod, fit_norm=False)
    state = _best_modules(ctx, stage)["model"]
    backbone.load_state_dict(
        {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    )
    norm.mean, norm.std = state.get("norm_mean"), state.get("norm_std")
    return backbone.to(ctx.device), norm


# ---------------------------------------------------------------------------------------------
# feature cache
def backbone_features(
    ctx: FoldContext, mod: str, stage: str | None = None, idx: np.ndarray | None = None
) -> np.ndarray:
    """Features of every store sample (or of samples ``idx``) from one frozen backbone of ``mod`` (eval mode)."""
    backbone, norm = load_backbone(ctx, mod, stage)
    arr = ctx.store.array(mod)
    bs = ctx.cfg.data.modalities[mod].train.batch_size

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
    import json

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


# ---------------------------------------------------------------------------------------------
# stage 2: fusion teacher
def build_teacher(ctx: FoldContext, mods: list[str] | None = None) -> nn.Module:
    """A fresh fusion of the teacher's kind over ``mods`` (default: every modality, in order)."""
    from mtpkdot.models import build_fusion

    tc = ctx.cfg.teacher
    kw = dict(tc.fusion_kwargs)
    from mtpkdot.registry import FUSIONS

    if "seq_len" in inspect.signature(FUSIONS.get(tc.fusion)).parameters:
        kw.setdefault("seq_len", ctx.cfg.data.sequence_length)
    dims = [ctx.feature_dim(m) for m in (ctx.order if mods is None else mods)]
    return build_fusion(tc.fusion, dims, ctx.task.num_outputs, **kw).to(ctx.device)


def _feats(ctx: FoldContext, mods: list[str], idx: torch.Tensor) -> list[torch.Tensor]:
    i = idx.to(ctx.device)
    return [ctx.features(m)[i] for m in mods]


def train_teacher(ctx: FoldContext) -> Trainable:
    """Stage 2: the fusion teacher on cached features of every modality (the upper bound)."""
    fusion = build_teacher(ctx)
    y_all, mask_all = _labels(ctx)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out, _ = fusion(_feats(ctx, ctx.order, idx))
        i = idx.to(ctx.device)
        loss = _task_loss(ctx, out, y_all[i], None if mask_all is None else mask_all[i])
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        preds = predict(lambda b: fusion(_feats(ctx, ctx.order, b))[0], chunks_of(idx, EVAL_BATCH), [fusion])
        return score(ctx, preds, idx)

    params = list(fusion.parameters())
    return Trainable({"fusion": fusion}, params, ctx.cfg.teacher, compute, evaluate, ctx.task.primary_metric)


def load_teacher(ctx: FoldContext) -> nn.Module:
    fusion = build_teacher(ctx)
    fusion.load_state_dict(_best_modules(ctx, layout.TEACHER)["fusion"])
    fusion.requires_grad_(False)
    return fusion.eval()


# ---------------------------------------------------------------------------------------------
# T-Net: prevalent features -> each privileged modality's features
def build_tnets(ctx: FoldContext) -> nn.ModuleDict:
    from mtpkdot.models import TNet

    in_dim = sum(ctx.feature_dim(m) for m in ctx.prevalent)
    return nn.ModuleDict(
        {p: TNet(in_dim, ctx.feature_dim(p), hidden=list(ctx.cfg.tnet.hidden)) for p in ctx.privileged}
    ).to(ctx.device)


def _mean_terms(
    idx: np.ndarray,
    terms: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    total: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> dict[str, float]:
    """The mean over samples ``idx`` (batches of EVAL_BATCH, no gradients) of each loss term and of
    their ``total``, which is reported as ``loss``."""
    sums: dict[str, float] = {}
    with torch.no_grad():
        for b in chunks_of(idx, EVAL_BATCH):
            t = terms(b)
            t["loss"] = total(t)
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(b)
    return {k: v / max(len(idx), 1) for k, v in sums.items()}


def _tnet_terms(ctx: FoldContext, tnets: nn.ModuleDict, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    x = torch.cat(_feats(ctx, ctx.prevalent, idx), dim=-1)
    terms: dict[str, torch.Tensor] = {}
    for p, net in tnets.items():
        target = ctx.features(p)[idx.to(ctx.device)]
        pred = net(x)
        terms[f"mse_{p}"] = nn.functional.mse_loss(pred, target)
        terms[f"cos_{p}"] = (1 - nn.functional.cosine_similarity(pred, target, dim=-1, eps=1e-8)).mean()
    return terms


def train_tnet(ctx: FoldContext) -> Trainable:
    """T-Net (Sec. IV-B, Table VII): MSE + cosine_weight * (1 - cos) to the privileged features."""
    tnets = build_tnets(ctx)
    w = ctx.cfg.tnet.cosine_weight

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(terms[f"mse_{p}"] + w * terms[f"cos_{p}"] for p in ctx.privileged)  # type: ignore[return-value]

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        terms = _tnet_terms(ctx, tnets, idx)
        return {"total": total(terms), **terms}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        tnets.eval()
        return _mean_terms(idx, lambda b: _tnet_terms(ctx, tnets, b), total)

    params = list(tnets.parameters())
    return Trainable(
        {"tnets": tnets}, params, ctx.cfg.tnet, compute, evaluate, "loss", higher_is_better=False
    )


def load_tnets(ctx: FoldContext) -> nn.ModuleDict:
    tnets = build_tnets(ctx)
    tnets.load_state_dict(_best_modules(ctx, "tnet")["tnets"])
    tnets.requires_grad_(False)
    return tnets.eval()


# ---------------------------------------------------------------------------------------------
# stage 3: modality adapters (self-distillation, Alg. 1)
def build_adapters(ctx: FoldContext, joint_dim: int) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    from mtpkdot.models import Adapter, LinearHead

    adapters = nn.ModuleDict(
        {m: Adapter(ctx.feature_dim(m), joint_dim, hidden=ctx.cfg.adapters.hidden) for m in ctx.order}
    )
    heads = nn.ModuleDict({m: LinearHead(joint_dim, ctx.task.num_outputs) for m in ctx.order})
    return adapters.to(ctx.device), heads.to(ctx.device)


def train_adapters(ctx: FoldContext) -> Trainable:
    """Alg. 1 / Eq. 1: adapter A_i aligns F_i to the detached F_joint of the frozen teacher.

    Each adapted feature also gets a linear head trained with the task loss (needed to rank the
    teachers, Alg. 2); the head sees the adapted feature detached, so the adapter is trained by the
    alignment loss of Eq. 1 alone.
    """
    from mtpkdot.distill import alignment_loss

    teacher = load_teacher(ctx)
    adapters, heads = build_adapters(ctx, teacher.joint_dim)
    y_all, mask_all = _labels(ctx)

    def terms(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The loss terms and each modality's head outputs."""
        feats = _feats(ctx, ctx.order, idx)
        with torch.no_grad():
            _, joint = teacher(feats)
        adapted = [adapters[m](f) for m, f in zip(ctx.order, feats, strict=True)]
        i = idx.to(ctx.device)
        y, mask = y_all[i], None if mask_all is None else mask_all[i]
        out = {"align": alignment_loss(adapted, joint.detach())}
        preds: dict[str, torch.Tensor] = {}
        for m, a in zip(ctx.order, adapted, strict=True):
            preds[m] = heads[m](a.detach())
            out[f"task_{m}"] = _task_loss(ctx, preds[m], y, mask)
        return out, preds

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        t, _ = terms(idx)
        return {"total": sum(t.values()), **t}, len(idx)  # type: ignore[dict-item]

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        adapters.eval()
        heads.eval()
        outs: dict[str, list[torch.Tensor]] = {m: [] for m in ctx.order}

        def eval_terms(b: torch.Tensor) -> dict[str, torch.Tensor]:
            t, preds = terms(b)  # the head outputs of the same pass score each teacher
            for m in ctx.order:
                outs[m].append(preds[m].float().cpu())
            return t

        res = _mean_terms(idx, eval_terms, lambda t: sum(t.values()))  # type: ignore[arg-type,return-value]
        for m in ctx.order:
            for k, v in score(ctx, torch.cat(outs[m]), idx).items():
                res[f"{k}_{m}"] = v
        return res

    def after_fit() -> None:
        if ctx.write:
            _save_tsne(ctx, teacher, adapters)

    return Trainable(
        {"adapters": adapters, "heads": heads},
        list(adapters.parameters()) + list(heads.parameters()),
        ctx.cfg.adapters,
        compute,
        evaluate,
        "loss",
        higher_is_better=False,
        after_fit=after_fit,
    )


def _save_tsne(ctx: FoldContext, teacher: nn.Module, adapters: nn.ModuleDict) -> None:
    """Features before/after adaptation on validation samples (paper Fig. 5)."""
    idx = np.sort(ctx.split["val"])[:TSNE_CAP]
    t = torch.as_tensor(idx, dtype=torch.long)
    with torch.no_grad():
        feats = _feats(ctx, ctx.order, t)
        _, joint = teacher(feats)
        arrays: dict[str, np.ndarray] = {}
        for m, f in zip(ctx.order, feats, strict=True):
            arrays[f"before_{m}"] = _flat(f)
            arrays[f"after_{m}"] = _flat(adapters[m].eval()(f))
        arrays["before_joint"] = arrays["after_joint"] = _flat(joint)
    labels = np.asarray(ctx.store.labels)[idx]
    if labels.ndim > 1:  # regression: the mean valence of each sample, for colouring
        labels = np.nanmean(labels.reshape(len(idx), -1, labels.shape[-1])[..., 0], axis=1)
    arrays["labels"] = labels
    atomic_save_npz(ctx.stage_dir(layout.ADAPTERS) / layout.TSNE, **arrays)


def _flat(x: torch.Tensor) -> np.ndarray:
    x = x.float().cpu()
    if x.dim() == 3:  # B x L x d: one point per sample (mean over its clips)
        x = x.mean(dim=1)
    return x.numpy()


def load_pool(ctx: FoldContext) -> Any:
    from mtpkdot.distill import TeacherPool

    teacher = load_teacher(ctx)
    adapters, heads = build_adapters(ctx, teacher.joint_dim)
    state = _best_modules(ctx, layout.ADAPTERS)
    adapters.load_state_dict(state["adapters"])
    heads.load_state_dict(state["heads"])
    return TeacherPool(teacher, dict(adapters.items()), dict(heads.items()), ctx.order)


# ---------------------------------------------------------------------------------------------
# lower bound: the prevalent modalities alone (no T-Net, no distillation; issue 12)
def lower_bound(ctx: FoldContext) -> None:
    """The ``lower_bound`` row of the fold. One prevalent modality: its stage-1 model (backbone +
    linear head, selected on validation), whose test result is ``backbone_<mod>/test.json``. Several:
    a fusion of the student's kind on their cached features only, trained on the task loss with the
    student's settings (:func:`train_lower_bound`)."""
    if len(ctx.prevalent) > 1:
        train_and_test(ctx, layout.LOWER_BOUND, lambda: train_lower_bound(ctx))
        return
    source = layout.backbone_stage(ctx.prevalent[0])
    result = json.loads((ctx.stage_dir(source) / layout.TEST).read_text())
    result.update(stage=layout.LOWER_BOUND, source=source)
    ctx.write_json(ctx.stage_dir(layout.LOWER_BOUND) / layout.TEST, result)


def _student_feats(ctx: FoldContext, idx: torch.Tensor) -> list[torch.Tensor]:
    # the stage-1 backbones' features for every sample, as the students see them (with cross-fitting
    # on, ctx.features holds out-of-fold rows for training samples: teacher-side input only)
    i = idx.to(ctx.device)
    return [ctx.student_features(m)[i] for m in ctx.prevalent]


def train_lower_bound(ctx: FoldContext) -> Trainable:
    """A fresh fusion of the teacher's kind (the student's fusion) on the prevalent features only:
    no T-Net branches, task loss only. Cached features also when the students fine-tune."""
    fusion = build_teacher(ctx, ctx.prevalent)
    y_all, mask_all = _labels(ctx)

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        out, _ = fusion(_student_feats(ctx, idx))
        i = idx.to(ctx.device)
        loss = _task_loss(ctx, out, y_all[i], None if mask_all is None else mask_all[i])
        return {"total": loss, "task": loss}, len(idx)

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        forward = lambda b: fusion(_student_feats(ctx, b))[0]  # noqa: E731
        return score(ctx, predict(forward, chunks_of(idx, EVAL_BATCH), [fusion]), idx)

    return Trainable(
        {"fusion": fusion},
        list(fusion.parameters()),
        ctx.cfg.student,
        compute,
        evaluate,
        ctx.task.primary_metric,
        initial_eval=True,
    )


# ---------------------------------------------------------------------------------------------
# stage 4: students, one per method
def build_student(ctx: FoldContext, finetune: bool) -> tuple[nn.Module, dict[str, Any]]:
    from mtpkdot.models import Student

    fusion = build_teacher(ctx)  # a fresh fusion of the teacher's kind
    tnets = load_tnets(ctx)
    backbones = None
    norms: dict[str, Any] = {}
    if finetune:
        backbones = {}
        for m in ctx.prevalent:
            backbones[m], norms[m] = load_backbone(ctx, m)
    student = Student(fusion, dict(tnets.items()), ctx.order, ctx.prevalent, backbones=backbones)
    return student.to(ctx.device), norms


def _similarity(x: torch.Tensor) -> np.ndarray:
    from mtpkdot.distill import similarity_matrix

    x = x.float()
    if x.dim() == 3:
        x = x.mean(dim=1)
    return similarity_matrix(x).detach().cpu().numpy()


def train_student(ctx: FoldContext, method_name: str) -> Trainable:
    """Stage 4: a student (prevalent modality + frozen T-Nets + fresh fusion) distilled by one method."""
    from mtpkdot.registry import METHODS

    stage = layout.student_stage(method_name)
    sc = ctx.cfg.student
    finetune = sc.finetune_backbone
    pool = load_pool(ctx)
    student, norms = build_student(ctx, finetune)
    own_seed = derive_seed(ctx.seed, ctx.fold, stage)
    # common random numbers: the student above is built from the stream every student shares; what
    # the method builds (its own layers) draws from its own seed and leaves that stream untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(own_seed)
        method = METHODS.get(method_name)(student, pool, ctx.task, ctx.cfg.distill).to(ctx.device)
    method.generator = make_generator(own_seed)
    y_all, mask_all = _labels(ctx)
    arrays = {m: ctx.store.array(m) for m in ctx.prevalent} if finetune else {}

    def student_inputs(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if not finetune:
            i = idx.to(ctx.device)
            return {m: ctx.student_features(m)[i] for m in ctx.prevalent}
        out = {}
        for m in ctx.prevalent:
            x, lead = norms[m](arrays[m][idx.numpy()], ctx.device)
            out[m] = x.reshape(*lead, *x.shape[1:])
        return out

    def batch(idx: torch.Tensor) -> dict[str, Any]:
        i = idx.to(ctx.device)
        return {
            "student": student_inputs(idx),
            "teacher": {m: ctx.features(m)[i] for m in ctx.order},
            "y": y_all[i],
            "mask": None if mask_all is None else mask_all[i],
        }

    selections: dict[str, int] = {}

    def compute(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        _, losses = method.forward_train(batch(idx))
        for name, count in (getattr(method, "last_selection", None) or {}).items():
            selections[name] = selections.get(name, 0) + int(count)
        return losses, len(idx)

    bs_eval = sc.batch_size if finetune else EVAL_BATCH

    def sel_stats() -> dict[str, float]:
        return {f"sel_{k}": float(v) for k, v in selections.items()}

    def evaluate(idx: np.ndarray) -> dict[str, float]:
        preds = predict(
            lambda b: method.forward_test({"student": student_inputs(b)}), chunks_of(idx, bs_eval), [method]
        )
        return score(ctx, preds, idx)

    # similarity snapshots (paper Fig. 4) on a fixed validation batch
    snap_idx = torch.as_tensor(np.sort(ctx.split["val"])[: sc.batch_size], dtype=torch.long)
    snapshots: dict[str, Any] = {}
    epochs = sc.epochs
    marks = [
        (math.ceil(0.5 * epochs), "student_50"),
        (math.ceil(0.75 * epochs), "student_75"),
        (epochs, "student_100"),
    ]

    def snapshot(key: str) -> None:
        if not sc.snapshots or len(snap_idx) < 2:
            return
        was = method.training
        method.eval()
        with torch.no_grad():
            _, joint = student(student_inputs(snap_idx))
            if "teacher" not in snapshots:
                tjoint = pool({m: ctx.features(m)[snap_idx.to(ctx.device)] for m in ctx.order})["joint"][0]
                snapshots["teacher"] = _similarity(tjoint)
            snapshots[key] = _similarity(joint)
        method.train(was)

    def on_epoch_end(epoch: int) -> None:
        for e, key in marks:
            if e == epoch:
                snapshot(key)

    def after_fit() -> None:
        if sc.snapshots and ctx.write and snapshots:
            if "student_100" not in snapshots:  # stopped early: the selected model ends training
                snapshot("student_100")
            atomic_save_npz(ctx.stage_dir(stage) / layout.SNAPSHOTS, **snapshots)

    return Trainable(
        {"student": student},
        [p for p in method.trainable_parameters() if p.requires_grad],
        sc,
        compute,
        evaluate,
        ctx.task.primary_metric,
        # DDP wraps the student (what the optimiser trains); Method.forward_train runs inside its forward
        ddp_modules={"student": student},
        train_modules=[method],
        epoch_start=selections.clear,
        epoch_stats=sel_stats,
        extra=snapshots,
        on_start=lambda: snapshot("student_0"),
        on_epoch_end=on_epoch_end,
        after_fit=after_fit,
        initial_eval=True,
    )
