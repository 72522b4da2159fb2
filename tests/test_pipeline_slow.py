"""Slow end-to-end checks: a run killed by SIGKILL resumes to the same results, and a regression
bundle predicts what the run's student predicts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import CONFIGS, DEMO_CONFIG, fold_test_indices, run_student_outputs, shrink, tiny_overrides
from mtpkdot.cli import app

pytestmark = pytest.mark.slow


def _invoke(args: list[str]):
    res = CliRunner().invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300.0) -> None:
    """SIGKILL ``proc`` (and its children) as soon as ``ready()`` holds; fail if it ends first."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before it could be killed mid-stage")
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the kill point was never reached")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkilled_run_resumes_to_the_uninterrupted_summary(tmp_path):
    """`mtpkdot run` in a subprocess, SIGKILLed in the middle of a student stage (after its first
    epoch's last.pt, before its end), rerun: summary.csv equals that of a run never interrupted."""
    sets = tiny_overrides(tmp_path / "data", tmp_path / "store") + ["student.epochs=30"]
    common = [str(DEMO_CONFIG), "--device", "cpu", "--methods", "none,pkdot"]
    common += [a for s in sets for a in ("--set", s)]
    _invoke(["run", *common, "--out", str(tmp_path / "clean")])

    killed = tmp_path / "killed"
    stage = killed / "seed0" / "fold1" / "student_pkdot"
    cmd = [sys.executable, "-m", "mtpkdot", "run", *common, "--out", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _kill_when(proc, lambda: (stage / "last.pt").is_file() and (stage / "metrics.csv").is_file())
    assert proc.returncode == -signal.SIGKILL
    assert not (stage / "done").is_file() and not (killed / "summary.csv").exists()
    epochs_before = len(pd.read_csv(stage / "metrics.csv"))
    assert 1 <= epochs_before < 30  # really in the middle of the stage

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (killed / "summary.csv").read_text() == (tmp_path / "clean" / "summary.csv").read_text()
    clean_stage = tmp_path / "clean" / "seed0" / "fold1" / "student_pkdot"
    assert (stage / "metrics.csv").read_text() == (clean_stage / "metrics.csv").read_text()


def test_regression_bundle_predicts_what_the_run_predicts(tmp_path):
    """Affwild2-like valence/arousal: export the student, `mtpkdot predict` a prepared sample, and the
    bundle's outputs on the test samples equal the run's student's."""
    from mtpkdot.config import SynthConfig
    from mtpkdot.data import synth_affwild2
    from mtpkdot.data.store import Store
    from mtpkdot.pipeline.bundle import load_bundle

    data = tmp_path / "data"
    data.mkdir()
    synth_affwild2(data, SynthConfig(subjects=4, size=24, duration=3.0))
    sets = shrink("affwild2") + [f"data.root={data}"]
    run = tmp_path / "run"
    _invoke(
        ["run", str(CONFIGS / "affwild2.yaml"), "--out", str(run), "--device", "cpu", "--methods", "mtpkdot"]
        + [a for s in sets for a in ("--set", s)]
    )
    fold = int(sorted(run.glob("seed0/fold*/student_mtpkdot/done"))[0].parent.parent.name[4:])
    bundle = tmp_path / "student.pt"
    args = ["export", str(run), "--fold", str(fold), "--method", "mtpkdot", "--out", str(bundle)]
    _invoke(args)
    store = Store(run / "store")
    sample = tmp_path / "sample.npy"
    np.save(sample, np.asarray(store.array("video")[0]))
    res = _invoke(["predict", str(bundle), str(sample)])
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(rows) == 1 and {"valence", "arousal"} <= set(rows[0])
    length = store.shape("video")[0]  # one value per clip of the sequence
    for name in ("valence", "arousal"):
        assert len(rows[0][name]) == length and np.isfinite(rows[0][name]).all()

    model = load_bundle(bundle)
    idx = fold_test_indices(run, fold, store)
    assert len(idx) > 0
    out = model({"video": np.asarray(store.array("video")[idx])})
    want = run_student_outputs(run, fold, "mtpkdot", model, idx)
    assert out.shape == (len(idx), length, 2)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    got = [rows[0]["valence"], rows[0]["arousal"]]
    first = model({"video": np.asarray(store.array("video")[:1])})[0]
    np.testing.assert_allclose(np.asarray(got).T, first.numpy(), rtol=1e-5, atol=1e-6)
