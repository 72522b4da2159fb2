"""Audio: decode the sound track of a video with PyAV, DFT spectrograms per clip.

The paper (section IV, Affwild2) feeds ResNet-18 with 64 x 107 DFT spectrograms of audio segments
aligned with the visual clips. Our parameters (docs/data.md): a Hann-windowed DFT of length
``2 * (n_freq - 1)`` (126 for 64 bins), a hop chosen so that exactly ``n_time`` frames span the clip's
audio, magnitude, ``log(1 + |X|)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtpkdot.signals.errors import SampleError


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``."""
    import av

    chunks = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise SampleError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SampleError(f"cannot decode audio of {path}: {exc}") from None
    if not chunks:
        raise SampleError(f"{path} has an empty audio track")
    return np.concatenate(chunks).astype(np.float32)


def dft_spectrogram(x: np.ndarray, n_freq: int = 64, n_time: int = 107) -> np.ndarray:
    """Log-magnitude DFT spectrogram ``n_freq x n_time`` of one audio segment (any length).

    Frames of length ``2 * (n_freq - 1)`` with a Hann window; the hop spreads ``n_time`` frames evenly
    over the segment (frames overlap for short segments); a segment shorter than one frame is
    zero-padded.
    """
    n_fft = 2 * (n_freq - 1)
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    starts = np.linspace(0, x.size - n_fft, num=n_time).round().astype(np.int64)
    frames = x[starts[:, None] + np.arange(n_fft)[None, :]] * np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames, axis=-1))  # n_time x n_freq
    return np.log1p(mag).T.astype(np.float32)
