"""The one stage runner: every trained stage (backbones, teacher, T-Net, adapters, students) runs here.

A stage's own code (``mtpkdot.pipeline.stages``) only builds a :class:`Trainable`: the modules, the
step computation, the evaluation and its optional hooks. The runner does what every stage shares:
skip when ``done``, seed (one stream for every student of a fold: :func:`draw_stream`), build, train
(a :class:`~mtpkdot.engine.loop.Trainer`: resume from ``last.pt``, select the epoch on validation),
evaluate the selected checkpoint ONCE on the fold's test subjects (``test.json``) and write ``done``.
Under ``torchrun`` each step runs through DistributedDataParallel (:func:`data_parallel`); evaluation
and checkpoints use the unwrapped modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mtpkdot import layout
from mtpkdot.engine.callbacks import Hooks, standard_callbacks
from mtpkdot.engine.loop import FitResult, Selection, Trainer, index_batches, run_epoch
from mtpkdot.engine.optim import build_optimizer
from mtpkdot.engine.schedules import lr_factor
from mtpkdot.engine.seed import derive_seed, make_generator, seed_everything
from mtpkdot.pipeline.context import FoldContext

Compute = Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], int]]


@dataclass
class Trainable:
    """What a trained stage supplies to :func:`run_trained_stage`; everything else is shared.

    ``modules`` are checkpointed (``best.pt``/``last.pt``); ``compute(idx) -> (losses, n)`` is one
    training step; ``evaluate(idx)`` scores store samples ``idx`` (``evaluate(val)[primary]`` selects
    the epoch); ``train_config`` gives optimiser, lr, weight decay, batch size, epochs and patience.
    """

    modules: dict[str, nn.Module]
    params: list[nn.Parameter]
    train_config: Any
    compute: Compute
    evaluate: Callable[[np.ndarray], dict[str, float]]
    primary: str
    higher_is_better: bool = True
    # the store samples it trains on (default: the fold's training role; a cross-fitted backbone: a subset)
    train_idx: np.ndarray | None = None
    # put in train mode before each epoch (default: ``modules``)
    train_modules: Sequence[nn.Module] | None = None
    # wrapped by DistributedDataParallel under torchrun (default: ``modules``)
    ddp_modules: Mapping[str, nn.Module] | None = None
    # hooks: before each training epoch; extra per-epoch columns; at a fresh start and after each
    # epoch's training (before its checkpoint, so what they put in ``extra`` is saved); after fit
    epoch_start: Callable[[], None] | None = None
    epoch_stats: Callable[[], dict[str, float]] | None = None
    extra: dict[str, Any] | None = None
    on_start: Callable[[], None] | None = None
    on_epoch_end: Callable[[int], None] | None = None
    after_fit: Callable[[], None] | None = None
    # validate before the first step and log it as epoch 0 of metrics.csv (students, lower bound)
    initial_eval: bool = False


def grad_scaler(ctx: FoldContext) -> torch.amp.GradScaler | None:
    if ctx.amp and ctx.device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


SHARED_STREAM = "student"


def draw_stream(stage: str) -> str:
    """The name a stage's initial weights and batch order derive from (with the seed and fold).

    Common random numbers: every ``student_<method>`` of one (seed, fold), and the
    ``lower_bound`` trained beside them, draw from one stream, so the students start from the same
    weights and see the same batches, and a difference between two methods is the methods' own. A
    method's extra randomness comes from its own generator (``Method.generator``). Every other stage
    draws from its own name.
    """
    if stage.startswith(layout.STUDENT_PREFIX) or stage == layout.LOWER_BOUND:
        return SHARED_STREAM
    return stage


def train_batches(ctx: FoldContext, stage: str, epoch: int, batch_size: int) -> list[torch.Tensor]:
    """Shuffled training batches of store indices; the order depends only on (seed, fold, the stage's
    stream, epoch): one order for every student of a (seed, fold) (:func:`draw_stream`)."""
    gen = make_generator(derive_seed(ctx.seed, ctx.fold, draw_stream(stage), epoch))
    idx = torch.as_tensor(ctx.split["train"], dtype=torch.long)
    ws = ctx.dist.world_size
    if ws > 1:  # equal shards per rank (the gather of relational losses needs them)
        batch_size = max(ws, batch_size - batch_size % ws)
    return index_batches(
        idx, batch_size, shuffle=True, generator=gen, drop_last=True, rank=ctx.dist.rank, world_size=ws
    )


class StageStep(nn.Module):
    """The modules a stage trains, with the computation of one training step as ``forward``.

    DistributedDataParallel averages the gradients of the module it wraps during ``backward`` and
    arms that reduction in the module's ``forward``. A stage trains one or several modules (backbone
    + head, adapters + heads, the student inside a distillation method) through a computation that is
    no single module's forward (feature look-up, frozen teachers, losses, the relational all-gather),
    so that computation is the forward of this container. ``compute(idx) -> (losses, n)``.
    """

    def __init__(self, stage: str, modules: Mapping[str, nn.Module], compute: Compute) -> None:
        super().__init__()
        self.stage = stage
        self.trained = nn.ModuleDict(dict(modules))
        self.compute = compute

    def forward(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        return self.compute(idx)


def data_parallel(
    ctx: FoldContext, stage: str, modules: Mapping[str, nn.Module], compute: Compute
) -> Compute:
    """The training step of ``stage`` for :func:`run_epoch`: ``compute`` itself in a single process,
    under ``torchrun`` a DistributedDataParallel around a :class:`StageStep` of ``modules``.

    DDP averages the parameter gradients over ranks; with the distillation core's all-gather, whose
    backward sums over ranks (``mtpkdot.dist``), the update equals the single-process
    update on the global batch. DDP's default buffer sync gives every rank rank 0's BatchNorm statistics
    at every forward. Every trainable parameter takes part in every step, so ``find_unused_parameters``
    (a graph walk per step) stays off; frozen parameters (``requires_grad=False``, e.g. the student's
    T-Nets) are ignored by DDP. Checkpoints and evaluation use ``modules`` themselves, unwrapped.
    """
    if ctx.dist.world_size == 1:
        return compute  # nothing wrapped: single-process results stay bit-identical
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # DDP's default buffer sync (``broadcast_buffers``, ``forward_sync_buffers`` from torch 2.13) is on
    return DistributedDataParallel(StageStep(stage, modules, compute), device_ids=device_ids)


# what a trained stage's done marker vouches for
TRAINED_OUTPUTS = (layout.BEST, layout.TEST)


def finish(
    ctx: FoldContext,
    stage: str,
    evaluate: Callable[[np.ndarray], dict[str, float]],
    best_epoch: int,
    inputs: Sequence[str] = (),
) -> None:
    """Evaluate the selected checkpoint ONCE on the fold's test subjects (``test.json``); mark the
    stage done, recording its outputs and its ``inputs`` (the stages it read)."""
    test = ctx.split["test"]
    ctx.write_json(
        ctx.stage_dir(stage) / layout.TEST,
        {
            "stage": stage,
            "seed": ctx.seed,
            "fold": ctx.fold,
            "n_test": int(len(test)),
            "best_epoch": best_epoch,
            **evaluate(test),
        },
    )
    ctx.mark_done(stage, TRAINED_OUTPUTS, inputs)
    ctx.dist.barrier()


def fit_trainable(ctx: FoldContext, stage: str, t: Trainable) -> FitResult:
    """Train ``t`` with its optimiser settings; the trainer restores the epoch selected on validation."""
    tc = t.train_config
    opt = build_optimizer(t.params, tc)
    scaler = grad_scaler(ctx)
    step = data_parallel(ctx, stage, t.ddp_modules or t.modules, t.compute)
    train_modules = list(t.train_modules) if t.train_modules is not None else list(t.modules.values())
    batches_ctx = ctx if t.train_idx is None else replace(ctx, split={**ctx.split, "train": t.train_idx})

    def train_epoch(epoch: int) -> dict[str, float]:
        if t.epoch_start is not None:
            t.epoch_start()
        for m in train_modules:
            m.train()
        batches = train_batches(batches_ctx, stage, epoch, tc.batch_size)
        res = run_epoch(batches, step, opt, device=ctx.device, amp=ctx.amp, scaler=scaler)
        row = {f"train_{k}": v for k, v in res.items()}
        if t.epoch_stats is not None:
            row.update(t.epoch_stats())
        return row

    selection = Selection(
        t.primary,
        t.higher_is_better,
        patience=tc.patience,
        # model selection on noisy validation curves (students; docs/pipeline.md, "Model selection")
        window=getattr(tc, "select_window", 1),
        after=getattr(tc, "select_after", 1),
    )
    callbacks = [Hooks(t.on_start, t.on_epoch_end)]
    callbacks += standard_callbacks(
        t.primary, write=ctx.write, tensorboard=ctx.cfg.tensorboard, where=f"seed {ctx.seed} fold {ctx.fold}"
    )
    trainer = Trainer(
        stage=stage,
        stage_dir=ctx.stage_dir(stage),
        modules=t.modules,
        optimizer=opt,
        section=ctx.recorded_section(stage),
        epochs=tc.epochs,
        selection=selection,
        lr_factor=lambda epoch: lr_factor(tc, epoch),
        scaler=scaler,
        extra=t.extra if t.extra is not None else {},
        callbacks=callbacks,
        write=ctx.write,
        initial_eval=t.initial_eval,
    )
    return trainer.fit(train_epoch, lambda: t.evaluate(ctx.split["val"]))


def run_trained_stage(
    ctx: FoldContext, stage: str, build: Callable[[], Trainable], inputs: Sequence[str] = ()
) -> None:
    """Skip when done; else seed, build, fit, run the after-fit hook, test once and mark done."""
    if ctx.is_done(stage, TRAINED_OUTPUTS, inputs):
        return
    train_and_test(ctx, stage, build, inputs)


def train_and_test(
    ctx: FoldContext, stage: str, build: Callable[[], Trainable], inputs: Sequence[str] = ()
) -> None:
    """Seed, build, fit, run the after-fit hook, test once and mark done (not checked for done)."""
    seed_everything(derive_seed(ctx.seed, ctx.fold, draw_stream(stage)))
    t = build()
    res = fit_trainable(ctx, stage, t)
    if t.after_fit is not None:
        t.after_fit()
    finish(ctx, stage, t.evaluate, res.best_epoch, inputs)


def run_computed_stage(
    ctx: FoldContext,
    stage: str,
    compute: Callable[[], None],
    outputs: Sequence[str] = (),
    inputs: Sequence[str] = (),
) -> None:
    """A stage that trains nothing (the feature cache): skip when done, else compute and mark done."""
    if ctx.is_done(stage, outputs, inputs):
        return
    compute()
    ctx.mark_done(stage, outputs, inputs)
    ctx.dist.barrier()
