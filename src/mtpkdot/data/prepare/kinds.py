"""Per-kind decoders: one manifest row's file of one modality -> its stored array(s).

A handler per modality kind in ``KINDS``: (file, modality config, manifest row, modality name, stats)
-> arrays. Video: a frame folder, a ``.npy`` or a video file, TSN-sampled inside the window, optional
face crop (with the subject's face box as a fallback on fixed-camera datasets), resized.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.prepare.options import PrepareStats
from mtpkdot.signals.errors import NoFaceError, SampleError
from mtpkdot.signals.files import load_npy, nonfinite, require_file

if TYPE_CHECKING:
    import numpy as np

_DEFAULT_COLUMNS = {"eda": "gsr", "emg": "emg_corrugator"}
# work arrays whose name starts with this are bookkeeping (face boxes), not part of the store
BOX = "_box_"
# row key of a sample re-run with the subject fallback: {modality: (x, y, w, h)}
FALLBACK = "_fallback_boxes"
# row key of a sample's videos decoded ahead: {modality: Future of its sampled frames}
AHEAD = "_decoded_ahead"


def _columns(m: Any) -> list[str]:
    col = m.column or _DEFAULT_COLUMNS.get(m.kind)
    if not col:
        raise SampleError(f"modality of kind {m.kind!r} needs 'column' (the CSV column name)")
    return [c.strip() for c in col.split(",") if c.strip()]


def _load_signal(path: Path, m: Any) -> np.ndarray:
    import numpy as np

    from mtpkdot.signals import physio

    if path.suffix.lower() == ".npy":
        x = load_npy(path).astype(np.float64)
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2:
            raise SampleError(f"{path}: a signal must be C x T or T, got shape {x.shape}")
        bad = nonfinite(x)
        if bad:
            raise SampleError(f"{bad} values in {path}")
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

    arr = load_npy(path, mmap=True)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise SampleError(f"{path}: video must be T x H x W x C (C = 1 or 3), got shape {arr.shape}")
    frames = np.asarray(arr[_sampled(arr.shape[0], 25.0, m, path)])
    if frames.dtype != np.uint8:
        scale = 255.0 if frames.max() <= 1.0 else 1.0
        frames = np.clip(frames * scale, 0, 255).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def sampled_frames(path: Path, m: Any, row: dict[str, Any]) -> Any:
    """Sampled frames of one video modality: a frame folder, a ``.npy`` or a video file (with a face
    crop: PyAV frames not yet converted to RGB)."""
    if path.is_dir():
        return _folder_frames(path, m, row)
    if path.suffix.lower() == ".npy":
        return _npy_frames(path, m)
    return _file_frames(path, m, lazy=m.face != "none")


def _file_frames(path: Path, m: Any, lazy: bool) -> Any:
    """Sampled frames of a video file; ``lazy``: PyAV frames not yet converted to RGB (for a face crop)."""
    from mtpkdot.signals import video as V

    require_file(path, "video file", SampleError)
    frames, _ = V.decode_frames(path, pick=lambda n, fps: _sampled(n, fps, m, path), as_frames=lazy)
    return frames


def _video_sample(
    path: Path,
    m: Any,
    row: dict[str, Any],
    stats: PrepareStats,
    fallback: tuple[float, ...] | None = None,
    ahead: Future[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored clip ``T x size x size x 3`` and, with a face crop, its box record
    ``[x, y, w, h, x0, y0, side, used_fallback]`` (detected box, crop square, 1 if ``fallback`` was used).
    ``ahead``: the frames being decoded in the decode thread (its error, if any, is raised here)."""
    import numpy as np

    from mtpkdot.signals import video as V

    if ahead is None:
        with stats.timed("decode"):
            clip = sampled_frames(path, m, row)
    else:
        with stats.timed("decode_wait"):
            clip = ahead.result()
    _check_frame_count(clip, m, path)
    if m.face == "none":
        with stats.timed("crop_resize"):
            return V.resize_frames(clip, m.size), None
    used = 0.0
    with stats.timed("face"):
        try:
            box = V.face_box(clip, V.get_face_detector(m.face), source=str(path))
        except NoFaceError:
            if fallback is None:
                raise
            box, used = tuple(fallback), 1.0
    with stats.timed("crop_resize"):
        square = V.crop_square(box, *V.frame_size(clip))
        clip = V.resize_frames(V.crop_frames(clip, square), m.size)
    return clip, np.asarray([*box, *square, used], dtype=np.float64)


