"""Embedded synthetic datasets, written in the real on-disk layouts (DESIGN.md section 5).

``synth_biovid`` writes the Biovid official layout (``samples.csv``, mp4 videos, tab-separated 512 Hz
biosignal CSVs with time in microseconds); ``synth_affwild2`` writes the ABAW layout (cropped-aligned
frame folders, ``valence,arousal`` annotation files with -5 gaps, raw videos with an AAC audio track,
one ``_left``/``_right`` pair sharing a raw video). The generative model is documented in docs/data.md;
its strengths are knobs, not tuned for any method. Everything is deterministic from ``seed``: each
subject (video) draws from its own generator seeded by ``(seed, index)``, so adding subjects does not
change the existing ones.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtpkdot.config import SYNTH_DEFAULTS, SynthConfig

BIOVID_CLASSES = ["BL1", "PA1", "PA2", "PA3", "PA4"]
BIOVID_INTENSITY = [0.0, 0.25, 0.5, 0.75, 1.0]
SIGNAL_RATE = 512
AUDIO_RATE = 16000
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_ONE = 1 << _SHIFT
FLUSH = 0.06  # skin reddening per unit of shared latent at shared=1 (faint: fixed before any method result)


# ----------------------------------------------------------------------------------------------- faces
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


def _face_params(rng: np.random.Generator) -> FaceParams:
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


def _finish_frame(img: np.ndarray, gain: float, slope: float, noise: np.ndarray, angle: float) -> np.ndarray:
    """Head roll, lighting (gain and a horizontal gradient) and sensor noise."""
    import cv2

    h, w = img.shape[:2]
    if abs(angle) > 1e-3:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    ramp = 1.0 + slope * np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    out = img * (gain * ramp) + noise
    return np.clip(out, 0, 255).astype(np.uint8)


def _smooth_walk(rng: np.random.Generator, n: int, scale: float, smooth: int = 8) -> np.ndarray:
    """A smooth random trajectory (head motion): cumulated noise, moving-averaged, centred."""
    steps = rng.normal(0, 1, n + smooth).cumsum()
    walk = np.convolve(steps, np.ones(smooth) / smooth, mode="valid")[:n]
    walk = walk - walk.mean()
    return scale * walk / (np.abs(walk).max() + 1e-9)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# ------------------------------------------------------------------------------------------- encoding
def _open_video(path: Path, width: int, height: int, fps: int, audio: bool = False) -> tuple[Any, Any, Any]:
    import av

    container = av.open(str(path), "w")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    vs = container.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        vs.options = {"preset": "ultrafast", "crf": "20"}
    aus = None
    if audio:
        aus = container.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "mono"
    return container, vs, aus


def write_video(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None) -> None:
    """Encode ``frames`` (T x H x W x 3 uint8) to mp4 with PyAV; optional mono float audio at 16 kHz (AAC)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    container, vs, aus = _open_video(path, frames.shape[2], frames.shape[1], fps, audio is not None)
    try:
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(pkt)
        for pkt in vs.encode():
            container.mux(pkt)
        if aus is not None and audio is not None:
            pts = 0
            for i in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[i : i + 1024], dtype=np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts = AUDIO_RATE, pts
                pts += chunk.shape[1]
                for pkt in aus.encode(af):
                    container.mux(pkt)
            for pkt in aus.encode():
                container.mux(pkt)
    finally:
        container.close()


# -------------------------------------------------------------------------------------------- biovid
def _subject_name(rng: np.random.Generator, index: int) -> str:
    sex = "m" if rng.random() < 0.5 else "w"
    return f"{(index + 1) * 1000 + int(rng.integers(0, 1000)):06d}_{sex}_{int(rng.integers(18, 66))}"


def _bandlimited_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(4, [low, high], btype="bandpass", fs=SIGNAL_RATE, output="sos")
    x = signal.sosfilt(sos, rng.normal(0, 1, n + 256))[256:]
    return x / (x.std() + 1e-9)


def _biosignals(
    rng: np.random.Generator, subj: dict[str, Any], effect: float, onset: float, duration: float, part: str
) -> dict[str, np.ndarray]:
    """One sample's biosignals at 512 Hz (see docs/data.md, "Synthetic Biovid"); the draws from ``rng``
    happen in this order: EDA, ECG, EMG."""
    t = np.arange(int(round(duration * SIGNAL_RATE))) / SIGNAL_RATE
    out = {"gsr": _eda(rng, t, subj, effect, onset, duration), "ecg": _ecg(rng, t, subj, effect, onset)}
    out.update(_emg(rng, t, subj["emg_level"], effect, onset, duration, part))
    return out


