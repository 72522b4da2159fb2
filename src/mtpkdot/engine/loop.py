"""The training loop shared by every stage: a :class:`Trainer` with early stopping, checkpoints, exact resume.

:meth:`Trainer.fit` trains until ``epochs`` or until the validation score has not improved for
``patience`` epochs (:class:`Selection`). After every epoch it writes ``last.pt`` (modules, optimizer,
AMP scaler, every RNG state, history, the early-stopping state) and ``best.pt`` when the score
improved; its callbacks (:mod:`mtpkdot.engine.callbacks`) write ``metrics.csv`` and TensorBoard
scalars, show progress and interrupt on request. A second fit on the same stage folder continues
after the last finished epoch and reaches the same result as an uninterrupted run. The learning rate
of each epoch comes from ``lr_factor`` (:mod:`mtpkdot.engine.schedules`). Batches come from the
caller: for cached features plain index tensors (:func:`index_batches`), no DataLoader.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.dist import all_reduce_sum, is_distributed
from mtpkdot.engine.callbacks import INTERRUPT_ENV, Callback, progress_enabled
from mtpkdot.engine.checkpoint import ConfigMismatchError, load_checkpoint, save_checkpoint
from mtpkdot.engine.seed import get_rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = [
    "INTERRUPT_ENV",  # here too for the resume tests and the pipeline, which import it from the loop
    "EarlyStopping",
    "FitResult",
    "Selection",
    "Trainer",
    "autocast",
    "chunks",
    "index_batches",
    "predict",
    "progress_enabled",
    "run_epoch",
]


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Selection:
    """Which epoch's weights a stage keeps, and when it stops early.

    The score of an epoch is the mean of ``val_<primary>`` over the last ``window`` trained epochs;
    only epochs from ``max(after, window)`` on (the last one when there are fewer) are candidates, so a
    window is always full; the weights kept are those of the window's last epoch (1 and 1: the best
    single epoch). Training stops after ``patience`` candidates in a row without improvement (None:
    never).
    """

    primary: str
    higher_is_better: bool = True
    patience: int | None = None
    window: int = 1
    after: int = 1


class EarlyStopping:
    """The state of :class:`Selection` over a run: best score and epoch, and the patience count
    (saved in ``last.pt`` under the same keys as :meth:`state_dict`, restored on resume)."""

    def __init__(self, selection: Selection, epochs: int) -> None:
        self.selection = selection
        self.epochs = epochs
        self.sign = 1.0 if selection.higher_is_better else -1.0
        self.best_score = -math.inf  # of sign * metric: higher is better
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, history: list[dict[str, Any]], epoch: int) -> bool:
        """Score the epoch just appended to ``history``; True when it is the new best."""
        sel = self.selection
        score = _selection_score(history, f"val_{sel.primary}", self.sign, sel.window)
        candidate = epoch >= min(max(sel.after, sel.window), self.epochs)  # a full window only
        improved = candidate and (score > self.best_score or self.best_epoch == 0)
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        elif candidate:
            self.bad_epochs += 1
        return improved

    @property
    def stopped(self) -> bool:
        return self.selection.patience is not None and self.bad_epochs >= self.selection.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]


def _selection_score(history: list[dict[str, Any]], column: str, sign: float, window: int) -> float:
    """The mean of ``sign * column`` over the last ``window`` trained epochs (epoch >= 1) of ``history``;
    -inf when one of them is not finite."""
    scores = [sign * float(r[column]) for r in history if r["epoch"] >= 1][-window:]
    return sum(scores) / len(scores) if all(math.isfinite(x) for x in scores) else -math.inf


@dataclass(eq=False)
class Trainer:
    """Trains ``modules`` of one stage for up to ``epochs`` epochs, selecting on validation.

    ``section`` is the config section the stage depends on; a ``last.pt`` written with a different
    one raises :class:`~mtpkdot.engine.checkpoint.ConfigMismatchError`. ``lr_factor(epoch)`` scales
    the optimizer's configured rate for that epoch (None: left as it is). ``extra`` is a dict saved in
    ``last.pt`` and updated in place on resume (e.g. similarity snapshots). ``write=False`` (a DDP rank
    other than 0) writes no checkpoint. ``initial_eval=True`` validates the modules before any step
    and logs it as the row of epoch 0 (a fresh start only; a point of the curve, never selected).
    """

    stage: str
    stage_dir: Path
    modules: Mapping[str, nn.Module]
    optimizer: torch.optim.Optimizer
    section: Any
    epochs: int
    selection: Selection
    lr_factor: Callable[[int], float] | None = None
    scaler: torch.amp.GradScaler | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    callbacks: Sequence[Callback] = ()
    write: bool = True
    initial_eval: bool = False
    # set by fit: the rows of metrics.csv, the first epoch to train, whether last.pt was read
    history: list[dict[str, Any]] = field(init=False, default_factory=list)
    start: int = field(init=False, default=1)
    resumed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.stage_dir = Path(self.stage_dir)
        # the configured rates, before a resumed optimizer state overwrites them with a scheduled one
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    def fit(
        self, train_epoch: Callable[[int], dict[str, float]], validate: Callable[[], dict[str, float]]
    ) -> FitResult:
        """Train; on return the modules hold the weights of the selected epoch.

        ``train_epoch(epoch)`` runs the gradient steps of one epoch and returns the columns to log
        (``train_<term>``, ``sel_<teacher>``...); ``validate()`` returns ``{metric: value}``, logged as
        ``val_<metric>``.
        """
        stopping = EarlyStopping(self.selection, self.epochs)
        best_states = self._restore(stopping)
        if not self.resumed and self.initial_eval:  # where training starts: logged as epoch 0
            row0 = {"epoch": 0, "lr": self.optimizer.param_groups[0]["lr"]}
            self.history.append(row0 | {f"val_{k}": float(v) for k, v in validate().items()})
        epoch = self.start - 1
        try:
            for cb in self.callbacks:
                cb.on_fit_start(self)
            for epoch in range(self.start, self.epochs + 1):
                self._set_lr(epoch)
                row: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
                row.update(train_epoch(epoch))
                row.update({f"val_{k}": float(v) for k, v in validate().items()})
                self.history.append(row)
                improved = stopping.update(self.history, epoch)
                if improved:
                    best_states = _module_states(self.modules)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, row)
                if self.write:
                    self._save(epoch, stopping, best_states if improved else None)
                for cb in self.callbacks:
                    cb.on_checkpoint(self, row)
                if stopping.stopped:
                    break
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
        for name, module in self.modules.items():
            module.load_state_dict(best_states[name])
        best_score = stopping.sign * stopping.best_score
        return FitResult(stopping.best_epoch, best_score, epochs_run=epoch, history=self.history)

    def _restore(self, stopping: EarlyStopping) -> dict[str, dict[str, torch.Tensor]]:
        """Resume from ``last.pt`` when there is one and ``best.pt`` holds the epoch it selected;
        the module states of the best epoch so far. Without that ``best.pt`` a resumed run would
        end on weights that are not the selected ones, so the stage trains from the start."""
        last_path = self.stage_dir / layout.LAST
        if not last_path.is_file():
            return _module_states(self.modules)
        state = load_checkpoint(last_path, self.section)
        best = self._selected(state["best_epoch"])
        if best is None:
            log.warning(
                "%s: %s does not hold epoch %d, which %s selected (missing, unreadable or from another "
                "run); training %s from the start",
                self.stage_dir,
                layout.BEST,
                state["best_epoch"],
                layout.LAST,
                self.stage,
            )
            return _module_states(self.modules)
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.history = state["history"]
        stopping.load_state_dict(state)
        self.extra.update(state.get("extra", {}))
        self.start = self.epochs + 1 if state.get("stopped") else state["epoch"] + 1
        self.resumed = True
        return best or _module_states(self.modules)

    def _selected(self, best_epoch: int) -> dict[str, dict[str, torch.Tensor]] | None:
        """The module states ``best.pt`` holds for ``best_epoch`` ({} when no epoch was selected
        yet); None when it does not hold them."""
        if best_epoch < 1:
            return {}
        try:
            best = load_checkpoint(self.stage_dir / layout.BEST, self.section)
        except ConfigMismatchError:
            raise
        except (FileNotFoundError, RuntimeError):
            return None
        return best["modules"] if best.get("epoch") == best_epoch else None

    def _set_lr(self, epoch: int) -> None:
        if self.lr_factor is None:
            return
        factor = self.lr_factor(epoch)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
            group["lr"] = base * factor

    def _save(
        self, epoch: int, stopping: EarlyStopping, best_states: dict[str, dict[str, torch.Tensor]] | None
    ) -> None:
        """``last.pt``, and ``best.pt`` when ``best_states`` (the epoch improved)."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        if best_states is not None:
            best = {"modules": best_states, "epoch": epoch, "score": stopping.best_score}
            save_checkpoint(self.stage_dir / layout.BEST, best, self.section)
        state = {
            "modules": _module_states(self.modules),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": get_rng_state(),
            "history": self.history,
            **stopping.state_dict(),
            "epoch": epoch,
            "stopped": stopping.stopped,
            "extra": self.extra,
        }
        save_checkpoint(self.stage_dir / layout.LAST, state, self.section)


