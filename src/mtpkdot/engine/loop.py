"""The training loop shared by every stage: epochs, early stopping, checkpoints, exact resume.

``fit`` trains until ``epochs`` or until the validation primary metric has not improved for
``patience`` epochs. After every epoch it writes ``metrics.csv`` and ``last.pt`` (modules, optimizer,
AMP scaler, every RNG state, history), and ``best.pt`` when the validation metric improved. A second
call on the same stage folder continues after the last finished epoch and reaches the same result as
an uninterrupted run. Batches come from the caller: for cached features plain index tensors
(:func:`index_batches`), no DataLoader. With ``tensorboard=True`` every metrics.csv row is also written
as TensorBoard scalars under ``<stage_dir>/tensorboard`` (:func:`_tensorboard_sink`).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.atomic import atomic_write_text
from mtpkdot.dist import all_reduce_sum, is_distributed
from mtpkdot.engine.checkpoint import load_checkpoint, save_checkpoint
from mtpkdot.engine.seed import get_rng_state, set_rng_state

INTERRUPT_ENV = "MTPKDOT_INTERRUPT"
"""``<stage>:<epoch>``: raise :class:`StageInterrupted` after that epoch's checkpoint (tests of resume)."""


class StageInterrupted(RuntimeError):
    """Raised on purpose (``MTPKDOT_INTERRUPT``) after a checkpoint, to test that resume is exact."""


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def progress_enabled() -> bool:
    return sys.stderr.isatty() and os.environ.get("MTPKDOT_NO_PROGRESS", "") == ""


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
    params: list[nn.Parameter] | None = None,
    device: torch.device | None = None,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
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
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params or [], grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params or [], grad_clip)
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


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    cols = list(dict.fromkeys(key for row in history for key in row))  # first-seen order
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=cols, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _fmt(v) for k, v in row.items() if v is not None} for row in history)
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _tensorboard_tag(column: str) -> str:
    """``train_total`` -> ``train/total`` (TensorBoard groups tags by their first part); ``lr`` stays."""
    return column.replace("_", "/", 1)


