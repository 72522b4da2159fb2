"""Video decoding (PyAV), frame folders, TSN-style frame sampling, face crop and resize.

Everything returns RGB ``uint8`` arrays ``T x H x W x 3``. Decoding keeps only the frames it needs, so a
full-resolution Biovid video (1388 x 1038, 138 frames) never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mtpkdot.signals.errors import SampleError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# A face detector maps one RGB frame to a list of (x, y, w, h) boxes.
FaceDetector = Callable[[np.ndarray], list[tuple[int, int, int, int]]]
FACE_DETECTORS: dict[str, Callable[[], FaceDetector]] = {}


def tsn_indices(n_frames: int, segments: int, frames_per_segment: int = 1) -> np.ndarray:
    """Deterministic TSN sampling (test mode of the released code, reference-notes section 2.1).

    The clip is cut into ``segments`` equal parts; from the middle of each part ``frames_per_segment``
    consecutive frames are taken (21 frames, 10 x 1 -> 1, 3, ..., 19). Indices are clipped to the clip, so a clip shorter than
    ``segments * frames_per_segment`` repeats frames rather than failing.
    """
    if n_frames <= 0:
        raise ValueError("no frames to sample from")
    # as the TSN loader of the released code: segment length (N - F + 1) / S, start at its middle
    dist = max(n_frames - frames_per_segment + 1, 1) / segments
    out = []
    for s in range(segments):
        start = int(dist / 2.0 + dist * s)
        out.extend(start + j for j in range(frames_per_segment))
    return np.clip(np.asarray(out, dtype=np.int64), 0, n_frames - 1)


def video_info(path: str | Path) -> tuple[int, float]:
    """(number of frames, frames per second) of a video file, from the container headers."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            n = int(stream.frames or 0)
            if n <= 0 and stream.duration is not None and stream.time_base is not None:
                n = int(round(float(stream.duration * stream.time_base) * fps))
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise SampleError(f"cannot read video {path}: {exc}") from None
    return n, fps


def decode_frames(path: str | Path, indices: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames at ``indices`` (all frames if None) of a video file -> (T x H x W x 3, fps).

    A requested index past the real end (headers can over-count) repeats the last decoded frame.
    Raises :class:`SampleError` naming the file for a corrupt or empty video.
    """
    import av

    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    last_needed = None if wanted is None else wanted[-1]
    got: dict[int, np.ndarray] = {}
    last = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                last = i
                if last_needed is not None and i >= last_needed:
                    break
            if last is not None and last not in got:
                got[last] = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        raise SampleError(f"cannot decode video {path}: {exc}") from None
    if not got:
        raise SampleError(f"video {path} has no decodable frames")
    if indices is None:
        frames = [got[i] for i in sorted(got)]
    else:
        top = max(got)  # the last decoded frame stands in for indices past the real end
        frames = [got.get(int(i), got[top]) for i in indices]
    return np.stack(frames), fps


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in name order (``img_00001.jpg``, ``00001.jpg``, ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SampleError(f"frame folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SampleError(f"frame folder {folder} holds no images")
    return files


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> RGB uint8 H x W x 3."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SampleError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_frames(files: Sequence[Path]) -> np.ndarray:
    """Read image files of equal size into T x H x W x 3."""
    frames = [read_image(f) for f in files]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise SampleError(f"frames in {Path(files[0]).parent} differ in size: {sorted(shapes)}")
    return np.stack(frames)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize every frame to ``size x size`` (area interpolation when shrinking)."""
    import cv2

    if frames.shape[1] == size and frames.shape[2] == size:
        return np.ascontiguousarray(frames)
    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def haar_detector() -> FaceDetector:
    """The frontal-face Haar cascade shipped in opencv-python-headless (``cv2.data.haarcascades``)."""
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    if cascade.empty():
        raise RuntimeError("the OpenCV Haar cascade haarcascade_frontalface_default.xml could not be loaded")

    def detect(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        # Detection runs on a copy at most 320 px wide: faces fill a large part of these videos.
        scale = min(1.0, 320.0 / gray.shape[1])
        small = (
            cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        )
        min_side = max(16, int(min(small.shape) * 0.15))
        boxes = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
        return [tuple(int(round(v / scale)) for v in b) for b in boxes]  # type: ignore[misc]

    return detect


FACE_DETECTORS["haar"] = haar_detector


def register_face_detector(name: str, factory: Callable[[], FaceDetector]) -> None:
    """Make another detector available as ``data.modalities.<m>.face: <name>`` (pluggable crop)."""
    FACE_DETECTORS[name] = factory


_detector_cache: dict[str, FaceDetector] = {}


def get_face_detector(name: str) -> FaceDetector:
    if name not in FACE_DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; known: none, {', '.join(sorted(FACE_DETECTORS))}")
    if name not in _detector_cache:
        _detector_cache[name] = FACE_DETECTORS[name]()
    return _detector_cache[name]


def crop_face(
    frames: np.ndarray, detector: FaceDetector, margin: float = 0.2, probes: int = 3, source: str = ""
) -> np.ndarray:
    """Crop one square face box, the same for every frame (no jitter between frames).

    The detector runs on ``probes`` evenly spaced frames; the largest box of each is kept and the
    per-coordinate median of those boxes, enlarged by ``margin`` on each side, is the crop.
    Raises :class:`SampleError` if no probe frame has a face.
    """
    picks = np.unique(np.linspace(0, len(frames) - 1, num=min(probes, len(frames))).round().astype(int))
    boxes = []
    for i in picks:
        found = detector(frames[i])
        if len(found):
            boxes.append(max(found, key=lambda b: b[2] * b[3]))
    if not boxes:
        raise SampleError(f"no face detected in {source or 'video'}")
    x, y, w, h = np.median(np.asarray(boxes, dtype=float), axis=0)
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    height, width = frames.shape[1:3]
    side = min(side, height, width)
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    s = int(round(side))
    return np.ascontiguousarray(frames[:, y0 : y0 + s, x0 : x0 + s])
