"""Job bookkeeping: the work folder (arrays, per-sample status bitmap, failures), resume, the subject face
fallback, and the finished store (arrays, manifest, ``prepare_report.csv``, ``meta.json``, ``done``)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.atomic import atomic_write_csv, atomic_write_text
from mtpkdot.data.manifest import path_column, task_spec
from mtpkdot.data.prepare.kinds import BOX, FALLBACK
from mtpkdot.data.prepare.options import PrepareOptions
from mtpkdot.data.prepare.workers import FAILED, NO_FACE, OK, OK_FALLBACK, PENDING, Result, results
from mtpkdot.data.store import Store, array_record
from mtpkdot.errors import NothingPreparedError, file_error
from mtpkdot.registry import DATASETS
from mtpkdot.signals.errors import SampleError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger("mtpkdot.data.prepare")

_STORE_FILES = ("done", "meta.json", "manifest.csv", "prepare_report.csv")
FALLBACK_REASON = "face: subject fallback"


def run_job(job: Job) -> Store:
    """Start or resume ``job``'s work folder, prepare the samples not yet done, re-run those without a
    detected face with their subject's face box, and write the finished store."""
    _open_work(job)
    pending = _pending(job)
    # the bar counts every sample, those done before (by the shape probe or an interrupted run) too
    done_before = len(job.rows) - len(pending)
    _run(job, [(i, job.rows[i]) for i in pending], f"prepare {job.data_cfg.dataset}", done_before=done_before)
    _face_fallback(job)
    return _finish(job)


def _wipe(store_dir: Path) -> None:
    shutil.rmtree(store_dir / ".work", ignore_errors=True)
    for name in _STORE_FILES:
        (store_dir / name).unlink(missing_ok=True)
    for f in store_dir.glob("*.npy"):
        f.unlink()


@dataclass
class Job:
    """One prepare run: what it reads, where it writes, and the per-sample bookkeeping in ``.work``."""

    store_dir: Path
    data_cfg: Any
    manifest: pd.DataFrame
    key: str
    workers: int
    strict: bool
    progress: bool
    options: PrepareOptions
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    specs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    status: Any = None
    decoder: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.store_dir / ".work"

    @property
    def sequence(self) -> bool:
        return "annotation" in self.manifest.columns

    @property
    def fixed_camera(self) -> bool:
        return DATASETS.get(self.data_cfg.dataset).fixed_camera


def _open_work(job: Job) -> None:
    """Start or resume the work folder: arrays and status bitmap, created by the first good sample."""
    from numpy.lib.format import open_memmap

    work = job.work
    if not ((work / "key").is_file() and (work / "key").read_text().strip() == job.key):
        _wipe(job.store_dir)
        work.mkdir(parents=True)
        atomic_write_text(work / "key", job.key)
    job.failures = _read_failures(work)
    resumed = (work / "shapes.json").is_file()
    if not resumed:
        _probe(job)
    job.specs = json.loads((work / "shapes.json").read_text())
    job.arrays = {k: open_memmap(work / f"{k}.npy", mode="r+") for k in job.specs}
    job.status = open_memmap(work / "status.npy", mode="r+")
    if resumed and job.progress:
        done, n = len(job.rows) - len(_pending(job)), len(job.rows)
        log.info(
            "resuming the interrupted prepare of %s: %d of %d samples already done", job.store_dir, done, n
        )


def _probe(job: Job) -> None:
    """The first sample that decodes fixes every array's shape and dtype (``shapes.json``)."""
    import numpy as np

    n, early = len(job.rows), {}
    for i in range(n):
        item = [(i, job.rows[i])]
        ((_, res, err, code),) = _results(job, item, 1)
        if res is not None:
            break
        early[i] = _failure_code(job, i, str(err), code, final=False)
    else:
        raise NothingPreparedError(
            f"no sample of {job.data_cfg.dataset} ({job.data_cfg.root}) could be prepared; "
            f"first error: {job.failures.get(0)}"
        )
    specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in res.items()}
    job.arrays = {
        k: _new_array(job.work / f"{k}.npy", s["dtype"], (n, *s["shape"])) for k, s in specs.items()
    }
    job.status = _new_array(job.work / "status.npy", np.int8, (n,))
    for j, code in early.items():
        job.status[j] = code
    job.specs = specs
    _keep(job, i, res)
    _flush(job)
    atomic_write_text(job.work / "shapes.json", json.dumps(specs))


