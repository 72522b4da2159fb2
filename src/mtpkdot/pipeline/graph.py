"""The stage graph of one fold, declared once (docs/internals.md, "Stages").

Each :class:`Stage` names the stages it reads from, the config sections that invalidate it and how it
runs. Everything else derives from :data:`STAGES`: the order of :func:`run_fold`, the stage list of
the progress bar (:func:`stage_names`), each stage's config section and hash (:func:`section`, which
``done`` markers and checkpoints are checked against, so resume follows from it), and which finished
stages a sweep may share between grid points (:func:`shareable`).

backbone_<mod> [-> crossfit_<mod>_<j>] -> features (cache) -> teacher -> tnet -> adapters -> lower_bound
-> student_<method> (one per method)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mtpkdot.distill  # noqa: F401  (registers the built-in methods, whose options enter student sections)
from mtpkdot import layout
from mtpkdot.engine.checkpoint import config_hash
from mtpkdot.pipeline.context import FoldContext, plain
from mtpkdot.pipeline.runner import TRAINED_OUTPUTS, Trainable, run_computed_stage, run_trained_stage
from mtpkdot.pipeline.stages.adapters import train_adapters
from mtpkdot.pipeline.stages.backbone import train_backbone
from mtpkdot.pipeline.stages.crossfit import crossfit_instance, inner_folds, train_crossfit
from mtpkdot.pipeline.stages.features import check_feature_cache, extract_features
from mtpkdot.pipeline.stages.lower_bound import lower_bound
from mtpkdot.pipeline.stages.student import train_student
from mtpkdot.pipeline.stages.teacher import train_teacher
from mtpkdot.pipeline.stages.tnet import train_tnet

PER_FOLD, PER_MODALITY, PER_METHOD = "fold", "modality", "method"
PER_CROSSFIT = "crossfit"  # one per used modality and inner fold (``<name>_<mod>_<j>``, features.crossfit)


@dataclass(frozen=True)
class Read:
    """An upstream stage a stage builds on; ``when(cfg)`` false leaves it out of the section."""

    stage: str
    when: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class Stage:
    """One stage of a fold.

    ``per``: one instance per fold, per used modality (``<name>_<mod>``), per method
    (``<name>_<method>``) or per used modality and inner fold of ``features.crossfit``
    (``<name>_<mod>_<j>``, none when it is off). ``reads``: section key -> upstream stage (its hash enters this stage's
    section; a per-modality upstream gives one hash per modality). ``sections``: the top-level config
    sections :attr:`settings` reads; with the reads they decide what invalidates the stage.
    ``settings(ctx, instance)``: this stage's own part of its config section; ``v1_settings``: the same
    part as a run folder from before config version 2 holds it, where the two differ (:func:`v1_section`).
    Exactly one of
    ``train(ctx, instance) -> Trainable`` (run by the shared runner) or ``compute(ctx)`` (a stage that
    trains nothing); ``check(ctx)`` runs after the stage, done or not. ``outputs(ctx, instance)``:
    the files a computed stage writes, which its ``done`` marker vouches for (a trained stage's are
    its ``best.pt`` and ``test.json``).
    """

    name: str
    per: str
    reads: Mapping[str, str | Read]
    sections: tuple[str, ...]
    settings: Callable[[FoldContext, str | None], dict[str, Any]]
    train: Callable[[FoldContext, str | None], Trainable] | None = None
    compute: Callable[[FoldContext], None] | None = None
    check: Callable[[FoldContext], None] | None = None
    outputs: Callable[[FoldContext, str | None], list[str]] | None = None
    tested: bool = field(default=False)  # writes test.json (a row of summary.csv)
    v1_settings: Callable[[FoldContext, str | None], dict[str, Any]] | None = None

    def instance_name(self, instance: str | None) -> str:
        return self.name if instance is None else f"{self.name}_{instance}"

    def instances(
        self, modalities: Sequence[str], methods: Sequence[str], crossfit: int = 0
    ) -> list[str | None]:
        if self.per == PER_MODALITY:
            return list(modalities)
        if self.per == PER_METHOD:
            return list(methods)
        if self.per == PER_CROSSFIT:
            return [f"{m}_{j}" for m in modalities for j in range(1, crossfit + 1)]
        return [None]


def _dump(section: Any) -> dict[str, Any]:
    return section.model_dump(mode="json")


def _backbone_settings(ctx: FoldContext, mod: str | None) -> dict[str, Any]:
    # its own modality's training only: another modality's training leaves this backbone valid
    return {
        "base": config_hash(ctx.base_section()),
        "modality": _dump(ctx.cfg.data.modalities[mod]),
        "train": _dump(ctx.cfg.backbones[str(mod)]),
    }


def _v1_backbone_settings(ctx: FoldContext, mod: str | None) -> dict[str, Any]:
    # version 1 kept every modality's training inside data.modalities, so inside the base section too
    base = ctx.base_section()
    for name, m in base["data"]["modalities"].items():
        m["train"] = _dump(ctx.cfg.backbones[name])
    modality = {**_dump(ctx.cfg.data.modalities[mod]), "train": _dump(ctx.cfg.backbones[str(mod)])}
    return {"base": config_hash(plain(base)), "modality": modality}


def _crossfit_settings(ctx: FoldContext, instance: str | None) -> dict[str, Any]:
    return _with_inner_fold(ctx, instance, _backbone_settings)


def _v1_crossfit_settings(ctx: FoldContext, instance: str | None) -> dict[str, Any]:
    return _with_inner_fold(ctx, instance, _v1_backbone_settings)


def _with_inner_fold(ctx: FoldContext, instance: str | None, backbone: Callable[..., Any]) -> dict[str, Any]:
    mod, j = crossfit_instance(str(instance))
    held = inner_folds(ctx)[j - 1]
    inner = {"folds": ctx.cfg.features.crossfit, "held_out": config_hash(sorted(int(i) for i in held))}
    return {**backbone(ctx, mod), "crossfit": inner}


def _crossfits(cfg: Any) -> bool:
    return bool(cfg.features.crossfit)


def _feature_outputs(ctx: FoldContext, _: str | None) -> list[str]:
    files = [layout.feature_file(m) for m in ctx.order]
    if _crossfits(ctx.cfg):
        files += [layout.student_feature_file(m) for m in ctx.prevalent]
    return files + [layout.FEATURE_META]


def _lower_bound_outputs(ctx: FoldContext, _: str | None) -> list[str]:
    # several prevalent modalities train a fusion (a checkpoint); one copies its backbone's result
    return [layout.TEST, layout.BEST] if len(ctx.prevalent) > 1 else [layout.TEST]


def _student_dump(ctx: FoldContext) -> dict[str, Any]:
    student = _dump(ctx.cfg.student)
    student.pop("methods")  # adding a method to a run must not invalidate the others
    return student


def _student_settings(ctx: FoldContext, method: str | None) -> dict[str, Any]:
    # Eq. 10's weights and the method's own options: another method's options leave it valid
    d = ctx.cfg.distill
    own = d.options(str(method)).model_dump(mode="json")
    distill = {"alpha": d.alpha, "beta": d.beta, "gamma": d.gamma, **({str(method): own} if own else {})}
    return {"method": method, "student": _student_dump(ctx), "distill": distill}


def _v1_student_settings(ctx: FoldContext, method: str | None) -> dict[str, Any]:
    return {"method": method, "student": _student_dump(ctx), "distill": ctx.cfg.distill.v1_dump(str(method))}


def _finetunes(cfg: Any) -> bool:
    return bool(cfg.student.finetune_backbone)


def _lower_bound_settings(ctx: FoldContext, _: str | None) -> dict[str, Any]:
    """One prevalent modality: its stage-1 model, nothing of its own. Several: a fusion of the
    student's kind trained with the student's settings."""
    if len(ctx.prevalent) == 1:
        return {"prevalent": ctx.prevalent, "from": layout.backbone_stage(ctx.prevalent[0])}
    name, kwargs = ctx.cfg.student_fusion()
    fusion = {"fusion": name, "fusion_kwargs": kwargs}
    return {"prevalent": ctx.prevalent, "student": _student_dump(ctx), "fusion": fusion}


STAGES: tuple[Stage, ...] = (
    Stage(
        "backbone",
        PER_MODALITY,
        reads={},
        sections=("data", "protocol", "backbones"),
        settings=_backbone_settings,
        train=train_backbone,
        v1_settings=_v1_backbone_settings,
    ),
    Stage(
        "crossfit",
        PER_CROSSFIT,
        reads={},
        sections=("data", "protocol", "backbones", "features"),
        settings=_crossfit_settings,
        train=train_crossfit,
        v1_settings=_v1_crossfit_settings,
    ),
    Stage(
        layout.FEATURES,
        PER_FOLD,
        # off: the section of the feature cache before cross-fitting existed (nothing to recompute)
        reads={"backbones": "backbone", "crossfit_backbones": Read("crossfit", _crossfits)},
        sections=("features",),
        settings=lambda ctx, _: {"crossfit": ctx.cfg.features.crossfit} if _crossfits(ctx.cfg) else {},
        compute=extract_features,
        check=check_feature_cache,
        outputs=_feature_outputs,
    ),
    Stage(
        layout.TEACHER,
        PER_FOLD,
        reads={"features": layout.FEATURES},
        sections=("teacher",),
        settings=lambda ctx, _: {"teacher": _dump(ctx.cfg.teacher)},
        train=lambda ctx, _: train_teacher(ctx),
        tested=True,
    ),
    Stage(
        "tnet",
        PER_FOLD,
        reads={"features": layout.FEATURES},
        sections=("tnet",),
        settings=lambda ctx, _: {"tnet": _dump(ctx.cfg.tnet)},
        train=lambda ctx, _: train_tnet(ctx),
    ),
    Stage(
        layout.ADAPTERS,
        PER_FOLD,
        reads={"teacher": layout.TEACHER},
        sections=("adapters",),
        settings=lambda ctx, _: {"adapters": _dump(ctx.cfg.adapters)},
        train=lambda ctx, _: train_adapters(ctx),
    ),
    Stage(
        layout.LOWER_BOUND,
        PER_FOLD,
        # the prevalent modalities alone: their stage-1 model (one) or a fusion of their features (several)
        reads={"features": layout.FEATURES},
        sections=("student", "teacher"),
        settings=_lower_bound_settings,
        compute=lower_bound,
        outputs=_lower_bound_outputs,
        tested=True,
    ),
    Stage(
        "student",
        PER_METHOD,
        # the student learns from the adapted teachers and uses the T-Nets; fine-tuning starts
        # from the stage-1 backbones
        reads={"teacher": layout.ADAPTERS, "tnet": "tnet", "backbones": Read(layout.FEATURES, _finetunes)},
        sections=("student", "distill"),
        settings=_student_settings,
        train=train_student,
        tested=True,
        v1_settings=_v1_student_settings,
    ),
)
BY_NAME = {s.name: s for s in STAGES}


def find(stage: str) -> tuple[Stage, str | None]:
    """The declaration and instance of a stage folder name (``student_mtpkdot`` -> student, mtpkdot)."""
    if stage in BY_NAME and BY_NAME[stage].per == PER_FOLD:
        return BY_NAME[stage], None
    for s in STAGES:
        if s.per != PER_FOLD and stage.startswith(s.name + "_"):
            return s, stage[len(s.name) + 1 :]
    raise KeyError(f"unknown stage {stage!r}")


def _read(r: str | Read) -> Read:
    return r if isinstance(r, Read) else Read(r)


def section(ctx: FoldContext, stage: str, v1: bool = False) -> dict[str, Any]:
    """The config section ``stage`` depends on: its own settings plus the hash of each stage it reads
    (``v1``: every part as config version 1 wrote it, :func:`v1_section`)."""
    spec, instance = find(stage)
    settings = spec.v1_settings if v1 and spec.v1_settings is not None else spec.settings
    sec = dict(settings(ctx, instance))
    for key, r in spec.reads.items():
        r = _read(r)
        if r.when is not None and not r.when(ctx.cfg):
            continue
        up = BY_NAME[r.stage]
        if up.per == PER_MODALITY:
            sec[key] = {m: config_hash(section(ctx, up.instance_name(m), v1)) for m in ctx.order}
        elif up.per == PER_CROSSFIT:
            names = [up.instance_name(i) for i in up.instances(ctx.order, [], ctx.cfg.features.crossfit)]
            sec[key] = {n: config_hash(section(ctx, n, v1)) for n in names}
        elif up.per == PER_FOLD:
            sec[key] = config_hash(section(ctx, up.name, v1))
        else:
            raise ValueError(f"stage {spec.name!r} cannot read the per-method stage {up.name!r}")
    return plain(sec)


def v1_section(ctx: FoldContext, stage: str) -> dict[str, Any] | None:
    """The section a stage folder written before config version 2 holds for the same settings (None
    when version 1 could not express them): such a folder is recognised by it, not retrained."""
    return section(ctx, stage, v1=True) if ctx.cfg.v1_expressible() else None


def inputs(ctx: FoldContext, spec: Stage) -> list[str]:
    """The stage folders ``spec`` reads (those of its section), whose ``done`` markers its own
    marker records: a retrained upstream stage makes it train again."""
    out: list[str] = []
    for r in map(_read, spec.reads.values()):
        if r.when is None or r.when(ctx.cfg):
            up = BY_NAME[r.stage]
            out += [up.instance_name(i) for i in up.instances(ctx.order, [], ctx.cfg.features.crossfit)]
    return out


def stage_names(modalities: Sequence[str], methods: Sequence[str], crossfit: int = 0) -> list[str]:
    """Every stage folder of one fold, in run order (``crossfit``: ``features.crossfit``)."""
    return [s.instance_name(i) for s in STAGES for i in s.instances(modalities, methods, crossfit)]


def outputs(ctx: FoldContext, spec: Stage, instance: str | None) -> list[str]:
    """The files of a finished stage that its ``done`` marker vouches for."""
    return spec.outputs(ctx, instance) if spec.outputs is not None else list(TRAINED_OUTPUTS)


def run_stage(ctx: FoldContext, spec: Stage, instance: str | None) -> None:
    name = spec.instance_name(instance)
    reads = inputs(ctx, spec)
    if spec.train is not None:
        train = spec.train
        run_trained_stage(ctx, name, lambda: train(ctx, instance), reads)
    elif spec.compute is not None:
        compute = spec.compute
        run_computed_stage(ctx, name, lambda: compute(ctx), outputs(ctx, spec, instance), reads)
    if spec.check is not None:
        spec.check(ctx)


def run_fold(ctx: FoldContext, methods: list[str], progress: Callable[[str], None] | None = None) -> None:
    """Every stage of one fold, in declaration order; finished stages are skipped."""
    record_old_markers(ctx, methods)
    for spec in STAGES:
        for instance in spec.instances(ctx.order, methods, ctx.cfg.features.crossfit):
            run_stage(ctx, spec, instance)
            if progress is not None:
                progress(spec.instance_name(instance))


def record_old_markers(ctx: FoldContext, methods: list[str]) -> None:
    """Check the finished stages of a run from before markers recorded outputs and inputs, and record
    them, for the whole fold before any stage runs: a stage recomputed in this run (its folder
    deleted to recompute it) is then seen as changed by the stages after it."""
    for spec in STAGES:
        for instance in spec.instances(ctx.order, methods, ctx.cfg.features.crossfit):
            name = spec.instance_name(instance)
            if ctx.has_old_marker(name):
                ctx.is_done(name, outputs(ctx, spec, instance), inputs(ctx, spec))


def upstream(name: str) -> set[str]:
    """Every stage declaration ``name`` builds on, directly or not (conditional reads included)."""
    out: set[str] = set()
    todo = [_read(r).stage for r in BY_NAME[name].reads.values()]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += [_read(r).stage for r in BY_NAME[n].reads.values()]
    return out


def depends_on(name: str) -> set[str]:
    """The top-level config sections that can invalidate stage declaration ``name``."""
    return set(BY_NAME[name].sections).union(*(BY_NAME[u].sections for u in upstream(name)))


def shareable(varied: Iterable[str]) -> set[str]:
    """Stage declarations whose results do not depend on the varied top-level config sections.

    Empty when a varied section is one no stage declares (``amp``, ``seeds`` ...): nothing is
    known about it, so nothing is shared.
    """
    varied = set(varied)
    known = set().union(*(s.sections for s in STAGES))
    if not varied <= known:
        return set()
    return {s.name for s in STAGES if not depends_on(s.name) & varied}
