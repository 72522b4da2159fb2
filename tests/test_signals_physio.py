"""Biosignal reading (time-unit inference, bad files), filters, windows and the EMG spectrogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtpkdot.signals import (
    SampleError,
    butter_filter,
    emg_spectrogram,
    infer_time_unit,
    read_biosignals,
    take_window,
)


def _write_csv(
    path: Path, n: int = 2816, unit_scale: float = 1e6, rate: float = 512.0, cols=("gsr", "ecg")
) -> Path:
    t = np.arange(n) / rate * unit_scale
    rng = np.random.default_rng(0)
    lines = ["\t".join(["time", *cols])]
    for i in range(n):
        lines.append("\t".join([f"{t[i]:.6f}", *(f"{rng.normal():.5f}" for _ in cols)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("scale", "unit"), [(1e6, "us"), (1e3, "ms"), (1.0, "s")])
def test_time_unit_is_inferred_from_spacing(scale: float, unit: str) -> None:
    t = np.arange(100) / 512.0 * scale
    assert infer_time_unit(t, 512.0) == unit


@pytest.mark.parametrize("scale", [1e6, 1e3, 1.0])
def test_read_biosignals_any_time_unit_gives_same_signal(tmp_path: Path, scale: float) -> None:
    ref = read_biosignals(_write_csv(tmp_path / "us.csv"), ["gsr", "ecg"])
    x = read_biosignals(_write_csv(tmp_path / "x.csv", unit_scale=scale), ["gsr", "ecg"])
    assert x.shape == (2, 2816)
    np.testing.assert_allclose(x, ref)


def test_read_biosignals_resamples_other_rates(tmp_path: Path) -> None:
    x = read_biosignals(_write_csv(tmp_path / "r.csv", n=1000, rate=1000.0), ["gsr"], sample_rate=512.0)
    # 1000 samples at 1 kHz last 0.999 s -> 512 samples at 512 Hz (grid 0 .. 0.998 s)
    assert x.shape[0] == 1 and abs(x.shape[1] - 512) <= 1


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a_bio.csv", cols=("gsr",))
    with pytest.raises(SampleError, match=r"emg_corrugator.*a_bio\.csv"):
        read_biosignals(p, ["emg_corrugator"])


def test_nan_values_name_file(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "nan_bio.csv", n=50)
    lines = p.read_text().splitlines()
    lines[10] = lines[10].split("\t")[0] + "\tnan\t0.1"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(SampleError, match=r"NaN.*gsr.*nan_bio\.csv"):
        read_biosignals(p, ["gsr", "ecg"])


def test_truncated_csv_is_a_sample_error(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "trunc_bio.csv", n=600)
    text = p.read_text()
    p.write_text(text[: len(text) // 3] + "123\t0.5")  # cut mid-file, last row incomplete
    with pytest.raises(SampleError, match="trunc_bio.csv"):
        x = read_biosignals(p, ["gsr", "ecg"])
        take_window(x, 512.0, (2.0, 5.0), source=str(p))


def test_window_too_long_is_wrong_length(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match=r"wrong length: short\.csv"):
        take_window(np.zeros((1, 512)), 512.0, (0.0, 2.0), source="short.csv")
    assert take_window(np.zeros((1, 3000)), 512.0, (2.0, 5.0)).shape == (1, 1536)


def test_emg_spectrogram_shape_matches_released_code() -> None:
    # the released code: 3 s at 512 Hz (1536 samples), nperseg 16, noverlap 4, nfft 128 -> 65 x 127
    x = np.random.default_rng(0).normal(size=1536)
    assert emg_spectrogram(x).shape == (65, 127)
    assert emg_spectrogram(np.stack([x, x]), log=True).shape == (2, 65, 127)


def test_butterworth_lowpass_removes_high_frequency() -> None:
    t = np.arange(2048) / 512.0
    slow, fast = np.sin(2 * np.pi * 1.0 * t), np.sin(2 * np.pi * 100.0 * t)
    y = butter_filter(slow + fast, 512.0, lowpass_hz=5.0)
    inner = slice(200, -200)
    assert np.abs(y[inner] - slow[inner]).max() < 0.02
    with pytest.raises(ValueError, match="lowpass_hz"):
        butter_filter(slow, 512.0, lowpass_hz=300.0)