def _module_states(modules: Mapping[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}


def index_batches(
    indices: torch.Tensor | Iterable[int],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> list[torch.Tensor]:
    """Split store indices into batches (shuffled with ``generator``).

    ``drop_last`` drops a trailing partial batch only when at least one full batch exists (training
    with relational losses wants full batches; evaluation never drops). With ``world_size > 1`` every
    rank builds the same global batches and takes its contiguous block of each, ``b / world_size``
    rows: the all-gather of the relational losses (rank order) then rebuilds the global batch in the
    single-process order. A global batch whose size is not a multiple of ``world_size`` loses its last
    rows (the gather needs equal shards), so with ``batch_size % world_size == 0`` and full batches the
    ranks see exactly the single-process batches.
    """
    idx = torch.as_tensor(
        list(indices) if not isinstance(indices, torch.Tensor) else indices, dtype=torch.long
    )
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=generator)]
    n = len(idx)
    if drop_last and n >= batch_size:
        n = (n // batch_size) * batch_size
    out = [idx[i : min(i + batch_size, n)] for i in range(0, n, batch_size)]
    if world_size > 1:
        shards = []
        for b in out:
            n_rank = len(b) // world_size
            if n_rank > 0:
                shards.append(b[rank * n_rank : (rank + 1) * n_rank])
        out = shards
    return out


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def run_epoch(
    batches: Iterable[Any],
    compute: Callable[[Any], tuple[dict[str, torch.Tensor], int]],
    optimizer: torch.optim.Optimizer,
    device: torch.device | None = None,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass of gradient steps; ``compute(batch) -> (losses, n)`` with ``losses["total"]`` to minimise.

    Under DDP ``compute`` is the DistributedDataParallel-wrapped step, so the gradients are averaged
    over ranks during ``backward``. Returns the sample-weighted mean of every loss term over the epoch
    (unweighted terms as the method reports them); under DDP the sums and counts of all ranks are
    added first, so every rank returns the mean over the global epoch (what one process would log).
    """
    device = device or torch.device("cpu")
    sums: dict[str, float] = {}
    count = 0
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            losses, n = compute(batch)
        total = losses["total"]
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite training loss {total.item()} (terms: {_floats(losses)})")
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            optimizer.step()
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        count += n
    if is_distributed():
        keys = sorted(sums)  # every rank runs the same method, so the same terms
        local = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
        # NCCL reduces device tensors only; gloo takes CPU tensors
        values = all_reduce_sum(local.to(device)).cpu().tolist()
        count = int(round(values.pop()))
        reduced = dict(zip(keys, values, strict=True))
        sums = {k: reduced[k] for k in sums}
    return {k: v / max(count, 1) for k, v in sums.items()}


def _floats(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in losses.items()}


def predict(
    forward: Callable[[Any], torch.Tensor], batches: Iterable[Any], modules: Iterable[nn.Module] = ()
) -> torch.Tensor:
    """Concatenate ``forward(batch)`` over batches in eval mode without grad (modules restored after)."""
    mods = list(modules)
    modes = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        with torch.no_grad():
            outs = [forward(b).float().cpu() for b in batches]
    finally:
        for m, mode in zip(mods, modes, strict=True):
            m.train(mode)
    return torch.cat(outs) if outs else torch.empty(0)


def chunks(n: int, size: int) -> Iterator[torch.Tensor]:
    """Consecutive index ranges 0..n in chunks (evaluation order, nothing dropped)."""
    for i in range(0, n, size):
        yield torch.arange(i, min(i + size, n))
