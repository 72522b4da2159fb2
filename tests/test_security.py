"""Files the tool reads never run code: bundles and checkpoints load with weights_only=True
(a pickle can run any code on load, and users load bundles they were sent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.engine.checkpoint import UnsafeFileError, load_checkpoint, save_checkpoint
from mtpkdot.pipeline.bundle import FORMAT, load_bundle

DEMO = Path(__file__).resolve().parents[1] / "src" / "mtpkdot" / "resources" / "demo.yaml"


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil(path: Path, marker: Path, **content) -> Path:
    torch.save({**content, "payload": WritesMarker(marker)}, path)
    return path


def test_the_evil_file_really_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    """Guards the tests below: they would pass vacuously if the payload did nothing."""
    marker = tmp_path / "ran"
    torch.load(_evil(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_bundle_with_code_is_refused_and_the_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bundle = _evil(tmp_path / "student.pt", marker, format=FORMAT)
    with pytest.raises(UnsafeFileError, match=r"bundle .*student\.pt is refused") as err:
        load_bundle(bundle)
    assert "open" in str(err.value)  # names what the file asked to call
    assert not marker.exists()
    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((4, 16, 16, 3), np.uint8))
    res = CliRunner().invoke(app, ["predict", str(bundle), str(sample)])
    assert res.exit_code == 2
    assert f"error: bundle {bundle} is refused" in res.output and "Traceback" not in res.output
    assert not marker.exists()


def test_checkpoint_with_code_is_refused_and_the_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ckpt = _evil(tmp_path / "best.pt", marker, modules={})
    with pytest.raises(UnsafeFileError, match=r"checkpoint .*best\.pt is refused"):
        load_checkpoint(ckpt)
    assert not marker.exists()
    # through the CLI: export reads the student's best.pt of a run directory
    run = tmp_path / "run"
    stage = run / "seed0" / "fold1" / "student_mtpkdot"
    stage.mkdir(parents=True)
    shutil.copy(DEMO, run / "config.yaml")
    (stage / "done").write_text("")
    shutil.copy(ckpt, stage / "best.pt")
    res = CliRunner().invoke(
        app, ["export", str(run), "--fold", "1", "--method", "mtpkdot", "--out", str(tmp_path / "b.pt")]
    )
    assert res.exit_code == 2, res.output
    assert f"checkpoint {stage / 'best.pt'} is refused" in res.output and "Traceback" not in res.output
    assert not marker.exists() and not (tmp_path / "b.pt").exists()


def test_checkpoints_keep_numpy_state_and_load_weights_only(tmp_path: Path) -> None:
    """RNG states and snapshots (numpy) survive the round trip with their dtype, read weights-only."""
    np.random.seed(3)
    state = {
        "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "extra": {"snap": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "history": [{"epoch": 1, "val_accuracy": np.float64(50.0)}],
        "modules": {"bn": torch.nn.BatchNorm1d(3).state_dict()},
    }
    path = save_checkpoint(tmp_path / "last.pt", state, {"lr": 0.1})
    torch.load(path, weights_only=True)  # no pickled numpy object left in the file
    back = load_checkpoint(path, {"lr": 0.1})
    kind, keys, pos, has_gauss, cached = back["rng"]["numpy"]
    assert kind == "MT19937" and keys.dtype == np.uint32 and pos == 624
    np.random.set_state(back["rng"]["numpy"])
    np.random.seed(3)
    want = np.random.rand(3)
    np.random.set_state(back["rng"]["numpy"])
    np.testing.assert_array_equal(np.random.rand(3), want)
    assert back["extra"]["snap"].dtype == np.float32 and back["extra"]["snap"][1, 2] == 5
    assert back["history"][0]["val_accuracy"] == 50.0
    # state dicts come back as saved, with the module versions load_state_dict reads
    assert back["modules"]["bn"]._metadata == state["modules"]["bn"]._metadata
