"""The cartoon face renderer of the synthetic datasets: per-person appearance, one face drawn per frame,
head roll, lighting and sensor noise, and the smooth trajectories that move it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_ONE = 1 << _SHIFT


@dataclass
class FaceParams:
    """Per-person appearance (drawn once per subject)."""

    skin: tuple[float, float, float]
    background: tuple[float, float, float]
    cx: float  # face centre offset, fraction of the image side
    cy: float
    face_w: float  # half axes, fractions of the side
    face_h: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_w: float
    mouth_y: float
    mouth_w: float
    mouth_h: float


def face_params(rng: np.random.Generator) -> FaceParams:
    tone = rng.uniform(0.35, 0.9)
    skin = (255 * tone, 200 * tone + 20, 170 * tone + 20)
    bg = tuple(float(v) for v in rng.uniform(30, 200, size=3))
    return FaceParams(
        skin=skin,
        background=bg,  # type: ignore[arg-type]
        cx=rng.uniform(-0.04, 0.04),
        cy=rng.uniform(-0.03, 0.03),
        face_w=rng.uniform(0.28, 0.34),
        face_h=rng.uniform(0.38, 0.44),
        eye_dx=rng.uniform(0.11, 0.14),
        eye_y=rng.uniform(-0.1, -0.06),
        eye_w=rng.uniform(0.05, 0.07),
        eye_h=rng.uniform(0.025, 0.04),
        brow_gap=rng.uniform(0.05, 0.08),
        brow_w=rng.uniform(0.06, 0.08),
        mouth_y=rng.uniform(0.17, 0.21),
        mouth_w=rng.uniform(0.08, 0.12),
        mouth_h=rng.uniform(0.008, 0.02),
    )


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def draw_face(
    img: np.ndarray,
    p: FaceParams,
    *,
    origin_x: float = 0.0,
    side: float | None = None,
    dx: float = 0.0,
    dy: float = 0.0,
    brow_drop: float = 0.0,
    eye_open: float = 1.0,
    mouth_open: float = 0.0,
    smile: float = 0.0,
) -> None:
    """Draw one cartoon face in place. Offsets are fractions of ``side``; ``brow_drop`` lowers the brows
    (inner ends more: a frown), ``eye_open`` scales the eye height, ``mouth_open`` adds mouth height,
    ``smile`` in [-1, 1] bends the mouth corners up (positive) or down."""
    import cv2

    s = float(side or img.shape[0])
    cx, cy = origin_x + s * (0.5 + p.cx + dx), s * (0.5 + p.cy + dy)
    aa = cv2.LINE_AA
    cv2.ellipse(img, _pt(cx, cy), _pt(s * p.face_w, s * p.face_h), 0, 0, 360, p.skin, -1, aa, _SHIFT)
    eye_col = (25.0, 20.0, 20.0)
    brow_col = (60.0, 40.0, 30.0)
    thick = max(1, int(round(s * 0.025)))
    for sign in (-1, 1):
        ex, ey = cx + sign * s * p.eye_dx, cy + s * p.eye_y
        eh = max(0.3, s * p.eye_h * max(eye_open, 0.05))
        cv2.ellipse(img, _pt(ex, ey), _pt(s * p.eye_w, eh), 0, 0, 360, eye_col, -1, aa, _SHIFT)
        by = ey - s * p.brow_gap + s * brow_drop
        inner = (ex - sign * s * p.brow_w, by + s * brow_drop * 0.6)
        outer = (ex + sign * s * p.brow_w, by - s * brow_drop * 0.2)
        cv2.line(img, _pt(*inner), _pt(*outer), brow_col, thick, aa, _SHIFT)
    my = cy + s * p.mouth_y
    mw, mh = s * p.mouth_w, s * (p.mouth_h + mouth_open)
    cv2.ellipse(img, _pt(cx, my), _pt(mw, max(mh, 0.5)), 0, 0, 360, (110.0, 30.0, 40.0), -1, aa, _SHIFT)
    if abs(smile) > 0.02:  # the corners: an arc through the mouth ends, bent up or down
        bend = s * 0.04 * abs(smile)
        start, end = (0, 180) if smile > 0 else (180, 360)
        cv2.ellipse(
            img,
            _pt(cx, my - np.sign(smile) * bend * 0.5),
            _pt(mw * 1.1, bend),
            0,
            start,
            end,
            (110.0, 30.0, 40.0),
            thick,
            aa,
            _SHIFT,
        )


def finish_frame(img: np.ndarray, gain: float, slope: float, noise: np.ndarray, angle: float) -> np.ndarray:
    """Head roll, lighting (gain and a horizontal gradient) and sensor noise."""
    import cv2

    h, w = img.shape[:2]
    if abs(angle) > 1e-3:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    ramp = 1.0 + slope * np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    out = img * (gain * ramp) + noise
    return np.clip(out, 0, 255).astype(np.uint8)


def smooth_walk(rng: np.random.Generator, n: int, scale: float, smooth: int = 8) -> np.ndarray:
    """A smooth random trajectory (head motion): cumulated noise, moving-averaged, centred."""
    steps = rng.normal(0, 1, n + smooth).cumsum()
    walk = np.convolve(steps, np.ones(smooth) / smooth, mode="valid")[:n]
    walk = walk - walk.mean()
    return scale * walk / (np.abs(walk).max() + 1e-9)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
