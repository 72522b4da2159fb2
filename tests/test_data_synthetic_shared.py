"""The `shared` knob of the synthetic Biovid world (a known answer for the distillation question):
shared=0 is the world of before the knob, byte for byte; shared>0 puts the per-sample latent into the
face video (and the physiological response), seeded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mtpkdot.data.synthetic as syn
import mtpkdot.data.synthetic.biovid as syn_biovid
from mtpkdot.config import SynthConfig

# Every written file but the mp4s, plus a digest of the frames handed to the encoder (the mp4 bytes
# depend on the codec build), for the config below, made with the generator of before the knob
# (branch `pack`, 65cf36c).
BEFORE_THE_KNOB = "7ecba1be56d510dd0fac1f8974b2d4d4ae579a5782473c41898aa4608cb25d20"
TINY = {"subjects": 2, "samples_per_class": 2, "size": 24, "fps": 10, "duration": 2.0, "part": "B"}


def _world(
    out: Path, cfg: SynthConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Generate into ``out`` with the frames kept in memory instead of encoded; returns the digest of
    every written file and the frames of every video (by file name)."""
    frames: dict[str, np.ndarray] = {}
    monkeypatch.setattr(
        syn_biovid,
        "write_video",
        lambda path, fr, fps, audio=None: frames.__setitem__(Path(path).name, fr.copy()),
    )
    syn.synth_biovid(out, cfg)
    files = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    return files, frames


def test_shared_zero_is_the_world_of_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, frames = _world(tmp_path / "d", SynthConfig(**TINY), monkeypatch)
    hashes = {k: hashlib.sha256(v.tobytes()).hexdigest()[:16] for k, v in frames.items()}
    digest = hashlib.sha256(json.dumps([files, hashes], sort_keys=True).encode()).hexdigest()
    assert digest == BEFORE_THE_KNOB
    assert "shared" not in json.loads((tmp_path / "d" / "synth.json").read_text())


def _redden(frames: np.ndarray, fps: int) -> float:
    """How much redder (red minus green, mean over the frame) the last second is than the first half."""
    rg = frames[..., 0].astype(float).mean(axis=(1, 2)) - frames[..., 1].astype(float).mean(axis=(1, 2))
    return float(rg[-fps:].mean() - rg[: fps // 2].mean())


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_shared_puts_the_latent_into_the_video(
    shared: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no facial expression, so the only label-related change in the video is the flush
    cfg = SynthConfig(
        subjects=4, samples_per_class=6, size=24, fps=10, duration=4.0, video_strength=0.0, shared=shared
    )
    _, frames = _world(tmp_path / "d", cfg, monkeypatch)
    rows = pd.read_csv(tmp_path / "d" / "samples.csv", sep="\t")
    pa4 = rows[rows["class_name"] == "PA4"]
    z = [
        syn.biovid_latent(cfg.seed, r.subject_id, r.class_id, int(r.sample_name.rsplit("-", 1)[1]) - 1)
        for r in pa4.itertuples()
    ]
    red = [_redden(frames[f"{name}.mp4"], cfg.fps) for name in pa4["sample_name"]]
    r = np.corrcoef(z, red)[0, 1]
    if shared:
        assert r > 0.7, r  # the face shows the latent
    else:
        assert abs(r) < 0.5, r  # no trace of it


def test_shared_is_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SynthConfig(**TINY, shared=0.5)
    a, fa = _world(tmp_path / "a", cfg, monkeypatch)
    b, fb = _world(tmp_path / "b", cfg, monkeypatch)
    c, _ = _world(tmp_path / "c", cfg.model_copy(update={"seed": 1}), monkeypatch)
    zero, f0 = _world(tmp_path / "z", SynthConfig(**TINY), monkeypatch)
    assert a == b and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert a != c
    # the knob changes the physiological signals and the videos of pain samples, not of baseline ones
    assert any(a[k] != zero[k] for k in a if k.endswith("_bio.csv") and "-PA4-" in k)
    assert all(np.array_equal(fa[k], f0[k]) for k in fa if "-BL1-" in k)
    assert not all(np.array_equal(fa[k], f0[k]) for k in fa if "-PA4-" in k)
    assert json.loads((tmp_path / "a" / "synth.json").read_text())["shared"] == 0.5


def test_affwild2_refuses_shared(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared=0.5 is not implemented"):
        syn.synth_affwild2(tmp_path / "w", SynthConfig(subjects=3, shared=0.5))
