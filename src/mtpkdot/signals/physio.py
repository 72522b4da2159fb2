"""Biosignals: CSV reading with time-unit inference, Butterworth filters, windows, EMG spectrograms.

Biovid CSVs are tab separated with a ``time`` column and one column per channel (``gsr``, ``ecg``,
``emg_trapezius``; part B adds ``emg_corrugator``, ``emg_zygomaticus``) at 512 Hz. The time unit is not
trusted: it is inferred from the sample spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtpkdot.signals.errors import SampleError
from mtpkdot.signals.files import nonfinite, require_file

# seconds per unit for the candidate time units of a CSV time column
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def infer_time_unit(time: np.ndarray, sample_rate: float) -> str:
    """The unit of ``time`` whose implied sampling rate is closest (in log ratio) to ``sample_rate``."""
    dt = np.diff(np.asarray(time, dtype=np.float64))
    dt = dt[np.isfinite(dt) & (dt > 0)]
    if dt.size == 0:
        raise ValueError("time column is not increasing")
    step = float(np.median(dt))
    return min(TIME_UNITS, key=lambda u: abs(np.log(1.0 / (step * TIME_UNITS[u]) / sample_rate)))


def read_biosignals(
    path: str | Path, columns: Sequence[str], sample_rate: float = 512.0, time_column: str = "time"
) -> np.ndarray:
    """Read ``columns`` of a tab-separated biosignal CSV -> float64 array ``C x T`` at ``sample_rate``.

    The time unit is inferred from the spacing; if the file's real rate differs from ``sample_rate`` by
    more than 1 %, the channels are linearly resampled onto a ``sample_rate`` grid. Missing columns,
    NaN values, unparsable files and files with fewer than 2 rows raise :class:`SampleError` naming
    the file.
    """
    import pandas as pd

    path = Path(path)
    require_file(path, "biosignal file", SampleError)
    try:
        df = pd.read_csv(path, sep="\t")
    except Exception as exc:  # noqa: BLE001 - any parser failure is one bad sample
        raise SampleError(f"cannot parse biosignal file {path}: {exc}") from None
    missing = [c for c in [time_column, *columns] if c not in df.columns]
    if missing:
        raise SampleError(f"column(s) {missing} missing in {path} (columns: {list(df.columns)})")
    if len(df) < 2:
        raise SampleError(f"biosignal file {path} has {len(df)} rows")
    try:
        values = df[[time_column, *columns]].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SampleError(f"non-numeric values in {path}: {exc}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [c for c, b in zip([time_column, *columns], bad.any(axis=0), strict=True) if b]
        row = int(np.argmax(bad.any(axis=1)))
        kind = nonfinite(values)
        kind = "NaN or missing" if kind == "NaN" else kind  # an empty cell reads as NaN
        raise SampleError(f"{kind} values in column(s) {cols} of {path} (first at data row {row + 1})")
    time, x = values[:, 0], values[:, 1:].T
    try:
        unit = infer_time_unit(time, sample_rate)
    except ValueError as exc:
        raise SampleError(f"{exc} in {path}") from None
    t = (time - time[0]) * TIME_UNITS[unit]
    real_rate = (len(t) - 1) / t[-1] if t[-1] > 0 else sample_rate
    if abs(real_rate / sample_rate - 1) > 0.01:
        grid = np.arange(0, t[-1] + 0.5 / sample_rate, 1.0 / sample_rate)
        x = np.stack([np.interp(grid, t, ch) for ch in x])
    return x


def butter_filter(
    x: np.ndarray,
    sample_rate: float,
    lowpass_hz: float | None = None,
    highpass_hz: float | None = None,
    order: int = 4,
) -> np.ndarray:
    """Zero-phase Butterworth filter along the last axis (``sosfiltfilt``); band-pass when both are set."""
    from scipy import signal

    if lowpass_hz is None and highpass_hz is None:
        return x
    nyq = sample_rate / 2
    if lowpass_hz is not None and not 0 < lowpass_hz < nyq:
        raise ValueError(f"lowpass_hz={lowpass_hz} must lie in (0, {nyq}) at {sample_rate} Hz")
    if highpass_hz is not None and not 0 < highpass_hz < nyq:
        raise ValueError(f"highpass_hz={highpass_hz} must lie in (0, {nyq}) at {sample_rate} Hz")
    if lowpass_hz is not None and highpass_hz is not None:
        sos = signal.butter(order, [highpass_hz, lowpass_hz], btype="bandpass", fs=sample_rate, output="sos")
    elif lowpass_hz is not None:
        sos = signal.butter(order, lowpass_hz, btype="lowpass", fs=sample_rate, output="sos")
    else:
        sos = signal.butter(order, highpass_hz, btype="highpass", fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1)


def take_window(
    x: np.ndarray, sample_rate: float, window: tuple[float, float] | None, source: str = ""
) -> np.ndarray:
    """Samples ``[start, end)`` seconds of ``x`` (``C x T``); exactly ``round((end-start)*rate)`` long.

    Raises :class:`SampleError` ("wrong length") when the recording is shorter than the window.
    """
    if window is None:
        return x
    start, end = window
    i0, n = int(round(start * sample_rate)), int(round((end - start) * sample_rate))
    if i0 + n > x.shape[-1]:
        have = x.shape[-1] / sample_rate
        raise SampleError(
            f"wrong length: {source or 'signal'} lasts {have:.2f} s, the window needs {end:.2f} s"
        )
    return x[..., i0 : i0 + n]


def normalize(x: np.ndarray, how: str) -> np.ndarray:
    """``none``; ``baseline``: subtract each channel's first 0.5 % (per-subject level removed, shape and
    amplitude of the response kept); ``zscore``: per channel mean 0, std 1."""
    if how == "none":
        return x
    if how == "baseline":
        k = max(1, x.shape[-1] // 200)
        return x - x[..., :k].mean(axis=-1, keepdims=True)
    if how == "zscore":
        return (x - x.mean(axis=-1, keepdims=True)) / (x.std(axis=-1, keepdims=True) + 1e-8)
    raise ValueError(f"unknown normalisation {how!r} (none, baseline, zscore)")


def emg_spectrogram(x: np.ndarray, sample_rate: float = 512.0, log: bool = False) -> np.ndarray:
    """EMG spectrogram of the released code: ``scipy.signal.spectrogram(nperseg=16, noverlap=4, nfft=128)``.

    SciPy defaults otherwise (Tukey 0.25 window, constant detrend, PSD density). A 3 s window at 512 Hz
    (1536 samples) gives 65 x 127 (the paper's 67 x 127 cannot come from these parameters: 65 frequency
    bins follow from nfft 128). ``x`` is ``T`` or ``C x T``; the result is ``F x N`` or ``C x F x N``. ``log`` applies
    ``log(psd + 1e-10)``.
    """
    from scipy import signal

    _, _, spec = signal.spectrogram(x, fs=sample_rate, nperseg=16, noverlap=4, nfft=128, axis=-1)
    if log:
        spec = np.log(spec + 1e-10)
    return spec
