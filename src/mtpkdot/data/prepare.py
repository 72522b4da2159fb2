"""``prepare``: decode every sample once into a store of fixed-shape arrays (resumable, parallel).

Per modality kind (settings from ``data.modalities.<name>``; one handler per kind in ``_KINDS``):

- ``video``: PyAV decode (or a frame folder, or a ``.npy`` T x H x W x C), optional ``window`` in seconds,
  TSN sampling of ``segments x frames_per_segment`` frames, optional face crop (``face: haar``), resize
  to ``size``. Affwild2-like sequences take ``sequence_length`` clips of consecutive frames instead.
- ``eda`` / ``signal``: CSV column(s) (``column``, comma separated; time unit inferred) or ``.npy``
  ``C x T``; Butterworth filter on the whole recording, ``window``, ``normalize`` -> ``C x T``.
- ``emg``: as a signal, then the released code's spectrogram (65 x 127 for a 3 s window) -> ``C x F x N``.
- ``audio``: PyAV decode at ``audio_rate``; DFT spectrogram ``1 x freq_bins x time_bins`` per clip.
- ``features``: ``.npy`` vector ``D``.

Faces: on datasets filmed with a fixed camera (``FIXED_CAMERA_DATASETS``), a sample whose video shows no
face on any sampled frame is cropped with its subject's usual face box (the median of the boxes detected
in that subject's other samples) once every sample has been seen; ``prepare_report.csv`` says so.

Bookkeeping: work arrays live in ``<store>/.work`` with a per-sample status bitmap flushed every few
seconds (after the arrays), keyed by a hash of the preparation settings and the manifest. Re-running
continues where it stopped; a finished store with the same key is returned without work.

Speed: the video decoder's thread type is the faster of SLICE and AUTO on the run's first video (a short
probe; the pixels are the same either way), frames that no sampled frame needs are not decoded
(``signals.video.SKIP_UNUSED``), and a worker with two cores or more decodes the next sample's videos
in a background thread while the current one is finished (same results, same order).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.atomic import atomic_write_csv, atomic_write_text
from mtpkdot.data.manifest import path_column, read_manifest, task_spec
from mtpkdot.data.store import Store
from mtpkdot.layout import default_run_dir
from mtpkdot.layout import store_dir as store_dir_of
from mtpkdot.signals.errors import NoFaceError, SampleError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

# fields of ModalityConfig that only concern the encoder, not the prepared arrays
_ENCODER_FIELDS = {"backbone", "backbone_kwargs", "feature_dim", "weights", "train"}
_DEFAULT_COLUMNS = {"eda": "gsr", "emg": "emg_corrugator"}
_STORE_FILES = ("done", "meta.json", "manifest.csv", "prepare_report.csv")
FLUSH_SECONDS = 2.0

# datasets filmed by a fixed camera: a sample without a detected face borrows its subject's face box
FIXED_CAMERA_DATASETS = frozenset({"biovid", "biovid_authors", "synthetic_biovid"})
FALLBACK_REASON = "face: subject fallback"
# per-sample status in the work bitmap
PENDING, OK, FAILED, NO_FACE, OK_FALLBACK = 0, 1, 2, 3, 4
# work arrays whose name starts with this are bookkeeping (face boxes), not part of the store
_BOX = "_box_"
# row key of a sample re-run with the subject fallback: {modality: (x, y, w, h)}
_FALLBACK = "_fallback_boxes"

# seconds spent per stage in this process (decode, face, crop_resize, physio, write; with the overlap,
# decode is timed in the decode thread and decode_wait is the main thread waiting for it): read by the
# benchmark
STAGE_SECONDS: dict[str, float] = defaultdict(float)

# Overlap: a worker with at least two cores decodes the next sample's videos in a background thread (PyAV
# releases the GIL while decoding) while the current sample gets its face crop, resize and physio; at
# most LOOKAHEAD samples ahead. Results and their order are those of the sequential loop.
OVERLAP = True
LOOKAHEAD = 1
# samples per task of a worker process
CHUNK = 4
# row key of a sample's videos decoded ahead: {modality: Future of its sampled frames}
_AHEAD = "_decoded_ahead"
# decoder thread type: None probes the first video of each run (signals.video.fastest_thread_type)
DECODER_THREAD_TYPE: str | None = None
PROBE_FRAMES = 25
# the last run's decoder setting (thread type, threads per worker, probe times, overlap): logged, and
# read by the benchmark
DECODER_SETTING: dict[str, Any] = {}


@contextlib.contextmanager
def _timed(stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS[stage] += time.perf_counter() - t0


def prepare_key(data_cfg: Any, manifest: pd.DataFrame) -> str:
    """Hash of what determines the arrays: preparation settings of the data config and the manifest."""
    d = data_cfg.model_dump(mode="json", exclude={"workers", "store", "prevalent", "privileged"})
    d["modalities"] = {
        k: {f: v for f, v in m.items() if f not in _ENCODER_FIELDS} for k, m in d["modalities"].items()
    }
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    h.update(manifest.to_csv(index=False).encode())
    return h.hexdigest()[:20]


# ------------------------------------------------------------------------------------ per-sample work
def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` of one sample file; a missing or corrupt file is a :class:`SampleError` naming it."""
    import numpy as np

    if not path.is_file():
        raise SampleError(f"file {path} does not exist")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SampleError(f"cannot read {path} (not a valid .npy file: {exc})") from None


