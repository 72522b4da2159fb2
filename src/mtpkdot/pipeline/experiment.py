"""The experiment: prepare the store once, make the folds once, then seeds x folds x stages.

``run_experiment(cfg, run_dir)`` is what ``mtpkdot run`` calls. It is resumable: the store, the folds
and every finished stage are reused; the run directory refuses a config that would change results
(``config.yaml``), naming the keys that differ. ``summary.csv`` gets one row per (seed, fold, method)
with the test metrics of the checkpoint selected on validation, ``teacher`` being the upper bound and
``lower_bound`` the prevalent modalities alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from mtpkdot.atomic import atomic_write_csv, atomic_write_text
from mtpkdot.config import Config, config_from_dict, config_to_dict, dump_config, migrate
from mtpkdot.engine.checkpoint import check_config, config_hash
from mtpkdot.errors import DeviceError
from mtpkdot.layout import DONE, RunLayout, row_order
from mtpkdot.locks import FileLock, hold
from mtpkdot.pipeline.context import LOCATION_KEYS, Dist, FoldContext, plain

log = logging.getLogger(__name__)

META_KEYS = {"stage", "seed", "fold", "n_test", "best_epoch", "source"}
# settings that choose WHAT to run or WHERE, not what a result is: they may change between resumes
SELECTION_KEYS = ("name", "seeds", "device", "amp", "num_threads", "tensorboard")
# what a run refused on a cell another process trains can do instead
CELL_ADVICE = "wait for it with --wait, or run other --folds or --seeds"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda was asked for but torch sees no CUDA device (use --device cpu or auto)"
        )
    return torch.device(name)


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes (RANK / WORLD_SIZE / LOCAL_RANK); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # rank 0 alone trains what is not data-parallel (feature cache): the others wait at a barrier
        dist.init_process_group(backend, timeout=timedelta(hours=12))
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size())


def comparable(cfg: Config) -> dict[str, Any]:
    """The part of the config that determines results (what ``runs/<exp>/config.yaml`` must match)."""
    d = config_to_dict(cfg)
    for k in SELECTION_KEYS:
        d.pop(k, None)
    d["student"].pop("methods", None)
    d["distill"] = cfg.distill.compact()  # a section spelled out at its defaults is the same config
    for k in LOCATION_KEYS:
        d["data"].pop(k, None)
    return plain(d)


def check_run_dir(cfg: Config, run_dir: Path, write: bool) -> None:
    """Refuse to continue a run directory written with a different config; write/refresh config.yaml."""
    path = RunLayout(run_dir).config
    if path.is_file():
        stored = yaml.safe_load(path.read_text()) or {}
        try:
            stored_cfg = config_from_dict(migrate(stored, str(path), warn=False), str(path))
        except Exception as exc:
            raise RuntimeError(
                f"{path} is not a config this version can read ({exc}); use a new --out"
            ) from exc
        check_config(comparable(stored_cfg), comparable(cfg), path)
    if write:
        dump_config(cfg, path)
        atomic_write_text(RunLayout(run_dir).config_hash, config_hash(comparable(cfg)) + "\n")


def shared_files(run_dir: Path, dist: Dist | None = None) -> Any:
    """Hold the run directory's lock while writing the files every process of the run shares (config,
    folds, store meta, summary, report); waited for, as it is held for seconds. Rank 0 alone writes
    them under torchrun, so the other ranks take no lock."""
    if dist is not None and not dist.is_main:
        return nullcontext()
    return hold(RunLayout(run_dir).lock, f"run directory {run_dir}", wait=True)


@contextmanager
def cell_locks(
    run_dir: Path, cells: Sequence[tuple[int, int]], dist: Dist, wait: bool
) -> Iterator[dict[tuple[int, int], FileLock]]:
    """The lock of each (seed, fold) cell, released at the end; without ``wait`` all are taken now,
    so that a run on a cell another process trains stops before any work (:class:`LockHeldError`
    naming that process). Processes on disjoint cells share the run directory."""
    locks = {}
    if dist.is_main:  # the ranks of one torchrun job train the same cells: rank 0 holds them for all
        layout = RunLayout(run_dir)
        for seed, k in cells:
            locks[seed, k] = FileLock(
                layout.fold(seed, k).lock, f"seed {seed} fold {k} of {run_dir}", CELL_ADVICE
            )
    try:
        if not wait:
            for lock in locks.values():
                lock.acquire()
        yield locks
    finally:
        for lock in locks.values():
            lock.release()


def store_path(cfg: Config, run_dir: Path) -> Path:
    """``data.store`` when set, else ``<run dir>/store``: the same rule as ``mtpkdot prepare``."""
    return RunLayout(run_dir).store(cfg.data.store)


def open_store(cfg: Config, run_dir: Path, dist: Dist) -> Any:
    """Prepare (rank 0, resumable; waiting for another process preparing it) and open the store."""
    from mtpkdot.data.prepare import prepare
    from mtpkdot.data.store import Store

    path = store_path(cfg, run_dir)
    if dist.is_main:  # its messages (resumed, prepared, up to date) also without a terminal
        # processes training disjoint cells of one run share its store: the later ones wait for it
        prepare(cfg, path, progress=True, wait=True)
    dist.barrier()
    store = Store(path)
    if dist.is_main:
        # task and input shapes travel with the run, so `export` works after the store is deleted
        with shared_files(run_dir):
            text = json.dumps(store.meta, indent=1, sort_keys=True) + "\n"
            atomic_write_text(RunLayout(run_dir).store_meta, text)
    return store


def load_folds(cfg: Config, store: Any, run_dir: Path, write: bool, seed: int) -> pd.DataFrame:
    """Subject folds of repetition ``seed``, made once and persisted so every resume reuses them.

    ``kfold``: seed s gives partition s (``folds_seed<s>.csv``); ``loso`` / ``official``: one
    ``folds.csv``. The data side numbers folds from 0 (``official``: 0 is the test set, -1 never
    tested); the run directory and the command line number them from 1 (``fold1`` is data fold 0).
    """
    from mtpkdot.data import StaleFoldsError, partition

    p = cfg.protocol
    try:
        return partition(run_dir, store.manifest, p.scheme, p.folds, seed, write=write)
    except StaleFoldsError as exc:
        raise RuntimeError(
            f"{exc}; the data or the protocol changed since this run started: use a new --out"
        ) from None


def fold_numbers(folds: pd.DataFrame) -> list[int]:
    """Run-directory fold numbers (1-based) of every fold that has test samples."""
    return sorted(int(k) + 1 for k in pd.unique(folds["fold"]) if int(k) >= 0)


def fold_split(cfg: Config, store: Any, folds: pd.DataFrame, k: int, seed: int) -> dict[str, np.ndarray]:
    """Store indices of fold ``k`` (1-based): test = that fold, validation = a share of the other subjects."""
    from mtpkdot.data import fold_indices

    split = fold_indices(
        store, folds, k - 1, cfg.protocol.val_subjects, seed, train_subjects=cfg.protocol.train_subjects
    )
    out = {r: np.sort(np.asarray(split[r], dtype=np.int64)) for r in ("train", "val", "test")}
    for role, idx in out.items():
        if len(idx) == 0:
            raise RuntimeError(f"fold {k}: the {role} split is empty; use more subjects or fewer folds")
    return out


def write_split(ctx: FoldContext) -> None:
    if not ctx.write:
        return
    man = ctx.store.manifest
    rows = []
    for role in ("train", "val", "test"):
        for i in ctx.split[role]:
            rows.append((str(man["sample_id"].iloc[i]), str(man["subject_id"].iloc[i]), role))
    df = pd.DataFrame(rows, columns=["sample_id", "subject_id", "role"])
    atomic_write_csv(df, ctx.layout.fold(ctx.seed, ctx.fold).split_csv)


def run_experiment(
    cfg: Config,
    run_dir: str | Path,
    folds: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool | None = None,
    wait: bool = False,
) -> pd.DataFrame:
    """Run every stage for the chosen seeds, folds and methods; return (and write) the summary.

    A (seed, fold) cell that another process trains stops the run before any training
    (:class:`~mtpkdot.locks.LockHeldError`), or with ``wait`` is waited for (and then found done).
    """
    from tqdm.auto import tqdm

    # the built-in methods register on import; the CLI and the API load plugins before calling this
    import mtpkdot.distill  # noqa: F401
    from mtpkdot.engine.callbacks import progress_seconds
    from mtpkdot.engine.loop import progress_enabled
    from mtpkdot.pipeline.graph import run_fold, section, stage_names
    from mtpkdot.registry import METHODS

    cfg.distill.check_sections()  # the method sections, now that every method is registered
    run_dir = Path(run_dir)
    methods = list(methods) if methods is not None else list(cfg.student.methods)
    for m in methods:
        METHODS.get(m)  # unknown names fail before any work
    progress_seconds()  # so does a bad MTPKDOT_PROGRESS_SECONDS
    seeds = list(seeds) if seeds is not None else list(cfg.seeds)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = resolve_device(device or cfg.device)
    use_amp = cfg.amp if amp is None else amp
    dist = init_distributed(dev)
    if dist.world_size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())

    run_dir.mkdir(parents=True, exist_ok=True)
    with shared_files(run_dir, dist):
        check_run_dir(cfg, run_dir, dist.is_main)
    store = open_store(cfg, run_dir, dist)
    for m in methods:  # before any training: a method that cannot apply to this task fails now
        if store.task.kind not in METHODS.get(m).tasks:
            from mtpkdot.distill.method import applicable_methods

            raise ValueError(
                f"method {m!r} is not applicable to this {store.task.kind} task (data.task "
                f"{cfg.data.task!r}); remove it from student.methods / --methods "
                f"(applicable: {', '.join(applicable_methods(store.task.kind))})"
            )
    if dist.is_main:  # the other ranks read the saved folds once rank 0 has written them
        with shared_files(run_dir):
            fold_dfs = {s: load_folds(cfg, store, run_dir, True, s) for s in seeds}
    dist.barrier()
    if not dist.is_main:
        fold_dfs = {s: load_folds(cfg, store, run_dir, False, s) for s in seeds}
    all_folds = sorted(set().union(*(fold_numbers(f) for f in fold_dfs.values())))
    chosen = list(folds) if folds else all_folds
    bad = [k for k in chosen if k not in all_folds]
    if bad:
        raise ValueError(f"--folds {bad}: this run has folds {all_folds}")

    used = [m for m in cfg.data.modalities if m in set(cfg.data.prevalent) | set(cfg.data.privileged)]
    per_fold = stage_names(used, methods, cfg.features.crossfit)
    show = (progress_enabled() if progress is None else progress) and dist.is_main
    cells = [(seed, k) for seed in seeds for k in chosen]
    bar = tqdm(total=len(cells) * len(per_fold), desc="run", unit="stage", disable=not show)
    with cell_locks(run_dir, cells, dist, wait) as locks:
        for seed, k in cells:
            lock = locks.get((seed, k))
            if lock is not None:
                lock.acquire(wait=True)  # held already unless waiting
            split = fold_split(cfg, store, fold_dfs[seed], k, seed)
            ctx = FoldContext(cfg, store, split, run_dir, seed, k, dev, use_amp, dist, graph_section=section)
            write_split(ctx)

            lines = StageLines(f"seed {seed} fold {k}", len(per_fold), dist.is_main and not show)

            def advance(stage: str, seed: int = seed, k: int = k, lines: StageLines = lines) -> None:
                bar.set_description(f"seed {seed} fold {k} {stage}")
                bar.update(1)
                lines.stage_done(stage)

            run_fold(ctx, methods, advance)
            lines.fold_done()
            if lock is not None:
                lock.release()  # a process waiting for this cell may go on
    bar.close()
    if not dist.is_main:
        return collect_summary(run_dir)
    # collected and written under the lock: the last process to finish writes every finished cell
    with shared_files(run_dir):
        summary = collect_summary(run_dir)
        atomic_write_csv(summary, RunLayout(run_dir).summary)
    return summary


class StageLines:
    """Without a bar (stderr not a terminal: nohup, CI, a log file), a log line as each stage of a fold
    ends and one when the fold ends, with the seconds taken, so that a long run does not look hung."""

    def __init__(self, where: str, stages: int, enabled: bool) -> None:
        self.where, self.stages, self.enabled = where, stages, enabled
        self.done = 0
        self.fold_started = self.stage_started = time.perf_counter()

    def stage_done(self, stage: str) -> None:
        now = time.perf_counter()
        self.done += 1
        if self.enabled:
            took = now - self.stage_started
            log.info("%s %s done (stage %d/%d, %.0f s)", self.where, stage, self.done, self.stages, took)
        self.stage_started = now

    def fold_done(self) -> None:
        if self.enabled:
            log.info("%s done (%.0f s)", self.where, time.perf_counter() - self.fold_started)


def collect_summary(run_dir: str | Path) -> pd.DataFrame:
    """One row per (seed, fold, method) from the ``test.json`` of every finished tested stage
    (the teacher, the lower bound and the students: ``tested`` in :mod:`mtpkdot.pipeline.graph`)."""
    from mtpkdot.pipeline.graph import find

    rows = []
    for path in RunLayout(run_dir).test_jsons():
        try:
            spec, instance = find(path.parent.name)
        except KeyError:
            continue
        if not spec.tested or not (path.parent / DONE).is_file():
            continue
        data = json.loads(path.read_text())
        method = instance if instance is not None else spec.name
        row = {"seed": int(data["seed"]), "fold": int(data["fold"]), "method": method}
        row.update({k: v for k, v in data.items() if k not in META_KEYS})
        row["n_test"] = int(data["n_test"])
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["seed", "fold", "method", "n_test"])
    df = pd.DataFrame(rows)
    # a method of an older run that is not registered any more goes last
    df["_order"] = df["method"].map(lambda m: row_order(m) if row_order(m) is not None else math.inf)
    df = df.sort_values(["seed", "fold", "_order", "method"]).drop(columns="_order").reset_index(drop=True)
    cols = ["seed", "fold", "method"] + [
        c for c in df.columns if c not in ("seed", "fold", "method", "n_test")
    ]
    return df[cols + ["n_test"]]
