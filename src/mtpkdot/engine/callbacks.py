"""What the trainer does besides training, as callbacks: metrics.csv, TensorBoard, progress, interrupts.

A :class:`Callback` sees four moments of :meth:`~mtpkdot.engine.loop.Trainer.fit`: the start (state
restored or initialised), the end of an epoch before its checkpoint (what it changes in
``trainer.extra`` is saved), the end of an epoch after its checkpoint (``last.pt`` is on disk, so a
failure here loses nothing), and the end of fit, also when an exception ends it.
:func:`standard_callbacks` gives the ones every stage of the pipeline uses.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mtpkdot import layout
from mtpkdot.atomic import atomic_write_text

log = logging.getLogger("mtpkdot.engine")

INTERRUPT_ENV = "MTPKDOT_INTERRUPT"
"""``<stage>:<epoch>``: raise :class:`StageInterrupted` after that epoch's checkpoint (tests of resume)."""


class StageInterrupted(RuntimeError):
    """Raised on purpose (``MTPKDOT_INTERRUPT``) after a checkpoint, to test that resume is exact."""


class Trainer(Protocol):
    """What a callback reads of the :class:`~mtpkdot.engine.loop.Trainer` it is called by (the trainer
    imports the callbacks, so they name it by its attributes)."""

    stage: str
    stage_dir: Path
    epochs: int
    history: list[dict[str, Any]]
    start: int
    resumed: bool


class Callback:
    """Does nothing at each moment of fit; subclasses override the ones they need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """``trainer.history`` and ``trainer.start`` are set (``trainer.resumed``: from ``last.pt``)."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """The epoch's row is in ``trainer.history``; its checkpoint is not written yet."""

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """The epoch's ``last.pt`` (and ``best.pt`` when it improved) is written."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Fit ends: by its last epoch, early stopping or an exception."""


PROGRESS_SECONDS_ENV = "MTPKDOT_PROGRESS_SECONDS"
"""Seconds between two progress lines of a stage when stderr is not a terminal (default 30)."""


def progress_enabled() -> bool:
    """Whether to draw progress bars: only on a terminal (in a log file a bar is a heap of redraws)."""
    return sys.stderr.isatty() and os.environ.get("MTPKDOT_NO_PROGRESS", "") == ""


def progress_seconds() -> float:
    """``MTPKDOT_PROGRESS_SECONDS`` as a number of seconds (0: a line after every epoch)."""
    text = os.environ.get(PROGRESS_SECONDS_ENV, "").strip()
    if not text:
        return 30.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise ValueError(f"{PROGRESS_SECONDS_ENV} must be a number of seconds >= 0, got {text!r}")
    return seconds


class MetricsCsv(Callback):
    """Rewrites ``<stage_dir>/metrics.csv`` from the whole history after every checkpoint."""

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        write_metrics(trainer.stage_dir / layout.METRICS, trainer.history)


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
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


def tensorboard_tag(column: str) -> str:
    """``train_total`` -> ``train/total`` (TensorBoard groups tags by their first part); ``lr`` stays."""
    return column.replace("_", "/", 1)


class TensorBoard(Callback):
    """Writes every metrics.csv row as scalars under ``<stage_dir>/tensorboard`` at step ``epoch``
    (tag: :func:`tensorboard_tag`), flushed each epoch so a run can be watched live.

    A resumed stage writes its earlier rows again and ``purge_step=1`` hides what an interrupted
    writer left, so each epoch shows once. A finished stage opens no writer.
    """

    def __init__(self) -> None:
        check_tensorboard()  # before any training, so a missing package costs no epoch
        self._writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.start > trainer.epochs:
            return
        from torch.utils.tensorboard import SummaryWriter

        log_dir = trainer.stage_dir / layout.TENSORBOARD
        self._writer = SummaryWriter(str(log_dir), purge_step=1 if trainer.history else None)
        for row in trainer.history:
            self._log(row)

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._log(row)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(tensorboard_tag(key), float(value), int(row["epoch"]))
        self._writer.flush()


def check_tensorboard() -> None:
    from mtpkdot.config import TENSORBOARD_MISSING, tensorboard_available

    if not tensorboard_available():
        raise ValueError(TENSORBOARD_MISSING)


class ProgressBar(Callback):
    """A tqdm bar over the stage's epochs with the last validation score of ``primary``."""

    def __init__(self, primary: str) -> None:
        self.primary = primary
        self._bar: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=trainer.epochs, initial=trainer.start - 1, desc=trainer.stage, unit="ep", leave=False
        )

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._bar.update(1)
        self._bar.set_postfix({self.primary: f"{float(row[f'val_{self.primary}']):.4g}"})

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressLines(Callback):
    """Without a terminal (nohup, CI, a log file) a log line per stage at most every ``every``
    seconds: where, stage, epoch and seconds so far, so that a long stage does not look hung."""

    def __init__(
        self, primary: str, where: str = "", every: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.primary = primary
        self.where = where
        self.every = every
        self.clock = clock
        self._started = self._last = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._started = self._last = self.clock()

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        score = f"val {self.primary} {float(row[f'val_{self.primary}']):.4g}"
        place = f"{self.where} {trainer.stage}" if self.where else trainer.stage
        took = now - self._started
        log.info("%s: epoch %d/%d, %s, %.0f s", place, row["epoch"], trainer.epochs, score, took)


class Interrupt(Callback):
    """Raises :class:`StageInterrupted` after the checkpoint of the epoch ``MTPKDOT_INTERRUPT`` names."""

    def on_checkpoint(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if os.environ.get(INTERRUPT_ENV, "") == f"{trainer.stage}:{row['epoch']}":
            raise StageInterrupted(
                f"stage {trainer.stage} interrupted after epoch {row['epoch']} ({INTERRUPT_ENV})"
            )


class Hooks(Callback):
    """Plain functions as a callback: ``on_start()`` on a fresh start only (not on resume), before
    the first step (after the epoch-0 validation), ``on_epoch_end(epoch)`` before the epoch's checkpoint."""

    def __init__(
        self,
        on_start: Callable[[], None] | None = None,
        on_epoch_end: Callable[[int], None] | None = None,
    ) -> None:
        self._on_start = on_start
        self._on_epoch_end = on_epoch_end

    def on_fit_start(self, trainer: Trainer) -> None:
        if self._on_start is not None and not trainer.resumed:
            self._on_start()

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self._on_epoch_end is not None:
            self._on_epoch_end(int(row["epoch"]))


def standard_callbacks(
    primary: str,
    *,
    write: bool = True,
    tensorboard: bool = False,
    progress: bool | None = None,
    where: str = "",
) -> list[Callback]:
    """metrics.csv, TensorBoard (``tensorboard``), the progress bar (``progress``; None: when stderr
    is a terminal) or else progress lines (prefixed ``where``, e.g. the seed and fold), and the
    interrupt hook. ``write=False`` (a DDP rank other than 0) writes nothing and shows nothing, but
    checks for TensorBoard like rank 0 and honours the interrupt."""
    callbacks: list[Callback] = []
    if tensorboard:
        check_tensorboard()  # every rank, before any training
    if write:
        callbacks.append(MetricsCsv())
        if tensorboard:
            callbacks.append(TensorBoard())
        if progress_enabled() if progress is None else progress:
            callbacks.append(ProgressBar(primary))
        else:
            callbacks.append(ProgressLines(primary, where, every=progress_seconds()))
    callbacks.append(Interrupt())
    return callbacks