def _columns(m: Any) -> list[str]:
    col = m.column or _DEFAULT_COLUMNS.get(m.kind)
    if not col:
        raise SampleError(f"modality of kind {m.kind!r} needs 'column' (the CSV column name)")
    return [c.strip() for c in col.split(",") if c.strip()]


def _load_signal(path: Path, m: Any) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals import physio

    if path.suffix.lower() == ".npy":
        x = _load_npy(path).astype(np.float64)
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2:
            raise SampleError(f"{path}: a signal must be C x T or T, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise SampleError(f"NaN values in {path}")
    else:
        x = physio.read_biosignals(path, _columns(m), m.sample_rate)
    try:
        x = physio.butter_filter(x, m.sample_rate, m.lowpass_hz, m.highpass_hz)
    except ValueError as exc:
        raise SampleError(f"{exc} (for {path})") from None
    x = physio.take_window(x, m.sample_rate, m.window, source=str(path))
    return physio.normalize(x, m.normalize)


def _frame_window(n: int, fps: float, window: tuple[float, float] | None, source: Path) -> tuple[int, int]:
    if window is None:
        return 0, n
    a, b = int(round(window[0] * fps)), min(n, int(round(window[1] * fps)))
    if b <= a:
        raise SampleError(
            f"wrong length: {source} has {n} frames ({n / fps:.2f} s), the window is {window} s"
        )
    return a, b


def _sampled(n: int, fps: float, m: Any, source: Path) -> np.ndarray:
    """TSN indices of the clip's frames inside the modality's window."""
    from mtpkdot.signals.video import tsn_indices

    a, b = _frame_window(n, fps, m.window, source)
    return a + tsn_indices(b - a, m.segments, m.frames_per_segment)


def _folder_frames(path: Path, m: Any, row: dict[str, Any]) -> np.ndarray:
    import pandas as pd

    from mtpkdot.signals import video as V

    files = V.list_frame_files(path)
    start, end = row.get("start_frame"), row.get("end_frame")
    if start is not None and not pd.isna(start):
        if int(end) > len(files):
            raise SampleError(
                f"wrong length: {path} has {len(files)} frames, the annotation asks for {start}..{end}"
            )
        files = files[int(start) - 1 : int(end)]
    return V.read_frames([files[i] for i in _sampled(len(files), 25.0, m, path)])


def _npy_frames(path: Path, m: Any) -> np.ndarray:
    import numpy as np

    arr = _load_npy(path, mmap=True)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise SampleError(f"{path}: video must be T x H x W x C (C = 1 or 3), got shape {arr.shape}")
    frames = np.asarray(arr[_sampled(arr.shape[0], 25.0, m, path)])
    if frames.dtype != np.uint8:
        scale = 255.0 if frames.max() <= 1.0 else 1.0
        frames = np.clip(frames * scale, 0, 255).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def _frames(path: Path, m: Any, row: dict[str, Any]) -> Any:
    """Sampled frames of one video modality: a frame folder, a ``.npy`` or a video file (with a face
    crop: PyAV frames not yet converted to RGB)."""
    if path.is_dir():
        return _folder_frames(path, m, row)
    if path.suffix.lower() == ".npy":
        return _npy_frames(path, m)
    return _file_frames(path, m, lazy=m.face != "none")


def _decode_ahead(path: Path, m: Any, row: dict[str, Any]) -> Any:
    """:func:`_frames` in the decode thread (its time is the decode stage; the main thread's wait is
    ``decode_wait``)."""
    with _timed("decode"):
        return _frames(path, m, row)


def _file_frames(path: Path, m: Any, lazy: bool) -> Any:
    """Sampled frames of a video file; ``lazy``: PyAV frames not yet converted to RGB (for a face crop)."""
    from mtpkdot.signals import video as V

    if not path.is_file():
        raise SampleError(f"video file {path} does not exist")
    frames, _ = V.decode_frames(path, pick=lambda n, fps: _sampled(n, fps, m, path), as_frames=lazy)
    return frames


def _video_sample(
    path: Path,
    m: Any,
    row: dict[str, Any],
    fallback: tuple[float, ...] | None = None,
    ahead: Future[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored clip ``T x size x size x 3`` and, with a face crop, its box record
    ``[x, y, w, h, x0, y0, side, used_fallback]`` (detected box, crop square, 1 if ``fallback`` was used).
    ``ahead``: the frames being decoded in the decode thread (its error, if any, is raised here)."""
    import numpy as np

    from mtpkdot.signals import video as V

    if ahead is None:
        with _timed("decode"):
            frames = _frames(path, m, row)
    else:
        with _timed("decode_wait"):
            frames = ahead.result()
    assert len(frames) == m.segments * m.frames_per_segment
    if m.face == "none":
        with _timed("crop_resize"):
            return V.resize_frames(frames, m.size), None
    used = 0.0
    with _timed("face"):
        try:
            box = V.face_box(frames, V.get_face_detector(m.face), source=str(path))
        except NoFaceError:
            if fallback is None:
                raise
            box, used = tuple(fallback), 1.0
    with _timed("crop_resize"):
        square = V.crop_square(box, *V.frame_size(frames))
        clip = V.resize_frames(V.crop_frames(frames, square), m.size)
    return clip, np.asarray([*box, *square, used], dtype=np.float64)


def decode_video_for(path: Path, mc: Any) -> np.ndarray:
    """One video prepared as ``prepare`` stores it for modality config ``mc`` (``T x size x size x 3``)."""
    return _video_sample(Path(path), mc, {})[0]


def _video_kind(path: Path, m: Any, row: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    clip, box = _video_sample(path, m, row, row.get(_FALLBACK, {}).get(name), row.get(_AHEAD, {}).get(name))
    return {name: clip} if box is None else {name: clip, _BOX + name: box}


def _signal_kind(path: Path, m: Any, row: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    import numpy as np

    with _timed("physio"):
        return {name: _load_signal(path, m).astype(np.float32)}


def _emg_kind(path: Path, m: Any, row: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    import numpy as np

    from mtpkdot.signals.physio import emg_spectrogram

    with _timed("physio"):
        return {name: emg_spectrogram(_load_signal(path, m), m.sample_rate, m.log).astype(np.float32)}


def _audio_kind(path: Path, m: Any, row: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    import numpy as np

    from mtpkdot.signals.audio import decode_audio, dft_spectrogram
    from mtpkdot.signals.physio import take_window

    if path.suffix.lower() == ".npy":
        wav = _load_npy(path).astype(np.float32).reshape(-1)
    else:
        if not path.is_file():
            raise SampleError(f"audio file {path} does not exist")
        wav = decode_audio(path, m.audio_rate)
    wav = take_window(wav[None], m.audio_rate, m.window, source=str(path))[0]
    return {name: dft_spectrogram(wav, m.freq_bins, m.time_bins)[None]}


def _features_kind(path: Path, m: Any, row: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    import numpy as np

    v = _load_npy(path).astype(np.float32)
    if v.ndim != 1:
        raise SampleError(f"{path}: a feature vector must be 1-D, got shape {v.shape}")
    return {name: v}


KindHandler = Callable[[Path, Any, dict[str, Any], str], "dict[str, np.ndarray]"]
# one handler per modality kind: (file, modality config, manifest row, modality name) -> arrays
_KINDS: dict[str, KindHandler] = {
    "video": _video_kind,
    "eda": _signal_kind,
    "signal": _signal_kind,
    "emg": _emg_kind,
    "audio": _audio_kind,
    "features": _features_kind,
}


@contextlib.contextmanager
def _names_file(path: Any, modality: str) -> Iterator[None]:
    """Any unexpected error while reading one file becomes a SampleError that names the file."""
    try:
        yield
    except SampleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder or parser error is still one bad sample
        raise SampleError(
            f"cannot prepare {path} (modality {modality!r}): {type(exc).__name__}: {exc}"
        ) from None


@functools.lru_cache(maxsize=4)
def _frame_index(folder: str) -> tuple[np.ndarray, list[str]]:
    """Frame numbers present in an Affwild2 cropped-aligned folder (some frames have no face)."""
    import numpy as np

    from mtpkdot.signals.video import list_frame_files

    files = list_frame_files(folder)
    nums, names = [], []
    for f in files:
        if f.stem.isdigit():
            nums.append(int(f.stem))
            names.append(str(f))
    if not nums:
        raise SampleError(f"frame folder {folder} holds no <frame:05d> images")
    return np.asarray(nums), names


@functools.lru_cache(maxsize=4)
def _annotation(path: str) -> np.ndarray:
    """Valence/arousal per frame (n x 2 float32); -5 (or anything outside [-1, 1]) becomes NaN."""
    import numpy as np
    import pandas as pd

    try:
        va = pd.read_csv(path).to_numpy(dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise SampleError(f"cannot parse annotation file {path}: {exc}") from None
    if va.ndim != 2 or va.shape[1] != 2:
        raise SampleError(f"annotation file {path} must have two columns valence,arousal")
    va[(va < -1) | (va > 1)] = np.nan
    return va


@functools.lru_cache(maxsize=2)
def _audio_track(path: str, rate: int) -> tuple[np.ndarray, float]:
    from mtpkdot.signals.audio import decode_audio
    from mtpkdot.signals.video import video_info

    if not Path(path).is_file():
        raise SampleError(f"raw video {path} (audio track) does not exist")
    _, fps = video_info(path)
    return decode_audio(path, rate), fps


@dataclass(frozen=True)
class _Span:
    """The frames of one Affwild2-like sample: ``clips`` clips of ``clip`` frames from ``start``."""

    start: int
    clips: int
    clip: int
    n_labels: int  # frames with an annotation line


def _sequence_video(path: str, m: Any, span: _Span) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals.video import read_frames, resize_frames

    nums, names = _frame_index(path)
    frames_idx = np.arange(span.start, span.start + span.clips * span.clip)
    # frame k (0-based) is file k+1; a missing file borrows the nearest existing frame
    want = np.minimum(frames_idx, max(span.n_labels, 1) - 1) + 1
    pos = np.clip(np.searchsorted(nums, want), 0, len(nums) - 1)
    left = np.clip(pos - 1, 0, len(nums) - 1)
    pick = np.where(np.abs(nums[left] - want) <= np.abs(nums[pos] - want), left, pos)
    frames = resize_frames(read_frames([Path(names[i]) for i in pick]), m.size)
    return frames.reshape(span.clips, span.clip, *frames.shape[1:])


def _sequence_audio(path: str, m: Any, span: _Span) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals.audio import dft_spectrogram

    wav, fps = _audio_track(path, m.audio_rate)
    specs = []
    for j in range(span.clips):
        f0 = span.start + j * span.clip
        a = int(round(f0 / fps * m.audio_rate))
        b = int(round((f0 + span.clip) / fps * m.audio_rate))
        seg = wav[a:b]
        if len(seg) < b - a:  # past the end of the track: silence
            seg = np.pad(seg, (0, b - a - len(seg)))
        specs.append(dft_spectrogram(seg, m.freq_bins, m.time_bins)[None])
    return np.stack(specs)


# sequence (Affwild2-like) handlers per modality kind: (path, modality config, span) -> array
_SEQUENCE_KINDS: dict[str, Callable[[str, Any, _Span], np.ndarray]] = {
    "video": _sequence_video,
    "audio": _sequence_audio,
}


def _sequence_sample(row: dict[str, Any], data_cfg: Any, clip: int) -> dict[str, np.ndarray]:
    """Affwild2-like: ``sequence_length`` clips of ``clip`` consecutive frames from ``frame_start``."""
    import numpy as np

    va = _annotation(row["annotation"])
    span = _Span(int(row["frame_start"]), data_cfg.sequence_length, clip, len(va))
    total = span.clips * clip
    frames_idx = np.arange(span.start, span.start + total)
    labels = np.full((total, 2), np.nan, np.float32)
    valid = frames_idx < len(va)
    labels[valid] = va[frames_idx[valid]]
    out: dict[str, np.ndarray] = {"labels": labels.reshape(span.clips, clip, 2)}
    for name, m in data_cfg.modalities.items():
        if m.kind not in _SEQUENCE_KINDS:
            raise SampleError(f"modality kind {m.kind!r} is not supported for sequences")
        path = row[path_column(name)]
        with _names_file(path, name):
            out[name] = _SEQUENCE_KINDS[m.kind](path, m, span)
    return out


def _single_sample(row: dict[str, Any], data_cfg: Any) -> dict[str, np.ndarray]:
    import numpy as np

    out = {"labels": np.asarray(int(row["label"]), dtype=np.int64)}
    for name, m in data_cfg.modalities.items():
        path = Path(str(row[path_column(name)]))
        with _names_file(path, name):
            out.update(_KINDS[m.kind](path, m, row, name))
    return out


def process_sample(row: dict[str, Any], data_cfg: Any, sequence: bool) -> dict[str, np.ndarray]:
    """Decode one manifest row into its arrays (one per modality, plus ``labels``; with a face crop,
    also the box record ``_box_<modality>``, which the store does not keep).

    Raises :class:`SampleError` (naming the file) for a sample that cannot be used.
    """
    import numpy as np

    out = (
        _sequence_sample(row, data_cfg, _clip_frames(data_cfg)) if sequence else _single_sample(row, data_cfg)
    )
    for name, arr in out.items():
        if name != "labels" and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SampleError(
                f"NaN values in modality {name!r} of {row.get(path_column(name), row['sample_id'])}"
            )
    return out


def _clip_frames(data_cfg: Any) -> int:
    from mtpkdot.data.affwild2 import clip_frames

    return clip_frames(data_cfg)


# --------------------------------------------------------------------------------------- worker pool
_WORKER: dict[str, Any] = {}
# (manifest index, arrays or None, failure reason or None, status code OK / FAILED / NO_FACE)
Result = tuple[int, "dict[str, np.ndarray] | None", "str | None", int]


def _init_worker(
    data_cfg: Any, sequence: bool, decoder_threads: int = 0, thread_type: str = "AUTO", overlap: bool = False
) -> None:
    import cv2

    from mtpkdot.signals import video

    # OpenCV (face detection, resize) gets this worker's share of the cores, as the decoder does; with
    # the overlap it runs beside the decoder and gets half of it (the decoder's threads often wait)
    share = decoder_threads or _cpu_count()
    cv2.setNumThreads(max(1, share // 2) if overlap else share)
    video.DECODER_THREADS = decoder_threads
    video.DECODER_THREAD_TYPE = thread_type
    _WORKER.update(data_cfg=data_cfg, sequence=sequence, overlap=overlap)


def _run_one(item: tuple[int, dict[str, Any]]) -> Result:
    i, row = item
    try:
        return i, process_sample(row, _WORKER["data_cfg"], _WORKER["sequence"]), None, OK
    except NoFaceError as exc:
        return i, None, str(exc), NO_FACE
    except SampleError as exc:
        return i, None, str(exc), FAILED
    except Exception as exc:  # noqa: BLE001 - an unexpected error is still one bad sample
        return i, None, f"{type(exc).__name__}: {exc} (sample {row.get('sample_id')})", FAILED


def _with_ahead(pool: ThreadPoolExecutor, item: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The item with its video files' decoding started in ``pool`` (row key ``_AHEAD``)."""
    i, row = item
    if _WORKER["sequence"]:
        return item
    ahead = {}
    for name, m in _WORKER["data_cfg"].modalities.items():
        path = row.get(path_column(name))
        if m.kind == "video" and isinstance(path, str | Path):
            ahead[name] = pool.submit(_decode_ahead, Path(path), m, row)
    return i, {**row, _AHEAD: ahead}


def _run_items(items: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Result]:
    """Results of ``items`` in their order; with this worker's overlap, the next item's videos are decoded
    in a background thread while the current one is finished."""
    if not _WORKER["overlap"]:
        yield from map(_run_one, items)
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="mtpkdot-decode")
    queue: deque[tuple[int, dict[str, Any]]] = deque()
    try:
        for item in items:
            queue.append(_with_ahead(pool, item))
            if len(queue) > LOOKAHEAD:
                yield _run_one(queue.popleft())
        while queue:
            yield _run_one(queue.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> list[Result]:
    return list(_run_items(chunk))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_threads(workers: int) -> int:
    """Decoder and OpenCV threads of each worker: 0 (FFmpeg's choice, OpenCV every core) for one
    worker, else its share of the cores, so that N workers do not oversubscribe the CPU."""
    return 0 if workers <= 1 else max(1, _cpu_count() // workers)


def _overlaps(workers: int) -> bool:
    """Overlap decoding with the rest only where a worker has two cores or more to share between them."""
    return OVERLAP and (_worker_threads(workers) or _cpu_count()) >= 2


def _results(
    items: list[tuple[int, dict[str, Any]]],
    data_cfg: Any,
    sequence: bool,
    workers: int,
    thread_type: str = "AUTO",
) -> Iterator[Result]:
    """Results in the order of ``items``; ``workers`` > 1 runs them in spawned processes."""
    if workers <= 1 or len(items) <= 1:
        _init_worker(data_cfg, sequence, 0, thread_type, _overlaps(1))
        yield from _run_items(items)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    args = (data_cfg, sequence, _worker_threads(workers), thread_type, _overlaps(workers))
    pool = ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=_init_worker, initargs=args)
    # chunks keep consecutive samples of one video on one worker (its decoded audio stays cached) and
    # give the worker's decode thread the next samples to decode ahead
    chunks = [items[k : k + CHUNK] for k in range(0, len(items), CHUNK)]
    try:
        for results in pool.map(_run_chunk, chunks):
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interruption does not wait for the rest


def _decoder_setting(job: _Job) -> dict[str, Any]:
    """Thread type, threads per worker and overlap for this run: the thread type is
    ``DECODER_THREAD_TYPE`` or, if None, the faster one on the first video file that decodes (a probe
    of ``PROBE_FRAMES`` frames; only speed depends on it, the pixels are the same)."""
    from mtpkdot.signals.video import fastest_thread_type

    threads = _worker_threads(job.workers)
    setting: dict[str, Any] = {"thread_type": DECODER_THREAD_TYPE or "AUTO", "threads": threads}
    setting["overlap"] = _overlaps(job.workers)
    videos = [n for n, m in job.data_cfg.modalities.items() if m.kind == "video"]
    if DECODER_THREAD_TYPE is None and threads != 1 and videos and not job.sequence:
        for row in job.rows[:3]:
            path = Path(str(row.get(path_column(videos[0]))))
            if not path.is_file() or path.suffix.lower() == ".npy":
                continue
            with contextlib.suppress(SampleError):
                best, secs = fastest_thread_type(path, threads, PROBE_FRAMES)
                setting.update(thread_type=best, probe_ms={k: round(1000 * v, 1) for k, v in secs.items()})
                break
    return setting


# ----------------------------------------------------------------------------------------- prepare
def _wipe(store_dir: Path) -> None:
    shutil.rmtree(store_dir / ".work", ignore_errors=True)
    for name in _STORE_FILES:
        (store_dir / name).unlink(missing_ok=True)
    for f in store_dir.glob("*.npy"):
        f.unlink()


def default_store_dir(cfg: Any) -> Path:
    """The store when no folder is given: the run layout's rule for the config's default run dir."""
    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    return store_dir_of(data_cfg.store, default_run_dir(getattr(cfg, "name", "experiment")))


@dataclass
class _Job:
    """One prepare run: what it reads, where it writes, and the per-sample bookkeeping in ``.work``."""

    store_dir: Path
    data_cfg: Any
    manifest: pd.DataFrame
    key: str
    workers: int
    strict: bool
    progress: bool
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
        return self.data_cfg.dataset in FIXED_CAMERA_DATASETS


def prepare(
    cfg: Any,
    store_dir: str | Path | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
) -> Store:
    """Decode every sample of ``cfg.data`` once into ``store_dir`` (default ``data.store`` or
    ``runs/<name>/store``) and return the :class:`Store`.

    Idempotent (a finished store with the same key does no work) and resumable (an interrupted run
    continues with the samples not yet done). A sample that fails is listed with its reason in
    ``prepare_report.csv`` and left out of the store; ``strict=True`` raises :class:`SampleError`
    at the first failure instead.
    """
    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    store_dir = Path(store_dir) if store_dir is not None else default_store_dir(cfg)
    manifest = read_manifest(data_cfg)
    key = prepare_key(data_cfg, manifest)
    done = store_dir / "done"
    if done.is_file() and done.read_text().strip() == key:
        if progress:
            log.info("store %s is up to date (%d samples)", store_dir, len(Store(store_dir)))
        return Store(store_dir)
    job = _Job(store_dir, data_cfg, manifest, key, int(workers or data_cfg.workers), strict, progress)
    job.rows = manifest.to_dict("records")
    job.decoder = _decoder_setting(job)
    DECODER_SETTING.clear()
    DECODER_SETTING.update(job.decoder)
    if progress:
        log.info("decoder: %s", _describe(job.decoder))
    _open_work(job)
    _run(job, [(i, job.rows[i]) for i in _pending(job)], f"prepare {data_cfg.dataset}")
    _face_fallback(job)
    return _finish(job)


def _describe(setting: dict[str, Any]) -> str:
    n = setting["threads"]
    threads = "FFmpeg's choice of threads" if n == 0 else f"{n} thread" + ("s" if n > 1 else "")
    text = f"thread type {setting['thread_type']}, {threads} per worker"
    if "probe_ms" in setting:
        text += " (probe, " + ", ".join(f"{k} {v:.0f} ms" for k, v in setting["probe_ms"].items()) + ")"
    return text + (", next video decoded ahead in a thread" if setting["overlap"] else "")


def _open_work(job: _Job) -> None:
    """Start or resume the work folder: arrays and status bitmap, created by the first good sample."""
    from numpy.lib.format import open_memmap

    work = job.work
    if not ((work / "key").is_file() and (work / "key").read_text().strip() == job.key):
        _wipe(job.store_dir)
        work.mkdir(parents=True)
        atomic_write_text(work / "key", job.key)
    job.failures = _read_failures(work)
    if not (work / "shapes.json").is_file():
        _probe(job)
    job.specs = json.loads((work / "shapes.json").read_text())
    job.arrays = {k: open_memmap(work / f"{k}.npy", mode="r+") for k in job.specs}
    job.status = open_memmap(work / "status.npy", mode="r+")


def _probe(job: _Job) -> None:
    """The first sample that decodes fixes every array's shape and dtype (``shapes.json``)."""
    import numpy as np
    from numpy.lib.format import open_memmap

    n, early = len(job.rows), {}
    for i in range(n):
        item = [(i, job.rows[i])]
        ((_, res, err, code),) = _results(item, job.data_cfg, job.sequence, 1, job.decoder["thread_type"])
        if res is not None:
            break
        early[i] = _failure_code(job, i, str(err), code, final=False)
    else:
        raise RuntimeError(
            f"no sample of {job.data_cfg.dataset} ({job.data_cfg.root}) could be prepared; "
            f"first error: {job.failures.get(0)}"
        )
    specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in res.items()}
    job.arrays = {
        k: open_memmap(job.work / f"{k}.npy", mode="w+", dtype=s["dtype"], shape=(n, *s["shape"]))
        for k, s in specs.items()
    }
    job.status = open_memmap(job.work / "status.npy", mode="w+", dtype=np.int8, shape=(n,))
    for j, code in early.items():
        job.status[j] = code
    job.specs = specs
    _keep(job, i, res)
    _flush(job)
    atomic_write_text(job.work / "shapes.json", json.dumps(specs))


def _pending(job: _Job) -> list[int]:
    import numpy as np

    return [int(i) for i in np.flatnonzero(job.status == PENDING)]


def _flush(job: _Job) -> None:
    for a in job.arrays.values():
        a.flush()  # arrays before the bitmap: a sample marked done is really on disk
    if job.status is not None:
        job.status.flush()


def _run(job: _Job, items: list[tuple[int, dict[str, Any]]], desc: str, final: bool = False) -> None:
    """Process ``items`` and write each result into the work arrays as it arrives."""
    from tqdm import tqdm

    if not items:
        return
    results = _results(items, job.data_cfg, job.sequence, job.workers, job.decoder["thread_type"])
    bar = tqdm(results, total=len(items), desc=desc, unit="sample", disable=not job.progress)
    last_flush = time.monotonic()
    try:
        for i, res, err, code in bar:
            with _timed("write"):
                res, err = _check_shapes(job, i, res, err)
                if res is not None:
                    _keep(job, i, res)
                else:
                    job.status[i] = _failure_code(job, i, str(err), code, final)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                with _timed("write"):
                    _flush(job)
                last_flush = time.monotonic()
    finally:
        with _timed("write"):
            _flush(job)
        bar.close()
        results.close()


def _check_shapes(
    job: _Job, i: int, res: dict[str, np.ndarray] | None, err: str | None
) -> tuple[dict[str, np.ndarray] | None, str | None]:
    if res is None:
        return res, err
    for k, s in job.specs.items():
        if k not in res or list(res[k].shape) != s["shape"]:
            src = job.rows[i].get(path_column(k), job.rows[i]["sample_id"])
            got = tuple(res[k].shape) if k in res else None
            return None, f"wrong length: {k} of {src} has shape {got}, expected {tuple(s['shape'])}"
    return res, err


def _keep(job: _Job, i: int, res: dict[str, np.ndarray]) -> None:
    for k, arr in res.items():
        job.arrays[k][i] = arr
    used = any(k.startswith(_BOX) and v[-1] == 1 for k, v in res.items())
    job.status[i] = OK_FALLBACK if used else OK


def _failure_code(job: _Job, i: int, reason: str, code: int, final: bool) -> int:
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


def _face_fallback(job: _Job) -> None:
    """Samples without a detected face, rerun with the median face box of their subject's samples."""
    import numpy as np

    waiting = np.flatnonzero(job.status == NO_FACE)
    if not len(waiting):
        return
    boxes = _subject_boxes(job)
    items = [
        (int(i), {**job.rows[i], _FALLBACK: boxes.get(str(job.rows[i]["subject_id"]), {})}) for i in waiting
    ]
    _run(job, items, "face: subject fallback", final=True)


def _subject_boxes(job: _Job) -> dict[str, dict[str, tuple[float, ...]]]:
    """Per subject and face-cropped modality: the median (x, y, w, h) of its detected face boxes."""
    import numpy as np

    subjects = np.asarray([str(r["subject_id"]) for r in job.rows])
    detected = job.status == OK
    out: dict[str, dict[str, tuple[float, ...]]] = defaultdict(dict)
    for k, arr in job.arrays.items():
        if not k.startswith(_BOX):
            continue
        for s in np.unique(subjects[detected]):
            rows = np.flatnonzero(detected & (subjects == s))
            out[str(s)][k[len(_BOX) :]] = tuple(float(v) for v in np.median(arr[rows, :4], axis=0))
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


def _report(job: _Job) -> pd.DataFrame:
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
        if k.startswith(_BOX):  # the crop square, so that a crop can be checked against the video
            crops = [" ".join(str(int(v)) for v in arr[i, 4:7]) if kept[i] else "" for i in range(n)]
            report[f"face_crop_{k[len(_BOX) :]}"] = crops
    return report


def _finish(job: _Job) -> Store:
    import numpy as np
    from numpy.lib.format import open_memmap

    store_dir, work, manifest, n = job.store_dir, job.work, job.manifest, len(job.manifest)
    atomic_write_csv(_report(job), store_dir / "prepare_report.csv")
    ok = np.flatnonzero(np.isin(job.status, (OK, OK_FALLBACK)))
    if len(ok) == 0:
        raise RuntimeError(f"every sample failed; see {store_dir / 'prepare_report.csv'}")
    stored = [k for k in job.specs if not k.startswith(_BOX)]
    for k in stored:
        dst = store_dir / f"{k}.npy"
        if len(ok) == n:
            del job.arrays[k]
            os.replace(work / f"{k}.npy", dst)
        else:
            src = job.arrays[k]
            out = open_memmap(dst, mode="w+", dtype=src.dtype, shape=(len(ok), *src.shape[1:]))
            for s in range(0, len(ok), 64):  # chunked copy: never the whole array in RAM
                out[s : s + 64] = src[ok[s : s + 64]]
            out.flush()
            del out
    kept = manifest.iloc[ok].reset_index(drop=True)
    atomic_write_csv(kept, store_dir / "manifest.csv")
    fallback = int((job.status == OK_FALLBACK).sum())
    atomic_write_text(
        store_dir / "meta.json", json.dumps(_meta(job, kept, stored, n - len(ok), fallback), indent=1)
    )
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


def _meta(job: _Job, kept: pd.DataFrame, stored: list[str], failed: int, fallback: int) -> dict[str, Any]:
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