def _tensorboard_sink(
    log_dir: Path | None, history: list[dict[str, Any]]
) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """``(log, close)``: ``log(row)`` writes a metrics.csv row as scalars at step ``row["epoch"]`` and
    flushes (a run is watched live); both are no-ops when ``log_dir`` is None. The rows of ``history``
    (a resumed stage) are written again first, and ``purge_step=1`` hides what an earlier, interrupted
    writer left, so each epoch shows once. An exception that ends ``fit`` leaves the writer open, with
    every finished epoch already on disk (its thread is a daemon, so exit does not wait on it)."""
    if log_dir is None:
        return (lambda row: None), (lambda: None)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir), purge_step=1 if history else None)

    def log(row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                writer.add_scalar(_tensorboard_tag(key), float(value), int(row["epoch"]))
        writer.flush()

    for row in history:
        log(row)
    return log, writer.close


def _check_tensorboard() -> None:
    from mtpkdot.config import TENSORBOARD_MISSING, tensorboard_available

    if not tensorboard_available():
        raise ValueError(TENSORBOARD_MISSING)


def _module_states(modules: Mapping[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}


def fit(
    *,
    stage: str,
    stage_dir: Path,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    train_epoch: Callable[[int], dict[str, float]],
    validate: Callable[[], dict[str, float]],
    primary: str,
    epochs: int,
    section: Any,
    patience: int | None = None,
    higher_is_better: bool = True,
    scaler: torch.amp.GradScaler | None = None,
    extra: dict[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    write: bool = True,
    progress: bool | None = None,
    tensorboard: bool = False,
    initial_eval: bool = False,
    select_window: int = 1,
    select_after: int = 1,
) -> FitResult:
    """Train ``modules`` for up to ``epochs`` epochs with early stopping on ``validate()[primary]``.

    ``train_epoch(epoch)`` runs the gradient steps of one epoch and returns the columns to log
    (``train_<term>``, ``sel_<teacher>``...); ``validate()`` returns ``{metric: value}`` logged as
    ``val_<metric>``. ``extra`` is a dict saved in ``last.pt`` and restored on resume (e.g. similarity
    snapshots). ``section`` is the config section this stage depends on; a ``last.pt`` written with a
    different one raises :class:`~mtpkdot.engine.checkpoint.ConfigMismatchError`. On return the modules
    hold the weights of the best validation epoch. ``write=False`` (non-zero DDP ranks) writes nothing.
    ``tensorboard=True`` also writes each metrics.csv row as TensorBoard scalars under
    ``<stage_dir>/tensorboard`` (tag = column with its first ``_`` as ``/``, step = epoch).
    ``initial_eval=True`` validates the modules before any step and logs it as the row of epoch 0
    (a fresh start only; it is a point of the curve, not a candidate for selection).
    Selection (and patience) use the mean validation score of the last ``select_window`` trained epochs;
    only epochs from ``max(select_after, select_window)`` on (the last one when there are fewer) are
    candidates, so a window is always full; the weights kept are those of the window's last epoch.
    1 and 1: the best single epoch.
    """
    from tqdm.auto import tqdm

    if tensorboard:
        _check_tensorboard()  # every rank, before any training

    stage_dir = Path(stage_dir)
    last_path, best_path = stage_dir / layout.LAST, stage_dir / layout.BEST
    extra = extra if extra is not None else {}
    history: list[dict[str, float]] = []
    best_score, best_epoch, bad_epochs, start = -math.inf, 0, 0, 1
    best_states = _module_states(modules)
    sign = 1.0 if higher_is_better else -1.0

    if last_path.is_file():
        state = load_checkpoint(last_path, section)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        history = state["history"]
        best_score, best_epoch, bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]
        extra.update(state.get("extra", {}))
        start = state["epoch"] + 1
        if state.get("stopped"):
            start = epochs + 1
        best_states = load_checkpoint(best_path, section)["modules"] if best_path.is_file() else best_states
    else:
        if on_start is not None:
            on_start()
        if initial_eval:  # where training starts: logged as epoch 0, never selected
            row0 = {"epoch": 0, "lr": optimizer.param_groups[0]["lr"]}
            history.append(row0 | {f"val_{k}": float(v) for k, v in validate().items()})

    show = progress_enabled() if progress is None else progress
    bar = tqdm(
        total=epochs, initial=start - 1, desc=stage, unit="ep", leave=False, disable=not (show and write)
    )
    epoch = start - 1
    tb_dir = stage_dir / layout.TENSORBOARD if tensorboard and write and start <= epochs else None
    log_scalars, close_scalars = _tensorboard_sink(tb_dir, history)
    for epoch in range(start, epochs + 1):
        row: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update(train_epoch(epoch))
        metrics = validate()
        row.update({f"val_{k}": float(v) for k, v in metrics.items()})
        history.append(row)
        score = _selection_score(history, f"val_{primary}", sign, select_window)
        candidate = epoch >= min(max(select_after, select_window), epochs)  # a full window only
        improved = candidate and (score > best_score or best_epoch == 0)
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_states = _module_states(modules)
        elif candidate:
            bad_epochs += 1
        stopped = patience is not None and bad_epochs >= patience
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if write:
            stage_dir.mkdir(parents=True, exist_ok=True)
            if improved:
                save_checkpoint(best_path, {"modules": best_states, "epoch": epoch, "score": score}, section)
            save_checkpoint(
                last_path,
                {
                    "modules": _module_states(modules),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": get_rng_state(),
                    "history": history,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "epoch": epoch,
                    "stopped": stopped,
                    "extra": extra,
                },
                section,
            )
            _write_metrics(stage_dir / layout.METRICS, history)
            log_scalars(row)
        bar.update(1)
        bar.set_postfix({primary: f"{float(metrics[primary]):.4g}"})
        if os.environ.get(INTERRUPT_ENV, "") == f"{stage}:{epoch}":
            bar.close()
            close_scalars()
            raise StageInterrupted(f"stage {stage} interrupted after epoch {epoch} ({INTERRUPT_ENV})")
        if stopped:
            break
    bar.close()
    close_scalars()
    for name, module in modules.items():
        module.load_state_dict(best_states[name])
    return FitResult(best_epoch=best_epoch, best_score=sign * best_score, epochs_run=epoch, history=history)


def _selection_score(history: list[dict[str, Any]], column: str, sign: float, window: int) -> float:
    """The mean of ``sign * column`` over the last ``window`` trained epochs (epoch >= 1) of ``history``;
    -inf when one of them is not finite."""
    scores = [sign * float(r[column]) for r in history if r["epoch"] >= 1][-window:]
    return sum(scores) / len(scores) if all(math.isfinite(x) for x in scores) else -math.inf


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