def _eda(
    rng: np.random.Generator,
    t: np.ndarray,
    subj: dict[str, Any],
    effect: float,
    onset: float,
    duration: float,
) -> np.ndarray:
    """EDA: tonic level and drift, the phasic response to the stimulus (latency 1.5-3 s), spontaneous
    responses in every class, sensor noise."""
    latency = rng.uniform(1.5, 3.0)
    tau = np.clip(t - onset - latency, 0, None)
    scr = (1 - np.exp(-tau / 0.75)) * np.exp(-tau / 4.0)  # rise 0.75 s, decay 4 s
    gsr = subj["eda_level"] + rng.normal(0, 0.05) * t + 1.2 * subj["eda_gain"] * effect * scr
    for _ in range(int(rng.integers(0, 3))):
        tau_s = np.clip(t - rng.uniform(0, duration), 0, None)
        gsr += rng.uniform(0.05, 0.5) * (1 - np.exp(-tau_s / 0.75)) * np.exp(-tau_s / 4.0)
    return gsr + rng.normal(0, 0.01, len(t))


def _ecg(
    rng: np.random.Generator, t: np.ndarray, subj: dict[str, Any], effect: float, onset: float
) -> np.ndarray:
    """ECG: a PQRST template on a beat phase; the heart rate rises a little with the response."""
    hr = subj["heart_rate"] * (1 + 0.08 * effect * _smoothstep((t - onset - 1.0) / 1.5))
    u = (np.cumsum(hr / 60.0) / SIGNAL_RATE + rng.uniform()) % 1.0

    def bump(c: float, w: float) -> np.ndarray:
        return np.exp(-0.5 * ((u - c) / w) ** 2)

    ecg = 0.12 * bump(0.2, 0.025) - 0.1 * bump(0.37, 0.008) + 1.0 * bump(0.4, 0.01)
    return ecg + (-0.2 * bump(0.43, 0.01) + 0.3 * bump(0.65, 0.04) + rng.normal(0, 0.02, len(t)))


def _emg(
    rng: np.random.Generator,
    t: np.ndarray,
    base: float,
    effect: float,
    onset: float,
    duration: float,
    part: str,
) -> dict[str, np.ndarray]:
    """EMG: band-limited noise (20-200 Hz) times an envelope; the corrugator (and, weaker, the trapezius)
    bursts with the response, the zygomaticus (part B) bursts at random (a distractor)."""
    n = len(t)
    env_pain = (
        effect
        * _smoothstep((t - onset - 0.2) / 0.4)
        * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    )
    out = {"emg_trapezius": (base + 4.0 * env_pain) * _bandlimited_noise(rng, n, 20, 200)}
    if part == "B":
        out["emg_corrugator"] = (base + 12.0 * env_pain) * _bandlimited_noise(rng, n, 20, 200)
        zyg = np.zeros(n)
        for _ in range(int(rng.integers(0, 3))):
            c, w = rng.uniform(0, duration), rng.uniform(0.2, 0.8)
            zyg += rng.uniform(3, 10) * np.exp(-0.5 * ((t - c) / w) ** 2)
        out["emg_zygomaticus"] = (base + zyg) * _bandlimited_noise(rng, n, 20, 200)
    return out


def _write_bio_csv(path: Path, signals: dict[str, np.ndarray]) -> None:
    n = len(next(iter(signals.values())))
    time_us = np.round(np.arange(n) * 1e6 / SIGNAL_RATE).astype(np.int64)
    cols = list(signals)
    data = np.column_stack([signals[c] for c in cols])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\t".join(["time", *cols]) + "\n")
        body = np.column_stack([time_us.astype(np.float64), data])
        np.savetxt(fh, body, fmt=["%d"] + ["%.5f"] * len(cols), delimiter="\t")


def _subject_traits(rng: np.random.Generator, non_responders: float) -> dict[str, Any]:
    """How one subject responds (0 for a non-responder, per modality) and its physiological baselines."""
    return {
        "resp_video": 0.0 if rng.random() < non_responders else rng.uniform(0.4, 1.0),
        "resp_physio": 0.0 if rng.random() < non_responders else rng.uniform(0.4, 1.0),
        "eda_level": rng.uniform(2.0, 15.0),
        "eda_gain": rng.uniform(0.6, 1.4),
        "heart_rate": rng.uniform(55, 85),
        "emg_level": rng.uniform(2.0, 6.0),
        "talker": rng.uniform(0.0, 1.0),
    }


