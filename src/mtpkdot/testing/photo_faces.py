"""Biovid-layout videos of a real face photograph, for face-crop tests and real-size benchmarks.

The synthetic data (``mtpkdot.data.synthetic``) draws cartoon faces at 64 x 64 that no face detector finds.
This module renders the face photograph matplotlib ships in its sample data (``grace_hopper.jpg``, found
offline) into videos the size of Biovid's (1388 x 1038, 25 fps, 5.5 s, H.264): the photo moves and
changes scale over a fixed textured background (one camera per subject), and optional occluders hide the
upper half of the face (eyes and brows, what a frontal Haar cascade needs) on chosen frames.

    make_photo_biovid(root, subjects=2, samples_per_class=2)   # samples.csv, video/, biosignals_filtered/

Each video's true face box per frame is written next to it (``<sample>.faces.json``: a list of
``[x, y, w, h]``), so a test can check that a crop contains the face.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtpkdot.atomic import atomic_write_csv

WIDTH, HEIGHT, FPS, DURATION = 1388, 1038, 25, 5.5
SIGNAL_RATE = 512
BIO_COLUMNS = ("gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")


@dataclass(frozen=True)
class Motion:
    """How the face moves in one video: centre (pixels), scale, drift and zoom amplitudes, hidden frames."""

    cx: float
    cy: float
    scale: float
    drift: float = 40.0  # peak horizontal displacement in pixels (half of it vertically)
    zoom: float = 0.1  # peak relative scale change
    hidden: tuple[tuple[int, int], ...] = ()  # frame ranges [a, b) whose face is partly covered


def face_photo() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photograph (RGB uint8) and its face box (x, y, w, h), measured once on the photo itself."""
    import cv2
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        img = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    # the frontal Haar cascade's box on the 512 x 600 photo (a fixed constant: no detector at render time)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (155, 105, 222, 222)


