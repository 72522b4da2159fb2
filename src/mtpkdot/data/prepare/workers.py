"""Workers: the process pool, the decode-ahead thread and the decoder thread-type probe.

Each worker gets the run's :class:`PrepareOptions` with its items (no module state): results come back
in the order of the items whatever the number of workers and the overlap.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.prepare.kinds import AHEAD, sampled_frames
from mtpkdot.data.prepare.options import PrepareOptions, PrepareStats
from mtpkdot.data.prepare.sample import process_sample
from mtpkdot.signals.errors import NoFaceError, SampleError

if TYPE_CHECKING:
    import numpy as np

# per-sample status: a worker's result code, and the work bitmap's (PENDING: not done yet, OK_FALLBACK:
# cropped with the subject's face box)
PENDING, OK, FAILED, NO_FACE, OK_FALLBACK = 0, 1, 2, 3, 4
# (manifest index, arrays or None, failure reason or None, status code OK / FAILED / NO_FACE)
Result = tuple[int, "dict[str, np.ndarray] | None", "str | None", int]


@dataclass
class Worker:
    """What a worker needs to turn items into results: the data config, whether samples are sequences,
    the run's options (its stats are this process's) and whether it decodes ahead in a thread."""

    data_cfg: Any
    sequence: bool
    options: PrepareOptions
    overlap: bool


def _init_worker(
    decoder_threads: int = 0, thread_type: str = "AUTO", overlap: bool = False, parent: int | None = None
) -> None:
    import cv2

    from mtpkdot.signals import video

    # OpenCV (face detection, resize) gets this worker's share of the cores, as the decoder does; with
    # the overlap it runs beside the decoder and gets half of it (the decoder's threads often wait)
    share = decoder_threads or _cpu_count()
    cv2.setNumThreads(max(1, share // 2) if overlap else share)
    video.DECODER_THREADS = decoder_threads
    video.DECODER_THREAD_TYPE = thread_type
    if parent is not None:
        _end_with_parent(parent)


# prctl option: the signal the kernel sends this process when the thread that created it ends
_PR_SET_PDEATHSIG = 1


def _end_with_parent(parent: int) -> None:
    """End this worker process when ``parent`` dies, even by SIGKILL: a worker waits on its task pipe,
    whose write end every worker also holds, so the pipe alone never tells it the parent is gone.

    Linux: the kernel's parent-death signal (immediate, even while the worker is stuck in C code).
    Everywhere (and on Linux in case ``prctl`` is refused): a thread waiting on multiprocessing's
    parent sentinel, which becomes ready when the parent ends (the EOF of a pipe whose write end only
    the parent holds; on Windows the parent's process handle). The parent-death signal is tied to the
    thread that started the worker, which is the one that runs the pool until it is shut down. The
    workers only compute (the parent writes every file), so ending them at once loses nothing.
    """
    import multiprocessing
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)
    sentinel = getattr(multiprocessing.parent_process(), "sentinel", None)
    if sentinel is not None:
        threading.Thread(target=_exit_on_ready, args=(sentinel,), daemon=True).start()


def _exit_on_ready(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(1)


def _run_one(worker: Worker, item: tuple[int, dict[str, Any]]) -> Result:
    i, row = item
    try:
        return i, process_sample(row, worker.data_cfg, worker.sequence, worker.options.stats), None, OK
    except NoFaceError as exc:
        return i, None, str(exc), NO_FACE
    except SampleError as exc:
        return i, None, str(exc), FAILED
    except Exception as exc:  # noqa: BLE001 - an unexpected error is still one bad sample
        return i, None, f"{type(exc).__name__}: {exc} (sample {row.get('sample_id')})", FAILED


def _decode_ahead(path: Path, m: Any, row: dict[str, Any], stats: PrepareStats) -> Any:
    """:func:`sampled_frames` in the decode thread (its time is the decode stage; the main thread's wait
    is ``decode_wait``)."""
    with stats.timed("decode"):
        return sampled_frames(path, m, row)


def _with_ahead(
    worker: Worker, pool: ThreadPoolExecutor, item: tuple[int, dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    """The item with its video files' decoding started in ``pool`` (row key ``AHEAD``)."""
    i, row = item
    if worker.sequence:
        return item
    ahead = {}
    for name, m in worker.data_cfg.modalities.items():
        path = row.get(path_column(name))
        if m.kind == "video" and isinstance(path, str | Path):
            ahead[name] = pool.submit(_decode_ahead, Path(path), m, row, worker.options.stats)
    return i, {**row, AHEAD: ahead}


def _run_items(worker: Worker, items: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Result]:
    """Results of ``items`` in their order; with this worker's overlap, the next item's videos are decoded
    in a background thread while the current one is finished."""
    if not worker.overlap:
        yield from (_run_one(worker, item) for item in items)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="mtpkdot-decode")
    queue: deque[tuple[int, dict[str, Any]]] = deque()
    try:
        for item in items:
            queue.append(_with_ahead(worker, pool, item))
            if len(queue) > worker.options.lookahead:
                yield _run_one(worker, queue.popleft())
        while queue:
            yield _run_one(worker, queue.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_chunk(worker: Worker, chunk: list[tuple[int, dict[str, Any]]]) -> list[Result]:
    return list(_run_items(worker, chunk))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_threads(workers: int) -> int:
    """Decoder and OpenCV threads of each worker: 0 (FFmpeg's choice, OpenCV every core) for one
    worker, else its share of the cores, so that N workers do not oversubscribe the CPU."""
    return 0 if workers <= 1 else max(1, _cpu_count() // workers)


def _overlaps(workers: int, options: PrepareOptions) -> bool:
    """Overlap decoding with the rest only where a worker has two cores or more to share between them."""
    return options.overlap and (_worker_threads(workers) or _cpu_count()) >= 2


def results(
    items: list[tuple[int, dict[str, Any]]],
    data_cfg: Any,
    sequence: bool,
    workers: int,
    options: PrepareOptions,
    thread_type: str = "AUTO",
) -> Iterator[Result]:
    """Results in the order of ``items``; ``workers`` > 1 runs them in spawned processes."""
    if workers <= 1 or len(items) <= 1:
        overlap = _overlaps(1, options)
        _init_worker(0, thread_type, overlap)
        yield from _run_items(Worker(data_cfg, sequence, options, overlap), items)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    overlap = _overlaps(workers, options)
    args = (_worker_threads(workers), thread_type, overlap, os.getpid())
    pool = ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=_init_worker, initargs=args)
    run_chunk = functools.partial(_run_chunk, Worker(data_cfg, sequence, options, overlap))
    # chunks keep consecutive samples of one video on one worker (its decoded audio stays cached) and
    # give the worker's decode thread the next samples to decode ahead
    chunks = [items[k : k + options.chunk] for k in range(0, len(items), options.chunk)]
    try:
        for done in pool.map(run_chunk, chunks):
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interruption does not wait for the rest


def decoder_setting(
    data_cfg: Any, rows: list[dict[str, Any]], workers: int, sequence: bool, options: PrepareOptions
) -> dict[str, Any]:
    """Thread type, threads per worker and overlap for this run: the thread type is
    ``options.thread_type`` or, if None, the faster one on the first video file that decodes (a probe
    of ``options.probe_frames`` frames; only speed depends on it, the pixels are the same)."""
    from mtpkdot.signals.video import fastest_thread_type

    threads = _worker_threads(workers)
    setting: dict[str, Any] = {"thread_type": options.thread_type or "AUTO", "threads": threads}
    setting["overlap"] = _overlaps(workers, options)
    videos = [n for n, m in data_cfg.modalities.items() if m.kind == "video"]
    if options.thread_type is None and threads != 1 and videos and not sequence:
        for row in rows[:3]:
            path = Path(str(row.get(path_column(videos[0]))))
            if not path.is_file() or path.suffix.lower() == ".npy":
                continue
            with contextlib.suppress(SampleError):
                best, secs = fastest_thread_type(path, threads, options.probe_frames)
                setting.update(thread_type=best, probe_ms={k: round(1000 * v, 1) for k, v in secs.items()})
                break
    return setting


def describe(setting: dict[str, Any]) -> str:
    n = setting["threads"]
    threads = "FFmpeg's choice of threads" if n == 0 else f"{n} thread" + ("s" if n > 1 else "")
    text = f"thread type {setting['thread_type']}, {threads} per worker"
    if "probe_ms" in setting:
        text += " (probe, " + ", ".join(f"{k} {v:.0f} ms" for k, v in setting["probe_ms"].items()) + ")"
    return text + (", next video decoded ahead in a thread" if setting["overlap"] else "")