def _biovid_subject(out: Path, cfg: SynthConfig, s: int, classes: list[int]) -> list[dict[str, Any]]:
    """Generate every sample of subject ``s``; returns its samples.csv rows."""
    rng = np.random.default_rng([cfg.seed, s])
    name = _subject_name(rng, s)
    face = _face_params(rng)
    subj = _subject_traits(rng, cfg.non_responders)
    rows = []
    for c in classes:
        for k in range(cfg.samples_per_class):
            sample_name = f"{name}-{BIOVID_CLASSES[c]}-{k + 1:03d}"
            srng = np.random.default_rng([cfg.seed, s, c, k])
            z = biovid_latent(cfg.seed, s, c, k)
            _biovid_sample(out, name, sample_name, cfg, face, subj, srng, BIOVID_INTENSITY[c], z)
            rows.append(
                {
                    "subject_id": s,
                    "subject_name": name,
                    "class_id": c,
                    "class_name": BIOVID_CLASSES[c],
                    "sample_name": sample_name,
                }
            )
    return rows


def _biovid_sample(
    out: Path,
    subject: str,
    sample: str,
    cfg: SynthConfig,
    face: FaceParams,
    subj: dict[str, Any],
    srng: np.random.Generator,
    intensity: float,
    latent: float,
) -> None:
    """Write one sample's video and biosignal CSV; the sample's response varies around the subject's.
    A share ``cfg.shared`` of the physiological response's per-sample variation is the ``latent``, which
    the face also shows as a faint flush (at shared=0, neither: the data of before the knob)."""
    onset = srng.uniform(0.5, 1.5)
    ev = cfg.video_strength * subj["resp_video"] * intensity * max(0.0, 1 + 0.35 * srng.normal())
    own = max(0.0, 1 + 0.35 * srng.normal())  # the response's own per-sample variation
    mix = own if cfg.shared == 0 else (1 - cfg.shared) * own + cfg.shared * latent
    ep = cfg.physio_strength * subj["resp_physio"] * intensity * mix
    frames = _biovid_frames(
        srng, cfg, face, subj["talker"], ev, onset, FLUSH * cfg.shared * intensity * latent
    )
    write_video(out / "video" / subject / f"{sample}.mp4", frames, cfg.fps)
    bio = _biosignals(srng, subj, ep, onset, cfg.duration, cfg.part)
    _write_bio_csv(out / "biosignals_filtered" / subject / f"{sample}_bio.csv", bio)


def _biovid_frames(
    srng: np.random.Generator,
    cfg: SynthConfig,
    face: FaceParams,
    talker: float,
    ev: float,
    onset: float,
    flush: float = 0.0,
) -> np.ndarray:
    """A sample's video frames: the facial response of strength ``ev`` after ``onset``, and nuisances
    independent of the label (head motion, roll, lighting, blinks, talking, sensor noise). ``flush``
    (the shared latent's trace, no draws) reddens the skin slowly after the onset."""
    size, fps = cfg.size, cfg.fps
    n_frames = int(round(cfg.duration * fps))
    t = np.arange(n_frames) / fps
    expr = min(ev, 2.0) * _smoothstep((t - onset - 0.3) / 0.6)
    hx, hy = _smooth_walk(srng, n_frames, 0.04), _smooth_walk(srng, n_frames, 0.03)
    roll = _smooth_walk(srng, n_frames, 4.0)
    gain, slope = srng.uniform(0.75, 1.25), srng.uniform(-0.15, 0.15)
    blink = np.zeros(n_frames)
    for b in srng.uniform(0, cfg.duration, size=int(srng.integers(0, 3))):
        blink[np.abs(t - b) < 0.08] = 1
    talk = talker * srng.uniform(0, 0.03) * (0.5 + 0.5 * np.sin(2 * np.pi * srng.uniform(3, 5) * t))
    # sensor noise: a bank of 16 noise images drawn per sample, picked at random per frame (cheap)
    bank = srng.standard_normal(size=(16, size, size, 3), dtype=np.float32) * np.float32(6.0)
    pick = srng.integers(0, 16, size=n_frames)
    redden = flush * _smoothstep((t - onset - 1.0) / 1.5)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        img = np.empty((size, size, 3), np.float32)
        img[:] = face.background
        draw_face(
            img,
            _flushed(face, redden[i]) if flush else face,
            dx=hx[i],
            dy=hy[i],
            brow_drop=0.035 * expr[i],
            eye_open=(1 - 0.5 * min(expr[i], 1.5)) * (1 - blink[i]),
            mouth_open=0.03 * expr[i] + talk[i],
        )
        frames[i] = _finish_frame(img, gain, slope, bank[pick[i]], roll[i])
    return frames


