"""Synthetic generators: real layouts, determinism, and the strength knobs doing what they say."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import SynthConfig
from mtpkdot.data.synthetic import synth_affwild2, synth_biovid
from mtpkdot.signals import decode_audio, read_biosignals, video_info

SMALL = {"subjects": 3, "samples_per_class": 2, "size": 32}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix != ".mp4":  # mp4 headers carry encoder metadata; frames checked apart
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def biovid_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_biovid(tmp_path_factory.mktemp("s") / "b", SynthConfig(part="B", **SMALL))


def test_biovid_layout(biovid_b: Path) -> None:
    df = pd.read_csv(biovid_b / "samples.csv", sep="\t")
    assert list(df.columns) == [
        "subject_id",
        "subject_name",
        "class_id",
        "class_name",
        "sample_id",
        "sample_name",
    ]
    assert len(df) == 3 * 2 * 2 and set(df["class_name"]) == {"BL1", "PA4"}
    row = df.iloc[0]
    video = biovid_b / "video" / row.subject_name / f"{row.sample_name}.mp4"
    assert video_info(video) == (round(5.5 * 25), 25.0)
    bio = biovid_b / "biosignals_filtered" / row.subject_name / f"{row.sample_name}_bio.csv"
    header = bio.read_text().splitlines()[0].split("\t")
    assert header == ["time", "gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus"]
    t = pd.read_csv(bio, sep="\t")["time"].to_numpy()
    assert t[1] - t[0] in (1953, 1954) and len(t) == 2816  # microseconds at 512 Hz, 5.5 s


def test_biovid_part_a_columns(tmp_path: Path) -> None:
    root = synth_biovid(tmp_path / "a", SynthConfig(subjects=2, samples_per_class=1, size=16))
    bio = next((root / "biosignals_filtered").rglob("*_bio.csv"))
    assert bio.read_text().splitlines()[0].split("\t") == ["time", "gsr", "ecg", "emg_trapezius"]


def test_biovid_is_deterministic_and_seed_dependent(tmp_path: Path, biovid_b: Path) -> None:
    again = synth_biovid(tmp_path / "again", SynthConfig(part="B", **SMALL))
    assert _digest(again) == _digest(biovid_b)
    other = synth_biovid(tmp_path / "other", SynthConfig(part="B", seed=1, **SMALL))
    assert _digest(other) != _digest(biovid_b)


def test_refuses_non_empty_output(biovid_b: Path) -> None:
    with pytest.raises(FileExistsError, match="not empty"):
        synth_biovid(biovid_b, SynthConfig(**SMALL))


def _eda_response(root: Path) -> dict[str, float]:
    df = pd.read_csv(root / "samples.csv", sep="\t")
    out: dict[str, list[float]] = {"BL1": [], "PA4": []}
    for r in df.itertuples():
        x = read_biosignals(
            root / "biosignals_filtered" / r.subject_name / f"{r.sample_name}_bio.csv", ["gsr"]
        )[0]
        out[r.class_name].append(x[-512:].mean() - x[:256].mean())
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_physio_strength_controls_the_eda_response(tmp_path: Path) -> None:
    kw = {"subjects": 4, "samples_per_class": 3, "size": 16, "non_responders": 0.0}
    off = _eda_response(synth_biovid(tmp_path / "off", SynthConfig(physio_strength=0.0, **kw)))
    on = _eda_response(synth_biovid(tmp_path / "on", SynthConfig(physio_strength=2.0, **kw)))
    # without strength both classes only carry spontaneous responses; with it PA4 rises above BL1
    assert abs(off["PA4"] - off["BL1"]) < 0.3
    assert on["PA4"] - on["BL1"] > 0.5


def test_affwild2_layout(tmp_path: Path) -> None:
    root = synth_affwild2(tmp_path / "aw", SynthConfig(subjects=4, size=32, duration=4.0))
    ann = root / "annotations" / "VA_Estimation_Challenge"
    train, val = sorted((ann / "Train_Set").glob("*.txt")), sorted((ann / "Validation_Set").glob("*.txt"))
    assert train and val
    names = [p.stem for p in train + val]
    assert any(n.endswith("_left") for n in names) and any(n.endswith("_right") for n in names)
    texts = [p.read_text() for p in train + val]
    assert all(t.startswith("valence,arousal\n") for t in texts)
    assert any("-5,-5" in t for t in texts)
    for p in train + val:
        vid = p.stem
        n_lines = len(p.read_text().splitlines()) - 1
        frames = sorted((root / "cropped_aligned" / vid).glob("*.jpg"))
        assert frames[0].name == "00001.jpg" and len(frames) <= n_lines
        base = vid.replace("_left", "").replace("_right", "")
        raw = next(root.glob(f"raw/batch*/{base}.mp4"))
        assert video_info(raw)[0] == n_lines
    wav = decode_audio(raw, 16000)
    assert len(wav) > 16000 and np.abs(wav).max() > 0.01