def background(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A fixed camera's background: smooth colour gradient plus blurred texture (RGB uint8)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    tilt = rng.uniform(-50, 50, 3).astype(np.float32)
    img = base + tilt * (xx / width)[..., None] + (tilt[::-1] * (yy / height)[..., None])
    tex = cv2.GaussianBlur(rng.normal(0, 25, (height, width)).astype(np.float32), (0, 0), 6)
    return np.clip(img + tex[..., None], 0, 255).astype(np.uint8)


def _frame_pose(motion: Motion, t: int, n: int) -> tuple[float, float, float]:
    phase = 2 * np.pi * t / max(n, 1)
    s = motion.scale * (1 + motion.zoom * np.sin(phase))
    return motion.cx + motion.drift * np.sin(phase * 1.3), motion.cy + motion.drift * 0.5 * np.sin(phase), s


def render_frames(
    photo: np.ndarray, face: tuple[int, int, int, int], back: np.ndarray, motion: Motion, n: int
) -> tuple[list[np.ndarray], list[list[int]]]:
    """``n`` frames of the photo over ``back`` following ``motion``; also each frame's true face box."""
    import cv2

    frames, boxes = [], []
    height, width = back.shape[:2]
    for t in range(n):
        cx, cy, s = _frame_pose(motion, t, n)
        img = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        # the photo's face centre lands on (cx, cy)
        x0 = int(round(cx - (face[0] + face[2] / 2) * s))
        y0 = int(round(cy - (face[1] + face[3] / 2) * s))
        frame = back.copy()
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        frame[ya:yb, xa:xb] = img[ya - y0 : yb - y0, xa - x0 : xb - x0]
        box = [x0 + face[0] * s, y0 + face[1] * s, face[2] * s, face[3] * s]
        if any(a <= t < b for a, b in motion.hidden):
            # a hand over the upper half of the face: eyes and brows gone, mouth and chin visible
            bx, by, bw, bh = (int(round(v)) for v in box)
            frame[max(by - bh // 10, 0) : by + bh // 2, max(bx - bw // 10, 0) : bx + bw + bw // 10] = (
                200,
                160,
                140,
            )
        frames.append(frame)
        boxes.append([round(v, 1) for v in box])
    return frames, boxes


def write_h264(
    path: Path,
    frames: list[np.ndarray],
    fps: int = FPS,
    preset: str = "superfast",
    bframes: int | None = None,
) -> None:
    """Encode RGB frames to H.264 mp4 (``preset`` superfast: CABAC and B-frames, like camera output;
    ``bframes``: x264's number of B-frames between references instead of the preset's 3)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        vs.options = {"preset": preset, "crf": "23"}
        if bframes is not None:
            vs.options = {**vs.options, "x264-params": f"bframes={bframes}"}
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(pkt)
        for pkt in vs.encode():
            container.mux(pkt)
    tmp.replace(path)


def write_bio_csv(path: Path, rng: np.random.Generator, duration: float) -> None:
    """Biovid's biosignal CSV: tab separated, ``time`` in microseconds, five channels at 512 Hz."""
    n = int(round(duration * SIGNAL_RATE))
    time_us = np.round(np.arange(n) * 1e6 / SIGNAL_RATE)
    data = rng.normal(0, 1, (n, len(BIO_COLUMNS))).cumsum(axis=0) * 0.01
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as fh:
        fh.write("\t".join(["time", *BIO_COLUMNS]) + "\n")
        np.savetxt(
            fh, np.column_stack([time_us, data]), fmt=["%d"] + ["%.5f"] * len(BIO_COLUMNS), delimiter="\t"
        )
    tmp.replace(path)


def sample_motion(
    rng: np.random.Generator, seat: tuple[float, float, float], hidden: tuple[tuple[int, int], ...]
) -> Motion:
    """One sample's motion: the subject's seat (centre, scale) plus a small per-sample shift."""
    cx, cy, s = seat
    return Motion(
        cx + rng.uniform(-20, 20), cy + rng.uniform(-15, 15), s * rng.uniform(0.95, 1.05), hidden=hidden
    )


def hidden_frames(k: int, n: int, hidden_every: int, partly_every: int) -> tuple[tuple[int, int], ...]:
    """Frame ranges covered in the k-th sample of a subject: the whole clip every ``hidden_every``-th
    sample (no frame shows the eyes), else the start, middle and end (where the first probes look)
    every ``partly_every``-th sample."""
    if hidden_every and k % hidden_every == 1:
        return ((0, n),)
    if partly_every and k % partly_every == 0:
        return ((0, n // 5), (2 * n // 5, 3 * n // 5), (4 * n // 5, n))
    return ()


def make_photo_biovid(
    root: str | Path,
    subjects: int = 2,
    samples_per_class: int = 2,
    duration: float = DURATION,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    hidden_every: int = 0,
    partly_every: int = 0,
    blind_subjects: int = 0,
    seed: int = 0,
    bframes: int | None = None,
) -> Path:
    """Write a Biovid part-B layout (BL1 and PA4) of face-photo videos under ``root``; returns ``root``.

    ``hidden_every`` / ``partly_every`` cover the upper half of the face in some samples of each subject
    (:func:`hidden_frames`); the last ``blind_subjects`` subjects have it covered in every frame of every
    sample (no detector can find them). ``bframes``: see :func:`write_h264`. Existing files are reused (a
    finished video or CSV is not rendered again), so a benchmark can call this every run.
    """
    import pandas as pd

    root = Path(root)
    photo, face = face_photo()
    width, height = size
    n = int(round(duration * FPS))
    rows = []
    for s in range(subjects):
        rng = np.random.default_rng([seed, s])
        subject = f"{100000 + s:06d}_m_{30 + s}"
        seat = (
            width * rng.uniform(0.4, 0.6),
            height * rng.uniform(0.42, 0.55),
            height / 1038 * rng.uniform(1.0, 1.3),
        )
        back = background(seed * 1000 + s, width, height)
        for k in range(2 * samples_per_class):
            cls = ("BL1", "PA4")[k % 2]
            name = f"{subject}-{cls}-{k:03d}"
            hidden = (
                ((0, n),)
                if s >= subjects - blind_subjects
                else hidden_frames(k, n, hidden_every, partly_every)
            )
            motion = sample_motion(rng, seat, hidden)
            video = root / "video" / subject / f"{name}.mp4"
            if not video.is_file():
                frames, boxes = render_frames(photo, face, back, motion, n)
                video.parent.mkdir(parents=True, exist_ok=True)
                video.with_suffix(".faces.json").write_text(
                    json.dumps(boxes)
                )  # before the video: reuse needs both
                write_h264(video, frames, bframes=bframes)
            bio = root / "biosignals_filtered" / subject / f"{name}_bio.csv"
            if not bio.is_file():
                write_bio_csv(bio, np.random.default_rng([seed, s, k]), duration)
            rows.append(
                {
                    "subject_id": s,
                    "subject_name": subject,
                    "class_id": 0 if cls == "BL1" else 4,
                    "class_name": cls,
                    "sample_id": len(rows),
                    "sample_name": name,
                }
            )
    atomic_write_csv(pd.DataFrame(rows), root / "samples.csv", sep="\t")  # never half an index
    return root


def true_boxes(video: str | Path) -> np.ndarray:
    """The true face box per frame (n x 4: x, y, w, h) written next to a rendered video."""
    return np.asarray(json.loads(Path(video).with_suffix(".faces.json").read_text()), dtype=float)