def _flushed(face: FaceParams, amount: float) -> FaceParams:
    """The face with its skin reddened by ``amount`` (red up, green and blue down, relative)."""
    r, g, b = face.skin
    return replace(face, skin=(r * (1 + amount), g * (1 - 0.5 * amount), b * (1 - 0.5 * amount)))


def biovid_latent(seed: int, subject: int, class_id: int, k: int) -> float:
    """The shared latent of Biovid sample ``k`` of ``subject`` and class ``class_id``: its own draw
    ``g ~ U(0, 2)`` (mean 1 like the per-sample response multipliers, but with a within-class spread
    (sd 0.58) comparable to the class gap, so the latent says more than the label) from a child stream
    of the sample's seed sequence, so the sample's other draws stay as they were. Generated data scale
    it by the class intensity (0 for BL1); see docs/data.md."""
    child = np.random.SeedSequence([seed, subject, class_id, k]).spawn(1)[0]
    return float(np.random.default_rng(child).uniform(0.0, 2.0))


def _generate(out: Path, cfg: SynthConfig, kind: str, workers: int, progress: bool) -> Path:
    """Generate into a temporary sibling folder and rename it, so a reader never sees half a dataset."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if kind == "biovid":
            _fill_biovid(tmp, cfg, workers, progress)
        else:
            _fill_affwild2(tmp, cfg, workers, progress)
        (tmp / "synth.json").write_text(json.dumps({"kind": kind, **cfg.model_dump(mode="json")}, indent=1))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _map(fn: Any, jobs: list[Any], workers: int, progress: bool, desc: str) -> list[Any]:
    from tqdm import tqdm

    if workers <= 1:
        return [fn(*j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return list(
            tqdm(pool.imap(_star, [(fn, j) for j in jobs]), total=len(jobs), desc=desc, disable=not progress)
        )


def _star(item: tuple[Any, tuple[Any, ...]]) -> Any:
    fn, args = item
    return fn(*args)


def _fill_biovid(out: Path, cfg: SynthConfig, workers: int, progress: bool) -> None:
    import pandas as pd

    classes = list(range(5)) if cfg.five_class else [0, 4]
    jobs = [(out, cfg, s, classes) for s in range(cfg.subjects)]
    rows = [r for rs in _map(_biovid_subject, jobs, workers, progress, "synth biovid") for r in rs]
    df = pd.DataFrame(rows)
    df.insert(4, "sample_id", np.arange(len(df)))
    df = df[["subject_id", "subject_name", "class_id", "class_name", "sample_id", "sample_name"]]
    df.to_csv(out / "samples.csv", sep="\t", index=False)


def synth_biovid(
    out: str | Path, cfg: SynthConfig | None = None, workers: int = 1, progress: bool = False
) -> Path:
    """Write a synthetic Biovid-like dataset in the official layout into ``out`` (must be absent or empty).

    ``cfg.subjects`` subjects x (2 or 5) classes x ``cfg.samples_per_class`` samples; ``cfg.part`` "A"
    writes ``time gsr ecg emg_trapezius``, "B" adds ``emg_corrugator emg_zygomaticus``.
    """
    return _generate(Path(out), cfg or SynthConfig(), "biovid", workers, progress)


# ------------------------------------------------------------------------------------------ affwild2
def _va_trajectory(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Smooth valence or arousal in (-1, 1): a few slow sinusoids through tanh."""
    x = np.zeros_like(t)
    for _ in range(3):
        x += rng.uniform(0.3, 1.0) * np.sin(
            2 * np.pi * rng.uniform(0.03, 0.25) * t + rng.uniform(0, 2 * np.pi)
        )
    return np.tanh(x + rng.normal(0, 0.3))


