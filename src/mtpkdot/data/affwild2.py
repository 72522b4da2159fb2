"""Affwild2 reader (ABAW valence/arousal layout).

Roots (each a config path, because ABAW releases name the top folders differently)::

    data.root               cropped_aligned/<video_id>/<frame:05d>.jpg  (or a folder holding cropped_aligned/
                            or cropped-aligned/)
    data.annotations_root   .../VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video_id>.txt
                            (the folder holding VA_Estimation_Challenge, or that folder itself);
                            default <root>/annotations
    data.videos_root        raw videos (batch1/, batch2/, ... searched recursively) for the audio track;
                            default <root>/raw

Annotation files: header ``valence,arousal``, line k (1-based) belongs to frame ``k:05d``.jpg; -5 marks
an invalid frame. ``<video_id>_left``/``_right`` share the raw video ``<video_id>``.

A sample is ``data.sequence_length`` consecutive clips of ``F = segments x frames_per_segment``
consecutive frames (the video modality's settings); samples tile each video without overlap, the last
one padded (padding frames have NaN labels), so every annotated frame is scored exactly once.
Official Train_Set -> split ``train``; Validation_Set -> split ``test`` (the evaluation set; the pipeline
carves an inner validation subset from training videos). ``subject_id`` is the raw video id, so the two
persons of a ``_left``/``_right`` pair (one shared audio track) never sit on both sides of a split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.reader import Reader
from mtpkdot.registry import DATASETS

if TYPE_CHECKING:
    import pandas as pd

SPLITS = {"Train_Set": "train", "Validation_Set": "test"}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
_PAIR = re.compile(r"_(left|right)$")


def base_video_id(video_id: str) -> str:
    """``10-60-1280x720_left`` -> ``10-60-1280x720`` (the raw video that holds the audio)."""
    return _PAIR.sub("", video_id)


def clip_frames(data_cfg: Any) -> int:
    """Frames per clip: the video modality's ``segments * frames_per_segment`` (8 if there is no video)."""
    for m in data_cfg.modalities.values():
        if m.kind == "video":
            return m.segments * m.frames_per_segment
    return 8


def _resolve_roots(data_cfg: Any) -> tuple[Path, Path, Path]:
    if data_cfg.root is None:
        raise ValueError(f"data.root must be set for dataset {data_cfg.dataset!r}")
    top = Path(data_cfg.root)
    if not top.is_dir():
        raise FileNotFoundError(f"data.root {top} does not exist or is not a folder")
    frames = top
    for name in ("cropped_aligned", "cropped-aligned"):
        if (top / name).is_dir():
            frames = top / name
    ann = Path(data_cfg.annotations_root) if data_cfg.annotations_root is not None else top / "annotations"
    if (ann / "VA_Estimation_Challenge").is_dir():
        ann = ann / "VA_Estimation_Challenge"
    if not ann.is_dir():
        raise FileNotFoundError(f"annotation root {ann} does not exist (set data.annotations_root)")
    videos = Path(data_cfg.videos_root) if data_cfg.videos_root is not None else top / "raw"
    return frames, ann, videos


def count_annotation_lines(path: Path) -> int:
    with open(path) as fh:
        header = fh.readline().strip().replace(" ", "").lower()
        if header != "valence,arousal":
            raise ValueError(f"{path}: first line must be 'valence,arousal', got {header!r}")
        return sum(1 for line in fh if line.strip())


def read_affwild2(data_cfg: Any) -> pd.DataFrame:
    """Affwild2 ABAW layout: per-frame valence/arousal, official Train/Validation split, -5 masked."""
    import pandas as pd

    frames_root, ann_root, videos_root = _resolve_roots(data_cfg)
    for name, m in data_cfg.modalities.items():
        if m.kind not in ("video", "audio"):
            raise ValueError(f"modality {name!r} has kind {m.kind!r}; affwild2 provides video and audio only")
    raw_index: dict[str, Path] = {}
    if any(m.kind == "audio" for m in data_cfg.modalities.values()) and videos_root.is_dir():
        for p in sorted(videos_root.rglob("*")):
            if p.suffix.lower() in VIDEO_SUFFIXES:
                raw_index.setdefault(p.stem, p)
    per_sample = clip_frames(data_cfg) * data_cfg.sequence_length
    rows = []
    for folder, split in SPLITS.items():
        split_dir = ann_root / folder
        if not split_dir.is_dir():
            continue
        for txt in sorted(split_dir.glob("*.txt")):
            vid = txt.stem
            n = count_annotation_lines(txt)
            base = base_video_id(vid)
            raw = raw_index.get(base, videos_root / f"{base}.mp4")
            for start in range(0, n, per_sample):
                row = {
                    "sample_id": f"{vid}/{start:06d}",
                    "subject_id": base,
                    "video_id": vid,
                    "frame_start": start,
                    "frame_count": min(per_sample, n - start),
                    "annotation": str(txt),
                    "split": split,
                }
                for name, m in data_cfg.modalities.items():
                    row[path_column(name)] = str(frames_root / vid) if m.kind == "video" else str(raw)
                rows.append(row)
    if not rows:
        raise ValueError(f"no annotation files in {ann_root}/Train_Set or {ann_root}/Validation_Set")
    return pd.DataFrame(rows)


@DATASETS.register()
class Affwild2(Reader):
    """Affwild2 ABAW layout: per-frame valence/arousal, official Train/Validation split, -5 masked."""

    name = "affwild2"
    tasks = ("va",)
    read = staticmethod(read_affwild2)


def read_synthetic_affwild2(data_cfg: Any) -> pd.DataFrame:
    """Embedded Affwild2-like data (video + audio): generated into data.root if missing, read as affwild2."""
    from mtpkdot.data.synthetic import ensure_generated

    ensure_generated(data_cfg, "affwild2")
    return read_affwild2(data_cfg)


@DATASETS.register()
class SyntheticAffwild2(Reader):
    """Embedded Affwild2-like data (video + audio): generated into data.root if missing, read as affwild2."""

    name = "synthetic_affwild2"
    tasks = ("va",)
    read = staticmethod(read_synthetic_affwild2)
