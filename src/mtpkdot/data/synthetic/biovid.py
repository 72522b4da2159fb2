"""The synthetic Biovid generator: per subject a face, traits and, per sample, a video and a biosignal CSV,
in the official layout (``samples.csv``, ``video/``, ``biosignals_filtered/``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mtpkdot.config import SynthConfig
from mtpkdot.data.synthetic.biosignals import sample_biosignals, write_bio_csv
from mtpkdot.data.synthetic.faces import (
    FaceParams,
    draw_face,
    face_params,
    finish_frame,
    smooth_walk,
    smoothstep,
)
from mtpkdot.data.synthetic.generate import generate_into, map_jobs
from mtpkdot.data.synthetic.media import write_video

BIOVID_CLASSES = ["BL1", "PA1", "PA2", "PA3", "PA4"]
BIOVID_INTENSITY = [0.0, 0.25, 0.5, 0.75, 1.0]
FLUSH = 0.06  # skin reddening per unit of shared latent at shared=1 (faint: fixed before any method result)


def _subject_name(rng: np.random.Generator, index: int) -> str:
    sex = "m" if rng.random() < 0.5 else "w"
    return f"{(index + 1) * 1000 + int(rng.integers(0, 1000)):06d}_{sex}_{int(rng.integers(18, 66))}"


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
    face = face_params(rng)
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
    bio = sample_biosignals(srng, subj, ep, onset, cfg.duration, cfg.part)
    write_bio_csv(out / "biosignals_filtered" / subject / f"{sample}_bio.csv", bio)


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
    expr = min(ev, 2.0) * smoothstep((t - onset - 0.3) / 0.6)
    hx, hy = smooth_walk(srng, n_frames, 0.04), smooth_walk(srng, n_frames, 0.03)
    roll = smooth_walk(srng, n_frames, 4.0)
    gain, slope = srng.uniform(0.75, 1.25), srng.uniform(-0.15, 0.15)
    blink = np.zeros(n_frames)
    for b in srng.uniform(0, cfg.duration, size=int(srng.integers(0, 3))):
        blink[np.abs(t - b) < 0.08] = 1
    talk = talker * srng.uniform(0, 0.03) * (0.5 + 0.5 * np.sin(2 * np.pi * srng.uniform(3, 5) * t))
    # sensor noise: a bank of 16 noise images drawn per sample, picked at random per frame (cheap)
    bank = srng.standard_normal(size=(16, size, size, 3), dtype=np.float32) * np.float32(6.0)
    pick = srng.integers(0, 16, size=n_frames)
    redden = flush * smoothstep((t - onset - 1.0) / 1.5)
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
        frames[i] = finish_frame(img, gain, slope, bank[pick[i]], roll[i])
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


def _fill_biovid(out: Path, cfg: SynthConfig, workers: int, progress: bool) -> None:
    import pandas as pd

    classes = list(range(5)) if cfg.five_class else [0, 4]
    jobs = [(out, cfg, s, classes) for s in range(cfg.subjects)]
    rows = [r for rs in map_jobs(_biovid_subject, jobs, workers, progress, "synth biovid") for r in rs]
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
    return generate_into(Path(out), cfg or SynthConfig(), "biovid", _fill_biovid, workers, progress)