def _voice(
    rng: np.random.Generator,
    t_audio: np.ndarray,
    fps: int,
    val: np.ndarray,
    aro: np.ndarray,
    strength: float,
    silent: bool,
) -> np.ndarray:
    """Speech-like audio of one person: harmonic bursts (syllables) whose pitch follows valence and whose
    loudness and syllable rate follow arousal (scaled by ``strength``); a silent person only breathes."""
    idx = np.minimum((t_audio * fps).astype(int), len(val) - 1)
    v, a = val[idx], aro[idx]
    if silent:
        return 0.01 * rng.normal(0, 1, len(t_audio)).astype(np.float32)
    f0 = rng.uniform(110, 220) * (1 + 0.25 * strength * v)
    phase = 2 * np.pi * np.cumsum(f0) / AUDIO_RATE
    tone = sum(np.sin(h * phase) / h for h in range(1, 6))
    rate = 3.0 + 1.5 * strength * a
    syll = np.clip(np.sin(2 * np.pi * np.cumsum(rate) / AUDIO_RATE), 0, None) ** 2
    loud = 0.08 * (1 + 0.8 * strength * a).clip(0.1, None)
    return (loud * syll * tone).astype(np.float32)


def _affwild2_video(out: Path, cfg: SynthConfig, i: int, split: str, paired: bool) -> list[dict[str, Any]]:
    """One raw video (with audio) and its one or two annotated persons."""
    rng = np.random.default_rng([cfg.seed, 1000 + i])
    size, fps = cfg.size, cfg.fps
    n = int(round(cfg.duration * rng.uniform(0.8, 1.2) * fps))
    t = np.arange(n) / fps
    people = 2 if paired else 1
    base = f"{i + 1}-{fps}-{size * people}x{size}"
    ids = [f"{base}_left", f"{base}_right"] if paired else [base]
    bg = rng.uniform(30, 200, size=3)
    t_audio = np.arange(int(round(n / fps * AUDIO_RATE))) / AUDIO_RATE
    audio = 0.01 * rng.normal(0, 1, len(t_audio)).astype(np.float32)
    canvas = np.empty((n, size, size * people, 3), np.float32)
    canvas[:] = bg
    persons = []
    for p in range(people):
        prng = np.random.default_rng([cfg.seed, 1000 + i, p])
        val, aro, voice = _affwild2_person(prng, cfg, canvas, p, t, t_audio, bg)
        audio += voice
        persons.append((val, aro))
    raw = _sensor_noise(canvas, np.random.default_rng([cfg.seed, 2000 + i]))
    batch = "batch1" if i % 2 == 0 else "batch2"
    write_video(out / "raw" / batch / f"{base}.mp4", raw, fps, audio=np.clip(audio, -1, 1))
    return [
        _write_person(out, rng, raw[:, :, p * size : (p + 1) * size], vid, split, *persons[p])
        for p, vid in enumerate(ids)
    ]


