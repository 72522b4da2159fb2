"""``prepare``: decode every sample once into a store of fixed-shape arrays (resumable, parallel).

Per modality kind (settings from ``data.modalities.<name>``):

- ``video``: PyAV decode (or a frame folder, or a ``.npy`` T x H x W x C), optional ``window`` in seconds,
  TSN sampling of ``segments x frames_per_segment`` frames, optional face crop (``face: haar``), resize
  to ``size``. Affwild2-like sequences take ``sequence_length`` clips of consecutive frames instead.
- ``eda`` / ``signal``: CSV column(s) (``column``, comma separated; time unit inferred) or ``.npy``
  ``C x T``; Butterworth filter on the whole recording, ``window``, ``normalize`` -> ``C x T``.
- ``emg``: as a signal, then the released code's spectrogram (65 x 127 for a 3 s window) -> ``C x F x N``.
- ``audio``: PyAV decode at ``audio_rate``; DFT spectrogram ``1 x freq_bins x time_bins`` per clip.
- ``features``: ``.npy`` vector ``D``.

Bookkeeping: work arrays live in ``<store>/.work`` with a per-sample status bitmap flushed every few
seconds (after the arrays), keyed by a hash of the preparation settings and the manifest. Re-running
continues where it stopped; a finished store with the same key is returned without work.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.atomic import atomic_write_csv, atomic_write_text
from mtpkdot.data.manifest import path_column, read_manifest, task_spec
from mtpkdot.data.store import Store
from mtpkdot.signals.errors import SampleError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# fields of ModalityConfig that only concern the encoder, not the prepared arrays
_ENCODER_FIELDS = {"backbone", "backbone_kwargs", "feature_dim", "weights", "train"}
_DEFAULT_COLUMNS = {"eda": "gsr", "emg": "emg_corrugator"}
_STORE_FILES = ("done", "meta.json", "manifest.csv", "prepare_report.csv")
FLUSH_SECONDS = 2.0


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
def _columns(m: Any) -> list[str]:
    col = m.column or _DEFAULT_COLUMNS.get(m.kind)
    if not col:
        raise SampleError(f"modality of kind {m.kind!r} needs 'column' (the CSV column name)")
    return [c.strip() for c in col.split(",") if c.strip()]


def _load_signal(path: Path, m: Any) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals import physio

    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise SampleError(f"file {path} does not exist")
        x = np.load(path).astype(np.float64)
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


def _video(path: Path, m: Any, row: dict[str, Any]) -> np.ndarray:
    import numpy as np
    import pandas as pd

    from mtpkdot.signals import video as V

    clip = m.segments * m.frames_per_segment
    if path.is_dir():
        files = V.list_frame_files(path)
        start, end = row.get("start_frame"), row.get("end_frame")
        if start is not None and not pd.isna(start):
            if int(end) > len(files):
                raise SampleError(
                    f"wrong length: {path} has {len(files)} frames, the annotation asks for {start}..{end}"
                )
            files = files[int(start) - 1 : int(end)]
        a, b = _frame_window(len(files), 25.0, m.window, path)
        idx = a + V.tsn_indices(b - a, m.segments, m.frames_per_segment)
        frames = V.read_frames([files[i] for i in idx])
    elif path.suffix.lower() == ".npy":
        if not path.is_file():
            raise SampleError(f"file {path} does not exist")
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise SampleError(f"{path}: video must be T x H x W x C (C = 1 or 3), got shape {arr.shape}")
        a, b = _frame_window(arr.shape[0], 25.0, m.window, path)
        frames = np.asarray(arr[a + V.tsn_indices(b - a, m.segments, m.frames_per_segment)])
        if frames.dtype != np.uint8:
            scale = 255.0 if frames.max() <= 1.0 else 1.0
            frames = np.clip(frames * scale, 0, 255).astype(np.uint8)
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
    else:
        if not path.is_file():
            raise SampleError(f"video file {path} does not exist")
        n, fps = V.video_info(path)
        if n <= 0:  # headers without a frame count: decode once to count
            frames, fps = V.decode_frames(path)
            n = len(frames)
            a, b = _frame_window(n, fps, m.window, path)
            frames = frames[a + V.tsn_indices(b - a, m.segments, m.frames_per_segment)]
        else:
            a, b = _frame_window(n, fps, m.window, path)
            frames, _ = V.decode_frames(path, a + V.tsn_indices(b - a, m.segments, m.frames_per_segment))
    assert len(frames) == clip
    if m.face != "none":
        frames = V.crop_face(frames, V.get_face_detector(m.face), source=str(path))
    return V.resize_frames(frames, m.size)


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


def _sequence_sample(row: dict[str, Any], data_cfg: Any, clip: int) -> dict[str, np.ndarray]:
    """Affwild2-like: ``sequence_length`` clips of ``clip`` consecutive frames from ``frame_start``."""
    import numpy as np

    from mtpkdot.signals.audio import dft_spectrogram
    from mtpkdot.signals.video import read_frames, resize_frames

    L = data_cfg.sequence_length
    start, total = int(row["frame_start"]), L * clip
    frames_idx = np.arange(start, start + total)
    va = _annotation(row["annotation"])
    labels = np.full((total, 2), np.nan, np.float32)
    valid = frames_idx < len(va)
    labels[valid] = va[frames_idx[valid]]
    out: dict[str, np.ndarray] = {"labels": labels.reshape(L, clip, 2)}
    for name, m in data_cfg.modalities.items():
        path = row[path_column(name)]
        if m.kind == "video":
            nums, names = _frame_index(path)
            # frame k (0-based) is file k+1; a missing file borrows the nearest existing frame
            want = np.minimum(frames_idx, max(len(va), 1) - 1) + 1
            pos = np.clip(np.searchsorted(nums, want), 0, len(nums) - 1)
            left = np.clip(pos - 1, 0, len(nums) - 1)
            pick = np.where(np.abs(nums[left] - want) <= np.abs(nums[pos] - want), left, pos)
            frames = resize_frames(read_frames([Path(names[i]) for i in pick]), m.size)
            out[name] = frames.reshape(L, clip, *frames.shape[1:])
        elif m.kind == "audio":
            wav, fps = _audio_track(path, m.audio_rate)
            specs = []
            for j in range(L):
                f0 = start + j * clip
                a = int(round(f0 / fps * m.audio_rate))
                b = int(round((f0 + clip) / fps * m.audio_rate))
                seg = wav[a:b]
                if len(seg) < b - a:  # past the end of the track: silence
                    seg = np.pad(seg, (0, b - a - len(seg)))
                specs.append(dft_spectrogram(seg, m.freq_bins, m.time_bins)[None])
            out[name] = np.stack(specs)
        else:
            raise SampleError(f"modality kind {m.kind!r} is not supported for sequences")
    return out


def process_sample(row: dict[str, Any], data_cfg: Any, sequence: bool) -> dict[str, np.ndarray]:
    """Decode one manifest row into its arrays (one per modality, plus ``labels``).

    Raises :class:`SampleError` (naming the file) for a sample that cannot be used.
    """
    import numpy as np

    if sequence:
        out = _sequence_sample(row, data_cfg, _clip_frames(data_cfg))
    else:
        out = {"labels": np.asarray(int(row["label"]), dtype=np.int64)}
        for name, m in data_cfg.modalities.items():
            path = Path(str(row[path_column(name)]))
            if m.kind == "video":
                out[name] = _video(path, m, row)
            elif m.kind in ("eda", "signal"):
                out[name] = _load_signal(path, m).astype(np.float32)
            elif m.kind == "emg":
                from mtpkdot.signals.physio import emg_spectrogram

                out[name] = emg_spectrogram(_load_signal(path, m), m.sample_rate, m.log).astype(np.float32)
            elif m.kind == "audio":
                out[name] = _audio_clip(path, m)
            elif m.kind == "features":
                if not path.is_file():
                    raise SampleError(f"feature file {path} does not exist")
                v = np.load(path).astype(np.float32)
                if v.ndim != 1:
                    raise SampleError(f"{path}: a feature vector must be 1-D, got shape {v.shape}")
                out[name] = v
    for name, arr in out.items():
        if name != "labels" and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SampleError(
                f"NaN values in modality {name!r} of {row.get(path_column(name), row['sample_id'])}"
            )
    return out


def _audio_clip(path: Path, m: Any) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals.audio import decode_audio, dft_spectrogram
    from mtpkdot.signals.physio import take_window

    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise SampleError(f"file {path} does not exist")
        wav = np.load(path).astype(np.float32).reshape(-1)
    else:
        if not path.is_file():
            raise SampleError(f"audio file {path} does not exist")
        wav = decode_audio(path, m.audio_rate)
    wav = take_window(wav[None], m.audio_rate, m.window, source=str(path))[0]
    return dft_spectrogram(wav, m.freq_bins, m.time_bins)[None]


def _clip_frames(data_cfg: Any) -> int:
    from mtpkdot.data.affwild2 import clip_frames

    return clip_frames(data_cfg)


# --------------------------------------------------------------------------------------- worker pool
_WORKER: dict[str, Any] = {}


def _init_worker(data_cfg: Any, sequence: bool) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(data_cfg=data_cfg, sequence=sequence)


def _run_one(item: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, np.ndarray] | None, str | None]:
    i, row = item
    try:
        return i, process_sample(row, _WORKER["data_cfg"], _WORKER["sequence"]), None
    except SampleError as exc:
        return i, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an unexpected decoder error is still one bad sample
        return i, None, f"{type(exc).__name__}: {exc} (sample {row.get('sample_id')})"


def _results(
    items: list[tuple[int, dict[str, Any]]], data_cfg: Any, sequence: bool, workers: int
) -> Iterator[tuple[int, dict[str, np.ndarray] | None, str | None]]:
    if workers <= 1 or len(items) <= 1:
        _init_worker(data_cfg, sequence)
        for item in items:
            yield _run_one(item)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(
        workers, initializer=_init_worker, initargs=(data_cfg, sequence)
    ) as pool:
        # chunks keep consecutive samples of one video on one worker (its decoded audio stays cached)
        yield from pool.imap_unordered(_run_one, items, chunksize=4)


# ----------------------------------------------------------------------------------------- prepare
def _wipe(store_dir: Path) -> None:
    shutil.rmtree(store_dir / ".work", ignore_errors=True)
    for name in _STORE_FILES:
        (store_dir / name).unlink(missing_ok=True)
    for f in store_dir.glob("*.npy"):
        f.unlink()


def default_store_dir(cfg: Any) -> Path:
    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    if data_cfg.store is not None:
        return Path(data_cfg.store)
    return Path("runs") / getattr(cfg, "name", "experiment") / "store"


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
    import numpy as np
    from tqdm import tqdm

    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    store_dir = Path(store_dir) if store_dir is not None else default_store_dir(cfg)
    workers = int(workers or data_cfg.workers)
    manifest = read_manifest(data_cfg)
    key = prepare_key(data_cfg, manifest)
    done = store_dir / "done"
    if done.is_file() and done.read_text().strip() == key:
        if progress:
            print(f"store {store_dir} is up to date ({len(Store(store_dir))} samples)", file=sys.stderr)
        return Store(store_dir)
    work = store_dir / ".work"
    if not ((work / "key").is_file() and (work / "key").read_text().strip() == key):
        _wipe(store_dir)
        work.mkdir(parents=True)
        atomic_write_text(work / "key", key)
    sequence = "annotation" in manifest.columns
    n = len(manifest)
    rows = manifest.to_dict("records")
    from numpy.lib.format import open_memmap

    shapes_file = work / "shapes.json"
    first: tuple[int, dict[str, np.ndarray]] | None = None
    failures: dict[int, str] = _read_failures(work)
    if not shapes_file.is_file():
        # probe: the first sample that decodes fixes every array's shape and dtype
        for i in range(n):
            _, res, err = _results([(i, rows[i])], data_cfg, sequence, 1).__next__()
            if res is not None:
                first = (i, res)
                break
            failures[i] = str(err)
            _append_failure(work, i, str(err))
            if strict:
                raise SampleError(str(err))
        if first is None:
            raise RuntimeError(
                f"no sample of {data_cfg.dataset} ({data_cfg.root}) could be prepared; first error: {failures.get(0)}"
            )
        specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in first[1].items()}
        arrays = {
            k: open_memmap(work / f"{k}.npy", mode="w+", dtype=s["dtype"], shape=(n, *s["shape"]))
            for k, s in specs.items()
        }
        status = open_memmap(work / "status.npy", mode="w+", dtype=np.int8, shape=(n,))
        status[list(failures)] = 2
        for k, arr in first[1].items():
            arrays[k][first[0]] = arr
        status[first[0]] = 1
        for a in arrays.values():
            a.flush()
        status.flush()
        atomic_write_text(shapes_file, json.dumps(specs))
    specs = json.loads(shapes_file.read_text())
    arrays = {k: open_memmap(work / f"{k}.npy", mode="r+") for k in specs}
    status = open_memmap(work / "status.npy", mode="r+")
    pending = np.flatnonzero(status == 0)
    last_flush = time.monotonic()

    def flush() -> None:
        for a in arrays.values():
            a.flush()  # arrays before the bitmap: a sample marked done is really on disk
        status.flush()

    bar = tqdm(total=len(pending), desc=f"prepare {data_cfg.dataset}", unit="sample", disable=not progress)
    try:
        for i, res, err in _results([(int(i), rows[i]) for i in pending], data_cfg, sequence, workers):
            if res is not None:
                bad = [k for k, s in specs.items() if list(res[k].shape) != s["shape"]]
                if bad:
                    k = bad[0]
                    src = rows[i].get(path_column(k), rows[i]["sample_id"])
                    err = f"wrong length: {k} of {src} has shape {tuple(res[k].shape)}, expected {tuple(specs[k]['shape'])}"
                    res = None
            if res is not None:
                for k, arr in res.items():
                    arrays[k][i] = arr
                status[i] = 1
            else:
                status[i] = 2
                failures[i] = str(err)
                _append_failure(work, i, str(err))
                if strict:
                    raise SampleError(str(err))
            bar.update(1)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.monotonic()
    finally:
        flush()
        bar.close()
    return _finish(
        store_dir, work, manifest, data_cfg, key, specs, arrays, status, failures, sequence, progress
    )


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


def _finish(
    store_dir: Path,
    work: Path,
    manifest: pd.DataFrame,
    data_cfg: Any,
    key: str,
    specs: dict[str, Any],
    arrays: dict[str, np.ndarray],
    status: np.ndarray,
    failures: dict[int, str],
    sequence: bool,
    progress: bool,
) -> Store:
    import numpy as np
    import pandas as pd
    from numpy.lib.format import open_memmap

    ok = np.flatnonzero(status == 1)
    n = len(manifest)
    report = pd.DataFrame(
        {
            "sample_id": manifest["sample_id"],
            "subject_id": manifest["subject_id"],
            "status": np.where(status == 1, "ok", "failed"),
            "reason": [failures.get(i, "") if status[i] != 1 else "" for i in range(n)],
        }
    )
    atomic_write_csv(report, store_dir / "prepare_report.csv")
    if len(ok) == 0:
        raise RuntimeError(f"every sample failed; see {store_dir / 'prepare_report.csv'}")
    for k in specs:
        dst = store_dir / f"{k}.npy"
        if len(ok) == n:
            del arrays[k]
            os.replace(work / f"{k}.npy", dst)
        else:
            src = arrays[k]
            out = open_memmap(dst, mode="w+", dtype=src.dtype, shape=(len(ok), *src.shape[1:]))
            for s in range(0, len(ok), 64):  # chunked copy: never the whole array in RAM
                out[s : s + 64] = src[ok[s : s + 64]]
            out.flush()
            del out
    kept = manifest.iloc[ok].reset_index(drop=True)
    atomic_write_csv(kept, store_dir / "manifest.csv")
    kinds = {name: m.kind for name, m in data_cfg.modalities.items()}
    meta = {
        "key": key,
        "n": int(len(ok)),
        "dataset": data_cfg.dataset,
        "task": task_spec(kept, data_cfg),
        "sequence": sequence,
        "sequence_length": data_cfg.sequence_length if sequence else None,
        "modalities": {k: {**specs[k], "kind": kinds[k]} for k in specs if k != "labels"},
        "labels": specs["labels"],
        "prevalent": list(data_cfg.prevalent),
        "privileged": list(data_cfg.privileged),
        "failed": int(n - len(ok)),
    }
    atomic_write_text(store_dir / "meta.json", json.dumps(meta, indent=1))
    atomic_write_text(store_dir / "done", key)
    shutil.rmtree(work, ignore_errors=True)
    if progress:
        msg = f"prepared {len(ok)}/{n} samples into {store_dir}"
        if len(ok) < n:
            msg += f"; {n - len(ok)} failed (reasons in {store_dir / 'prepare_report.csv'})"
        print(msg, file=sys.stderr)
    return Store(store_dir)


def decode_video_for(path: Path, mc: Any) -> np.ndarray:
    """One video prepared as ``prepare`` prepares a sample of modality config ``mc`` (export bundles)."""
    return _video(path, mc, {})