def _check_frame_count(clip: Any, m: Any, path: Path) -> None:
    """Every stored clip has ``segments x frames_per_segment`` frames: a decoder that gives fewer (or
    more) would otherwise shift every later frame of the clip, or fail far away in the store."""
    want = m.segments * m.frames_per_segment
    if len(clip) != want:
        raise SampleError(
            f"wrong length: {path} gave {len(clip)} sampled frames, expected {want} "
            f"({m.segments} segments x {m.frames_per_segment} frames)"
        )


def decode_video_for(path: Path, mc: Any) -> np.ndarray:
    """One video prepared as ``prepare`` stores it for modality config ``mc`` (``T x size x size x 3``)."""
    return _video_sample(Path(path), mc, {}, PrepareStats())[0]


def _video_kind(
    path: Path, m: Any, row: dict[str, Any], name: str, stats: PrepareStats
) -> dict[str, np.ndarray]:
    fallback, ahead = row.get(FALLBACK, {}).get(name), row.get(AHEAD, {}).get(name)
    clip, box = _video_sample(path, m, row, stats, fallback, ahead)
    return {name: clip} if box is None else {name: clip, BOX + name: box}


def _signal_kind(
    path: Path, m: Any, row: dict[str, Any], name: str, stats: PrepareStats
) -> dict[str, np.ndarray]:
    import numpy as np

    with stats.timed("physio"):
        return {name: _load_signal(path, m).astype(np.float32)}


def _emg_kind(
    path: Path, m: Any, row: dict[str, Any], name: str, stats: PrepareStats
) -> dict[str, np.ndarray]:
    import numpy as np

    from mtpkdot.signals.physio import emg_spectrogram

    with stats.timed("physio"):
        return {name: emg_spectrogram(_load_signal(path, m), m.sample_rate, m.log).astype(np.float32)}


def _audio_kind(
    path: Path, m: Any, row: dict[str, Any], name: str, stats: PrepareStats
) -> dict[str, np.ndarray]:
    import numpy as np

    from mtpkdot.signals.audio import decode_audio, dft_spectrogram
    from mtpkdot.signals.physio import take_window

    if path.suffix.lower() == ".npy":
        wav = load_npy(path).astype(np.float32).reshape(-1)
    else:
        require_file(path, "audio file", SampleError)
        wav = decode_audio(path, m.audio_rate)
    wav = take_window(wav[None], m.audio_rate, m.window, source=str(path))[0]
    return {name: dft_spectrogram(wav, m.freq_bins, m.time_bins)[None]}


def _features_kind(
    path: Path, m: Any, row: dict[str, Any], name: str, stats: PrepareStats
) -> dict[str, np.ndarray]:
    import numpy as np

    v = load_npy(path).astype(np.float32)
    if v.ndim != 1:
        raise SampleError(f"{path}: a feature vector must be 1-D, got shape {v.shape}")
    return {name: v}


KindHandler = Callable[[Path, Any, dict[str, Any], str, PrepareStats], "dict[str, np.ndarray]"]
# one handler per modality kind: (file, modality config, manifest row, modality name, stats) -> arrays
KINDS: dict[str, KindHandler] = {
    "video": _video_kind,
    "eda": _signal_kind,
    "signal": _signal_kind,
    "emg": _emg_kind,
    "audio": _audio_kind,
    "features": _features_kind,
}


@contextlib.contextmanager
def names_file(path: Any, modality: str) -> Iterator[None]:
    """Any unexpected error while reading one file becomes a SampleError that names the file."""
    try:
        yield
    except SampleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder or parser error is still one bad sample
        raise SampleError(
            f"cannot prepare {path} (modality {modality!r}): {type(exc).__name__}: {exc}"
        ) from None


def single_sample(row: dict[str, Any], data_cfg: Any, stats: PrepareStats) -> dict[str, np.ndarray]:
    import numpy as np

    out = {"labels": np.asarray(int(row["label"]), dtype=np.int64)}
    for name, m in data_cfg.modalities.items():
        path = Path(str(row[path_column(name)]))
        with names_file(path, name):
            out.update(KINDS[m.kind](path, m, row, name, stats))
    return out