def _affwild2_person(
    prng: np.random.Generator,
    cfg: SynthConfig,
    canvas: np.ndarray,
    p: int,
    t: np.ndarray,
    t_audio: np.ndarray,
    bg: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw person ``p`` into its part of ``canvas``; returns its valence, arousal and voice. A poker
    face (video) and a silent person (audio) carry none of the affect, independently."""
    size = cfg.size
    face = _face_params(prng)
    face.background = tuple(bg)  # type: ignore[assignment]
    val, aro = _va_trajectory(prng, t), _va_trajectory(prng, t)
    flat = prng.random() < cfg.non_responders
    silent = prng.random() < cfg.non_responders
    ev = 0.0 if flat else cfg.video_strength * prng.uniform(0.5, 1.0)
    hx = _smooth_walk(prng, len(t), 0.03) * (1 + ev * np.clip(aro, 0, None))
    hy = _smooth_walk(prng, len(t), 0.02)
    for k in range(len(t)):
        draw_face(
            canvas[k],
            face,
            origin_x=p * size,
            side=size,
            dx=hx[k],
            dy=hy[k],
            brow_drop=-0.02 * ev * val[k],
            eye_open=1 + 0.4 * ev * aro[k],
            mouth_open=0.02 * ev * max(aro[k], 0),
            smile=ev * val[k],
        )
    return val, aro, _voice(prng, t_audio, cfg.fps, val, aro, cfg.physio_strength, silent)


def _sensor_noise(canvas: np.ndarray, noise_rng: np.random.Generator) -> np.ndarray:
    """The raw video's frames: ``canvas`` plus fresh sensor noise per frame, as uint8."""
    raw = np.empty(canvas.shape, np.uint8)
    for k in range(len(canvas)):
        noise = noise_rng.standard_normal(canvas[k].shape, dtype=np.float32) * np.float32(5.0)
        raw[k] = _finish_frame(canvas[k], 1.0, 0.0, noise, 0.0)
    return raw


def _write_person(
    out: Path,
    rng: np.random.Generator,
    crops: np.ndarray,
    vid: str,
    split: str,
    val: np.ndarray,
    aro: np.ndarray,
) -> dict[str, Any]:
    """One person's cropped-aligned frames (a few may lack a detected face) and VA annotation file
    (some frames unannotated, -5, as in the real release)."""
    import cv2

    n = len(crops)
    crop_dir = out / "cropped_aligned" / vid
    crop_dir.mkdir(parents=True, exist_ok=True)
    drop = set()
    if rng.random() < 0.5:  # a short run of frames without a detected face
        d0 = int(rng.integers(0, max(1, n - 5)))
        drop = set(range(d0, d0 + int(rng.integers(1, 4))))
    for k in range(n):
        if k not in drop:
            cv2.imwrite(str(crop_dir / f"{k + 1:05d}.jpg"), cv2.cvtColor(crops[k], cv2.COLOR_RGB2BGR))
    lines = [f"{v:.3f},{a:.3f}" for v, a in zip(val, aro, strict=True)]
    if rng.random() < 0.6:  # unannotated frames (-5), masked from loss and metric
        g0 = int(rng.integers(0, max(1, n - n // 20)))
        for k in range(g0, min(n, g0 + max(2, n // 25))):
            lines[k] = "-5,-5"
    ann = out / "annotations" / "VA_Estimation_Challenge" / split / f"{vid}.txt"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text("valence,arousal\n" + "\n".join(lines) + "\n")
    return {"video_id": vid, "split": split}


def _fill_affwild2(out: Path, cfg: SynthConfig, workers: int, progress: bool) -> None:
    rng = np.random.default_rng([cfg.seed, 999])
    n = cfg.subjects
    order = rng.permutation(n)
    n_val = max(1, int(round(0.3 * n)))
    splits = {int(v): ("Validation_Set" if r < n_val else "Train_Set") for r, v in enumerate(order)}
    if n - n_val < 2:
        raise ValueError(f"synthetic affwild2 needs at least 3 videos (subjects), got {n}")
    jobs = [(out, cfg, i, splits[i], i == 1) for i in range(n)]  # video 2 holds a _left/_right pair
    _map(_affwild2_video, jobs, workers, progress, "synth affwild2")


def synth_affwild2(
    out: str | Path, cfg: SynthConfig | None = None, workers: int = 1, progress: bool = False
) -> Path:
    """Write a synthetic Affwild2-like dataset in the ABAW layout into ``out`` (absent or empty).

    ``cfg.subjects`` raw videos (about 70 % Train_Set, 30 % Validation_Set), each about ``cfg.duration``
    seconds; ``video_strength`` scales the facial expression of valence/arousal, ``physio_strength`` the
    audio's (the privileged modality here).
    """
    cfg = cfg or SynthConfig(**SYNTH_DEFAULTS["affwild2"])
    if cfg.shared:
        raise ValueError(
            f"synthetic affwild2: shared={cfg.shared} is not implemented (Biovid layout only); use 0"
        )
    return _generate(Path(out), cfg, "affwild2", workers, progress)


# ------------------------------------------------------------------------------------------- readers
def ensure_generated(data_cfg: Any, kind: str) -> Path:
    """Generate into ``data.root`` when it is missing or empty (with ``data.synthetic`` settings)."""
    import warnings

    if data_cfg.root is None:
        raise ValueError(f"data.root must be set for dataset 'synthetic_{kind}' (where to generate it)")
    root = Path(data_cfg.root)
    cfg = data_cfg.synthetic or SynthConfig(**SYNTH_DEFAULTS[kind])
    if not root.exists() or not any(root.iterdir()):
        gen = synth_biovid if kind == "biovid" else synth_affwild2
        gen(root, cfg, workers=data_cfg.workers, progress=True)
    else:
        stamp = root / "synth.json"
        if stamp.is_file():
            old = json.loads(stamp.read_text())
            old.pop("kind", None)
            if old != cfg.model_dump(mode="json"):
                warnings.warn(
                    f"{root} was generated with other synthetic settings than data.synthetic; using it as is "
                    "(delete the folder to regenerate)",
                    stacklevel=2,
                )
    return root
