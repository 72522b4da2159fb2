"""A finished stage whose checkpoint went missing or bad is retrained, never evaluated from other
weights: on a copy of a finished tiny run, remove or damage a stage's files and rerun ``mtpkdot run``.

Training is deterministic on the CPU, so a retrained stage writes the test result of the original run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from helpers import DEMO_CONFIG, invoke, set_args, tiny_overrides
from mtpkdot.engine.checkpoint import load_checkpoint, save_checkpoint

FOLD = Path("seed0") / "fold1"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (fold 1, one student) and the arguments that made it."""
    base = tmp_path_factory.mktemp("integrity")
    run = base / "run"
    args = [
        "run",
        str(DEMO_CONFIG),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--folds",
        "1",
        "--methods",
        "mtpkdot",
        "--no-report",
    ] + set_args(tiny_overrides(base / "data", base / "store"))
    res = invoke(args)
    assert res.exit_code == 0, res.output
    return {"run": run, "args": args}


def rerun(finished, run: Path):
    args = list(finished["args"])
    args[args.index("--out") + 1] = str(run)
    res = invoke(args)
    assert res.exit_code == 0, res.output
    return res


def copy_run(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    return run


def same_result(finished, run: Path, stage: str) -> None:
    """``stage``'s checkpoint, its test result and the summary are those of the original run."""
    orig = finished["run"]
    assert (run / FOLD / stage / "best.pt").read_bytes() == (orig / FOLD / stage / "best.pt").read_bytes()
    assert (run / FOLD / stage / "test.json").read_text() == (orig / FOLD / stage / "test.json").read_text()
    assert (run / "summary.csv").read_text() == (orig / "summary.csv").read_text()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    ["best_and_done_removed", "best_removed", "best_truncated"],
)
def test_a_finished_stage_with_a_bad_best_checkpoint_is_retrained(finished, tmp_path, damage):
    run = copy_run(finished, tmp_path)
    teacher = run / FOLD / "teacher"
    if damage == "best_and_done_removed":
        (teacher / "best.pt").unlink()
        (teacher / "done").unlink()
    elif damage == "best_removed":
        (teacher / "best.pt").unlink()
    else:
        truncate(teacher / "best.pt")
    rerun(finished, run)
    same_result(finished, run, "teacher")


def test_the_advice_for_an_unreadable_checkpoint_retrains(finished, tmp_path):
    """`export` on a truncated best.pt says to delete it to retrain; doing so and rerunning retrains it."""
    run = copy_run(finished, tmp_path)
    best = run / FOLD / "student_mtpkdot" / "best.pt"
    truncate(best)
    bundle = tmp_path / "student.pt"
    export = ["export", str(run), "--fold", "1", "--method", "mtpkdot", "--out", str(bundle)]
    res = invoke(export)
    assert res.exit_code != 0 and "delete it to retrain" in res.output, res.output
    best.unlink()
    rerun(finished, run)
    same_result(finished, run, "student_mtpkdot")
    assert invoke(export).exit_code == 0 and bundle.is_file()


def test_a_stage_after_a_changed_stage_is_retrained(finished, tmp_path):
    """Other teacher weights (a finished teacher whose test was lost, resumed from a best.pt that
    differs from the original): the adapters and the student built on it notice and retrain."""
    run = copy_run(finished, tmp_path)
    teacher = run / FOLD / "teacher"
    state = load_checkpoint(teacher / "best.pt")
    for weights in state["modules"].values():
        for key, value in weights.items():
            if value.is_floating_point():
                weights[key] = value + 0.5
    save_checkpoint(
        teacher / "best.pt",
        {k: v for k, v in state.items() if k not in ("config", "config_hash")},
        state["config"],
    )
    (teacher / "done").unlink()
    rerun(finished, run)
    orig = finished["run"] / FOLD
    # resumed: the teacher kept the changed best.pt
    assert (teacher / "best.pt").read_bytes() != (orig / "teacher" / "best.pt").read_bytes()
    for stage in ("adapters", "student_mtpkdot"):
        new = load_checkpoint(run / FOLD / stage / "best.pt")["modules"]
        old = load_checkpoint(orig / stage / "best.pt")["modules"]
        assert any(
            not torch.equal(new[m][k], old[m][k])
            for m in new
            for k in new[m]
            if new[m][k].is_floating_point()
        ), f"{stage} was not retrained on the changed teacher"


def old_markers(run: Path) -> None:
    """Done markers as runs before this check wrote them: the stage's config hash alone."""
    for done in (run / FOLD).glob("*/done"):
        done.write_text(done.read_text().splitlines()[0] + "\n")


def test_an_old_run_directory_resumes_without_retraining(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    old_markers(run)
    stamps = {p: p.stat().st_mtime_ns for p in (run / FOLD).glob("*/best.pt")}
    rerun(finished, run)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len((run / FOLD / "teacher" / "done").read_text().splitlines()) > 1  # the hashes now recorded


def test_an_old_run_directory_with_a_truncated_checkpoint_retrains_it(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    old_markers(run)
    truncate(run / FOLD / "teacher" / "best.pt")
    rerun(finished, run)
    same_result(finished, run, "teacher")


def test_the_advice_for_an_unreadable_last_checkpoint_retrains(finished, tmp_path):
    """An interrupted stage whose last.pt cannot be read stops the run, saying to delete it to
    retrain; doing so retrains the stage."""
    run = copy_run(finished, tmp_path)
    stage = run / FOLD / "student_mtpkdot"
    (stage / "done").unlink()  # as if interrupted after its last epoch
    truncate(stage / "last.pt")
    args = list(finished["args"])
    args[args.index("--out") + 1] = str(run)
    res = invoke(args)
    assert res.exit_code != 0, res.output
    assert re.search(r"last\.pt cannot be read .*delete it to retrain", res.output), res.output
    (stage / "last.pt").unlink()
    rerun(finished, run)
    same_result(finished, run, "student_mtpkdot")
