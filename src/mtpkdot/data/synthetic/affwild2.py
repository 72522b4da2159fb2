"""The synthetic Affwild2 generator: raw videos with an audio track (one holding a ``_left``/``_right`` pair),
cropped-aligned frame folders and ``valence,arousal`` annotation files with -5 gaps (the ABAW layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtpkdot.config import SYNTH_DEFAULTS, SynthConfig
from mtpkdot.data.synthetic.faces import draw_face, face_params, finish_frame, smooth_walk
from mtpkdot.data.synthetic.generate import generate_into, map_jobs
from mtpkdot.data.synthetic.media import AUDIO_RATE, write_video


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
    face = face_params(prng)
    face.background = tuple(bg)  # type: ignore[assignment]
    val, aro = _va_trajectory(prng, t), _va_trajectory(prng, t)
    flat = prng.random() < cfg.non_responders
    silent = prng.random() < cfg.non_responders
    ev = 0.0 if flat else cfg.video_strength * prng.uniform(0.5, 1.0)
    hx = smooth_walk(prng, len(t), 0.03) * (1 + ev * np.clip(aro, 0, None))
    hy = smooth_walk(prng, len(t), 0.02)
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
        raw[k] = finish_frame(canvas[k], 1.0, 0.0, noise, 0.0)
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
    map_jobs(_affwild2_video, jobs, workers, progress, "synth affwild2")


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
    return generate_into(Path(out), cfg, "affwild2", _fill_affwild2, workers, progress)