def _new_array(path: Path, dtype: Any, shape: tuple[int, ...]) -> Any:
    """A new memory-mapped ``.npy`` array whose disk blocks are reserved before anything is written:
    a sparse mapped file on a full disk kills the process with SIGBUS at the first write, where the
    reservation fails with an error naming the file."""
    from numpy.lib.format import open_memmap

    try:
        array = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        _reserve(path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise file_error(exc, path) from exc
    return array


def _reserve(path: Path) -> None:
    if not hasattr(os, "posix_fallocate"):  # not on macOS: the file stays sparse, as before
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a file system without it
            raise
    finally:
        os.close(fd)


def _results(job: Job, items: list[tuple[int, dict[str, Any]]], workers: int) -> Iterator[Result]:
    return results(items, job.data_cfg, job.sequence, workers, job.options, job.decoder["thread_type"])


def _pending(job: Job) -> list[int]:
    import numpy as np

    return [int(i) for i in np.flatnonzero(job.status == PENDING)]


def _flush(job: Job) -> None:
    for a in job.arrays.values():
        a.flush()  # arrays before the bitmap: a sample marked done is really on disk
    if job.status is not None:
        job.status.flush()


def _run(
    job: Job, items: list[tuple[int, dict[str, Any]]], desc: str, final: bool = False, done_before: int = 0
) -> None:
    """Process ``items`` and write each result into the work arrays as it arrives; the bar starts at
    ``done_before`` of ``done_before + len(items)``."""
    from tqdm import tqdm

    if not items:
        return
    done = _results(job, items, job.workers)
    total = done_before + len(items)
    # disable=None: a bar only when stderr is a terminal (in a log file it is a heap of redraws)
    disable = None if job.progress else True
    bar = tqdm(done, total=total, initial=done_before, desc=desc, unit="sample", disable=disable)
    last_flush = time.monotonic()
    try:
        for i, res, err, code in bar:
            with job.options.stats.timed("write"):
                res, err = _check_shapes(job, i, res, err)
                if res is not None:
                    _keep(job, i, res)
                else:
                    job.status[i] = _failure_code(job, i, str(err), code, final)
            if time.monotonic() - last_flush > job.options.flush_seconds:
                with job.options.stats.timed("write"):
                    _flush(job)
                last_flush = time.monotonic()
    finally:
        with job.options.stats.timed("write"):
            _flush(job)
        bar.close()
        done.close()


def _check_shapes(
    job: Job, i: int, res: dict[str, np.ndarray] | None, err: str | None
) -> tuple[dict[str, np.ndarray] | None, str | None]:
    if res is None:
        return res, err
    for k, s in job.specs.items():
        if k not in res or list(res[k].shape) != s["shape"]:
            src = job.rows[i].get(path_column(k), job.rows[i]["sample_id"])
            got = tuple(res[k].shape) if k in res else None
            return None, f"wrong length: {k} of {src} has shape {got}, expected {tuple(s['shape'])}"
    return res, err


def _keep(job: Job, i: int, res: dict[str, np.ndarray]) -> None:
    for k, arr in res.items():
        job.arrays[k][i] = arr
    used = any(k.startswith(BOX) and v[-1] == 1 for k, v in res.items())
    job.status[i] = OK_FALLBACK if used else OK


def _failure_code(job: Job, i: int, reason: str, code: int, final: bool) -> int:
    """Record a failure; NO_FACE waits for the subject fallback on fixed-camera datasets."""
    if code == NO_FACE and job.fixed_camera and not final:
        job.failures[i] = reason
        _append_failure(job.work, i, reason)
        return NO_FACE
    if code == NO_FACE and job.fixed_camera:
        reason += f"; no sample of subject {job.rows[i]['subject_id']} has a detected face"
    job.failures[i] = reason
    _append_failure(job.work, i, reason)
    if job.strict:
        raise SampleError(reason)
    return FAILED


def _face_fallback(job: Job) -> None:
    """Samples without a detected face, rerun with the median face box of their subject's samples."""
    import numpy as np

    waiting = np.flatnonzero(job.status == NO_FACE)
    if not len(waiting):
        return
    boxes = _subject_boxes(job)
    items = [
        (int(i), {**job.rows[i], FALLBACK: boxes.get(str(job.rows[i]["subject_id"]), {})}) for i in waiting
    ]
    _run(job, items, "face: subject fallback", final=True)


def _subject_boxes(job: Job) -> dict[str, dict[str, tuple[float, ...]]]:
    """Per subject and face-cropped modality: the median (x, y, w, h) of its detected face boxes."""
    import numpy as np

    subjects = np.asarray([str(r["subject_id"]) for r in job.rows])
    detected = job.status == OK
    out: dict[str, dict[str, tuple[float, ...]]] = defaultdict(dict)
    for k, arr in job.arrays.items():
        if not k.startswith(BOX):
            continue
        for s in np.unique(subjects[detected]):
            rows = np.flatnonzero(detected & (subjects == s))
            out[str(s)][k[len(BOX) :]] = tuple(float(v) for v in np.median(arr[rows, :4], axis=0))
    return out


def _append_failure(work: Path, i: int, reason: str) -> None:
    with open(work / "failures.jsonl", "a") as fh:
        fh.write(json.dumps({"index": int(i), "reason": reason}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_failures(work: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    path = work / "failures.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash: that sample is simply redone
            out[int(rec["index"])] = rec["reason"]
    return out


def _report(job: Job) -> pd.DataFrame:
    """prepare_report.csv: every manifest row, ok or failed, the reason, and the face crop if any."""
    import numpy as np
    import pandas as pd

    status, n = job.status, len(job.manifest)
    kept = np.isin(status, (OK, OK_FALLBACK))
    reasons = [
        FALLBACK_REASON if status[i] == OK_FALLBACK else ("" if kept[i] else job.failures.get(i, ""))
        for i in range(n)
    ]
    report = pd.DataFrame(
        {
            "sample_id": job.manifest["sample_id"],
            "subject_id": job.manifest["subject_id"],
            "status": np.where(kept, "ok", "failed"),
            "reason": reasons,
        }
    )
    for k, arr in job.arrays.items():
        if k.startswith(BOX):  # the crop square, so that a crop can be checked against the video
            crops = [" ".join(str(int(v)) for v in arr[i, 4:7]) if kept[i] else "" for i in range(n)]
            report[f"face_crop_{k[len(BOX) :]}"] = crops
    return report


def _finish(job: Job) -> Store:
    import numpy as np

    store_dir, work, manifest, n = job.store_dir, job.work, job.manifest, len(job.manifest)
    atomic_write_csv(_report(job), store_dir / "prepare_report.csv")
    ok = np.flatnonzero(np.isin(job.status, (OK, OK_FALLBACK)))
    if len(ok) == 0:
        raise NothingPreparedError(f"every sample failed; see {store_dir / 'prepare_report.csv'}")
    stored = [k for k in job.specs if not k.startswith(BOX)]
    for k in stored:
        dst = store_dir / f"{k}.npy"
        if len(ok) == n:
            del job.arrays[k]
            os.replace(work / f"{k}.npy", dst)
        else:
            src = job.arrays[k]
            out = _new_array(dst, src.dtype, (len(ok), *src.shape[1:]))
            for s in range(0, len(ok), 64):  # chunked copy: never the whole array in RAM
                out[s : s + 64] = src[ok[s : s + 64]]
            out.flush()
            del out
    kept = manifest.iloc[ok].reset_index(drop=True)
    atomic_write_csv(kept, store_dir / "manifest.csv")
    fallback = int((job.status == OK_FALLBACK).sum())
    meta = _meta(job, kept, stored, n - len(ok), fallback)
    # size and checksum of each array, so that a damaged store is never taken for a finished one
    meta["arrays"] = {k: array_record(store_dir / f"{k}.npy") for k in stored}
    atomic_write_text(store_dir / "meta.json", json.dumps(meta, indent=1))
    atomic_write_text(store_dir / "done", job.key)
    job.arrays.clear()
    shutil.rmtree(work, ignore_errors=True)
    if job.progress:
        msg = f"prepared {len(ok)}/{n} samples into {store_dir}"
        if fallback:
            msg += f"; {fallback} cropped with their subject's face box ({FALLBACK_REASON})"
        if len(ok) < n:
            msg += f"; {n - len(ok)} failed (reasons in {store_dir / 'prepare_report.csv'})"
        log.info(msg)
    return Store(store_dir)


def _meta(job: Job, kept: pd.DataFrame, stored: list[str], failed: int, fallback: int) -> dict[str, Any]:
    data_cfg, specs = job.data_cfg, job.specs
    kinds = {name: m.kind for name, m in data_cfg.modalities.items()}
    meta = {
        "key": job.key,
        "n": int(len(kept)),
        "dataset": data_cfg.dataset,
        "task": task_spec(kept, data_cfg),
        "sequence": job.sequence,
        "sequence_length": data_cfg.sequence_length if job.sequence else None,
        "modalities": {k: {**specs[k], "kind": kinds[k]} for k in stored if k != "labels"},
        "labels": specs["labels"],
        "prevalent": list(data_cfg.prevalent),
        "privileged": list(data_cfg.privileged),
        "failed": int(failed),
    }
    if len(stored) < len(specs):  # face crops: how many used the subject fallback
        meta["face_fallback"] = fallback
    return meta
