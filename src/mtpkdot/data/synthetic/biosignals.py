"""Synthetic Biovid biosignals at 512 Hz (EDA, ECG, EMG; see docs/data.md, "Synthetic Biovid") and their
tab-separated CSV with time in microseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtpkdot.data.synthetic.faces import smoothstep

SIGNAL_RATE = 512


def _bandlimited_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(4, [low, high], btype="bandpass", fs=SIGNAL_RATE, output="sos")
    x = signal.sosfilt(sos, rng.normal(0, 1, n + 256))[256:]
    return x / (x.std() + 1e-9)


def sample_biosignals(
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
    hr = subj["heart_rate"] * (1 + 0.08 * effect * smoothstep((t - onset - 1.0) / 1.5))
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
        effect * smoothstep((t - onset - 0.2) / 0.4) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
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


def write_bio_csv(path: Path, signals: dict[str, np.ndarray]) -> None:
    n = len(next(iter(signals.values())))
    time_us = np.round(np.arange(n) * 1e6 / SIGNAL_RATE).astype(np.int64)
    cols = list(signals)
    data = np.column_stack([signals[c] for c in cols])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\t".join(["time", *cols]) + "\n")
        body = np.column_stack([time_us.astype(np.float64), data])
        np.savetxt(fh, body, fmt=["%d"] + ["%.5f"] * len(cols), delimiter="\t")
