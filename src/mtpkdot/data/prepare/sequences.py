"""Affwild2-like sequences: ``sequence_length`` clips of consecutive frames from ``frame_start``, with the
per-frame valence/arousal labels; the frame folder, annotation and audio track are cached per worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.prepare.kinds import names_file
from mtpkdot.signals.errors import SampleError
from mtpkdot.signals.files import require_file

if TYPE_CHECKING:
    import numpy as np


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

    require_file(path, "raw video (audio track)", SampleError)
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


def sequence_sample(row: dict[str, Any], data_cfg: Any, clip: int) -> dict[str, np.ndarray]:
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
        with names_file(path, name):
            out[name] = _SEQUENCE_KINDS[m.kind](path, m, span)
    return out
