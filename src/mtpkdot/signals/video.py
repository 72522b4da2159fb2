"""Video decoding (PyAV), frame folders, TSN-style frame sampling, face crop and resize.

Everything returns RGB ``uint8`` arrays ``T x H x W x 3``. Decoding keeps only the frames it needs, so a
full-resolution Biovid video (1388 x 1038, 138 frames) never sits in memory whole, and skips decoding
the frames that neither it nor any frame it needs refers to (:data:`SKIP_UNUSED`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtpkdot.signals.errors import NoFaceError, SampleError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# A face detector maps one RGB frame to a list of (x, y, w, h) boxes.
FaceDetector = Callable[[np.ndarray], list[tuple[int, int, int, int]]]
FACE_DETECTORS: dict[str, Callable[[], FaceDetector]] = {}


def tsn_indices(n_frames: int, segments: int, frames_per_segment: int = 1) -> np.ndarray:
    """Deterministic TSN sampling (the test mode of the released code).

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
        with _open_video(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            n = _frame_count(stream, fps)
    except (av.FFmpegError, OSError) as exc:
        raise SampleError(f"cannot read video {path}: {_decoder_reason(exc)}") from None
    return n, fps


# FFmpeg decoder threads per video: 0 lets FFmpeg choose (all cores); ``prepare`` sets cores / workers
# in each worker so that parallel workers do not oversubscribe the CPU.
DECODER_THREADS = 0
# FFmpeg thread type: AUTO (frame threads where the codec has them) or SLICE (threads over the slices of
# one frame: faster on streams cut into slices, single-threaded on a stream without). ``prepare`` sets
# the faster one for its files (:func:`fastest_thread_type`). Threading never changes decoded pixels.
DECODER_THREAD_TYPE = "AUTO"
THREAD_TYPES = ("SLICE", "AUTO")

Picker = Callable[[int, float], Sequence[int]]


def decode_frames(
    path: str | Path,
    indices: Sequence[int] | None = None,
    *,
    pick: Picker | None = None,
    as_frames: bool = False,
) -> tuple[Any, float]:
    """Decode the frames at ``indices`` (all frames if None) of a video file -> (T x H x W x 3, fps).

    ``pick(n_frames, fps)`` chooses the indices from the headers instead (the file is opened once);
    headers without a frame count decode every frame first. ``as_frames`` returns PyAV frames, not
    converted to RGB (see :func:`crop_face`, which converts only the crop). A requested index past the
    real end (headers can over-count) repeats the last decoded frame. Raises :class:`SampleError`
    naming the file for a corrupt or empty video.
    """
    with _decoding(path, DECODER_THREAD_TYPE, DECODER_THREADS) as (container, stream):
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        if pick is not None:
            n = _frame_count(stream, fps)
            indices = None if n <= 0 else [int(i) for i in pick(n, fps)]
        got = _decode_wanted(container, stream, indices, _skippable(container, stream, path))
    if not got:
        raise SampleError(f"video {path} has no decodable frames")
    if indices is None:
        frames = [got[i] for i in sorted(got)]
        if pick is not None:  # no frame count in the headers: choose now that the count is known
            frames = [frames[int(i)] for i in pick(len(frames), fps)]
    else:
        top = max(got)  # the last decoded frame stands in for indices past the real end
        frames = [got.get(int(i), got[top]) for i in indices]
    if as_frames:
        return frames, fps
    return np.stack([to_rgb(f) for f in frames]), fps


def fastest_thread_type(
    path: str | Path, threads: int = 0, frames: int = 25, rounds: int = 2
) -> tuple[str, dict[str, float]]:
    """The thread type of :data:`THREAD_TYPES` that decodes the first ``frames`` frames of ``path``
    fastest with ``threads`` threads (wall time, best of ``rounds`` interleaved tries) and the seconds of
    each. A probe: a wrong pick only costs speed, as the decoded pixels are the same either way.
    Raises :class:`SampleError` naming the file if it cannot be decoded."""
    import time

    best = dict.fromkeys(THREAD_TYPES, float("inf"))
    for _ in range(rounds):
        for thread_type in THREAD_TYPES:
            t0 = time.perf_counter()
            with _decoding(path, thread_type, threads) as (container, stream):
                for i, _frame in enumerate(container.decode(stream)):
                    if i + 1 >= frames:
                        break
            best[thread_type] = min(best[thread_type], time.perf_counter() - t0)
    return min(best, key=best.__getitem__), best


@contextlib.contextmanager
def _decoding(path: str | Path, thread_type: str, threads: int) -> Iterator[tuple[Any, Any]]:
    """``(container, stream)``: the first video stream of ``path`` set up to decode with ``threads``
    threads of ``thread_type``; a container or decoder error inside is a :class:`SampleError` naming the
    file."""
    import av

    container = _open_video(path)
    try:
        with container:
            stream = container.streams.video[0]
            stream.thread_type = thread_type
            stream.codec_context.thread_count = threads
            yield container, stream
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SampleError(f"cannot decode video {path}: {_decoder_reason(exc)}") from None


def _open_video(path: str | Path) -> Any:
    """The PyAV container of ``path``; a file FFmpeg cannot open, or one without a video stream (a
    text file, an image, an audio file), is a :class:`SampleError` saying it is no video."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SampleError(
            f"cannot open video {path}: not a video the decoder can read ({_decoder_reason(exc)})"
        ) from None
    if not container.streams.video:
        container.close()
        raise SampleError(f"cannot open video {path}: not a video the decoder can read (no video stream)")
    return container


def _decoder_reason(exc: Exception) -> str:
    """FFmpeg's words without the errno number and the path the message already names."""
    return getattr(exc, "strerror", None) or str(exc)


def _frame_count(stream: Any, fps: float) -> int:
    n = int(stream.frames or 0)
    if n <= 0 and stream.duration is not None and stream.time_base is not None:
        n = int(round(float(stream.duration * stream.time_base) * fps))
    return n


def _decode_wanted(
    container: Any, stream: Any, indices: Sequence[int] | None, skip: bool = False
) -> dict[int, Any]:
    """Frames at ``indices`` (every frame if None), stopping after the last one needed; ``skip``: frames
    that are neither wanted nor referenced are not decoded (:data:`SKIP_UNUSED`)."""
    wanted = None if indices is None else set(int(i) for i in indices)
    packets: Iterable[Any] = container.demux(stream)
    if wanted is not None and skip:
        packets = list(packets)
        ranks = _display_ranks(packets)
        kept = None if ranks is None else _decode_skipping(stream, packets, ranks, wanted)
        if kept is not None:
            return kept
        stream.codec_context.flush_buffers()  # unusual timestamps: count the frames, as below
    last_needed = None if wanted is None else max(wanted)
    got: dict[int, Any] = {}
    last, frame = None, None
    for i, frame in enumerate(f for packet in packets for f in packet.decode()):
        if wanted is None or i in wanted:
            got[i] = frame
        last = i
        if last_needed is not None and i >= last_needed:
            break
    if last is not None and last not in got:
        got[last] = frame
    return got


# Skip decoding what no sampled frame needs: a frame that is not sampled and that no other frame refers
# to (a non-reference B-frame: half the frames of a default x264 stream) is dropped by FFmpeg before it
# is decoded. The frames kept are bit-identical (nothing refers to the dropped ones). The compressed
# packets are read first (to rank their timestamps), so only for files up to SKIP_MAX_BYTES. Only for
# codecs whose packets are whole frames, one each (MPEG-4 part 2 in AVI can pack two frames in a packet,
# VP8 can send a frame that is never shown): there the display index is the packet's timestamp rank
SKIP_UNUSED = True
SKIP_MAX_BYTES = 256 * 2**20
SKIP_CODECS = frozenset({"h264", "hevc"})
# ... in containers that store one access unit (a whole frame) per packet; not MPEG-TS, where the two
# fields of an interlaced frame can come in two packets
SKIP_CONTAINERS = frozenset({"mp4", "mov", "matroska"})


def _skippable(container: Any, stream: Any, path: str | Path) -> bool:
    """Whether :func:`_decode_wanted` may skip frames of this stream (see :data:`SKIP_UNUSED`)."""
    return (
        SKIP_UNUSED
        and stream.codec_context.name in SKIP_CODECS
        and not SKIP_CONTAINERS.isdisjoint(container.format.name.split(","))
        and Path(path).stat().st_size <= SKIP_MAX_BYTES
    )


def _display_ranks(packets: Sequence[Any]) -> dict[int, int] | None:
    """Display index of each packet's frame (the rank of its timestamp), or None where timestamps are
    missing or repeated (then the frames are counted as they come out, which needs every one decoded)."""
    pts = [p.pts for p in packets if p.size]
    if not pts or any(t is None for t in pts) or len(set(pts)) != len(pts):
        return None
    return {t: i for i, t in enumerate(sorted(pts))}


def _decode_skipping(
    stream: Any, packets: Sequence[Any], ranks: dict[int, int], wanted: set[int]
) -> dict[int, Any] | None:
    """The wanted frames (by display index; an index past the end gets the last frame), each packet
    decoded only if its frame is wanted or a reference; None if a wanted frame did not come out."""
    n = len(ranks)
    need = {i for i in wanted if i < n} | ({n - 1} if max(wanted) >= n else set())
    ctx, got = stream.codec_context, {}
    try:
        for packet in packets:
            if packet.size:
                ctx.skip_frame = "DEFAULT" if ranks[packet.pts] in need else "NONREF"
            for frame in packet.decode():
                if ranks.get(frame.pts) in need:
                    got[ranks[frame.pts]] = frame
            if len(got) == len(need):
                break
    finally:
        ctx.skip_frame = "DEFAULT"
    return got if len(got) == len(need) else None


# one reformatter per thread (``prepare`` decodes in a background thread): a scaler context is not
# safe to share between threads
_REFORMATTER = threading.local()


def to_rgb(frame: Any) -> np.ndarray:
    """A PyAV frame as RGB uint8 H x W x 3 (one reformatter per thread reused: its scaler context is kept)."""
    if isinstance(frame, np.ndarray):
        return frame
    from av.video.reformatter import VideoReformatter

    if not hasattr(_REFORMATTER, "rgb"):
        _REFORMATTER.rgb = VideoReformatter()
    return _REFORMATTER.rgb.reformat(frame, format="rgb24").to_ndarray()


def _yuv420_crop_rgb(frame: Any, x0: int, y0: int, s: int) -> np.ndarray:
    """RGB of the square ``[y0:y0+s, x0:x0+s]`` of a yuv420p frame, converting only that region.

    The region is widened to even bounds (chroma is shared by 2 x 2 pixels), converted by the same
    swscale routine as a whole frame, then cut: the pixels equal the whole frame's conversion.
    """
    import av

    xa, ya = x0 - x0 % 2, y0 - y0 % 2
    xb, yb = x0 + s + (x0 + s) % 2, y0 + s + (y0 + s) % 2
    planes = []
    for k, plane in enumerate(frame.planes):
        sub = 1 if k == 0 else 2
        arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        planes.append(arr[ya // sub : yb // sub, xa // sub : xb // sub].reshape(-1))
    yuv = np.concatenate(planes).reshape((yb - ya) * 3 // 2, xb - xa)
    rgb = to_rgb(av.VideoFrame.from_ndarray(yuv, format="yuv420p"))
    return rgb[y0 - ya : y0 - ya + s, x0 - xa : x0 - xa + s]


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


def face_box(
    frames: Sequence[Any], detector: FaceDetector, probes: int = 3, source: str = ""
) -> tuple[float, float, float, float]:
    """The face box (x, y, w, h) of a clip: the per-coordinate median of each probe frame's largest box.

    The detector runs on ``probes`` evenly spaced frames; if none of them shows a face (a hand over the
    face, a head turned away), it runs on every other frame of the clip, and then needs a face on at
    least two of them (a single hit among many frames is more often a false detection than a face).
    Frames are RGB arrays or PyAV frames. Raises :class:`NoFaceError` if no face is found.
    """
    first = np.unique(np.linspace(0, len(frames) - 1, num=min(probes, len(frames))).round().astype(int))
    rest = [i for i in range(len(frames)) if i not in set(first.tolist())]
    for picks, needed in ((first, 1), (rest, min(2, len(rest)))):
        boxes = []
        for i in picks:
            found = detector(to_rgb(frames[i]))
            if len(found):
                boxes.append(max(found, key=lambda b: b[2] * b[3]))
        if boxes and len(boxes) >= needed:
            x, y, w, h = np.median(np.asarray(boxes, dtype=float), axis=0)
            return float(x), float(y), float(w), float(h)
    raise NoFaceError(f"no face detected in {source or 'video'}")


def crop_square(box: Sequence[float], height: int, width: int, margin: float = 0.2) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop around ``box`` enlarged by ``margin`` per side, inside the frame."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    side = min(side, height, width)
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, int(round(side))


def crop_frames(frames: Sequence[Any], square: tuple[int, int, int]) -> np.ndarray:
    """RGB crops ``T x side x side x 3`` of RGB arrays or PyAV frames (yuv420p: only the crop is converted)."""
    x0, y0, s = square
    if isinstance(frames, np.ndarray):
        return np.ascontiguousarray(frames[:, y0 : y0 + s, x0 : x0 + s])
    if all(getattr(f.format, "name", "") == "yuv420p" for f in frames):
        return np.stack([_yuv420_crop_rgb(f, x0, y0, s) for f in frames])
    return np.stack([to_rgb(f)[y0 : y0 + s, x0 : x0 + s] for f in frames])


def frame_size(frames: Sequence[Any]) -> tuple[int, int]:
    """(height, width) of RGB arrays or PyAV frames."""
    if isinstance(frames, np.ndarray):
        return int(frames.shape[1]), int(frames.shape[2])
    return int(frames[0].height), int(frames[0].width)


def crop_face(
    frames: Any, detector: FaceDetector, margin: float = 0.2, probes: int = 3, source: str = ""
) -> np.ndarray:
    """Crop one square face box, the same for every frame (no jitter between frames).

    The box is :func:`face_box` enlarged by ``margin`` on each side (:func:`crop_square`). Raises
    :class:`NoFaceError` (a :class:`SampleError`) if no frame has a face.
    """
    box = face_box(frames, detector, probes, source)
    return crop_frames(frames, crop_square(box, *frame_size(frames), margin))
