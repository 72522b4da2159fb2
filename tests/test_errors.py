"""Faults users meet end as one ``error:`` line naming the file and the cause, never a traceback, and
leave no half-written file: a full disk (while preparing, training, writing the report), a size limit,
a read-only run directory, a corrupt checkpoint, ``--device cuda`` without CUDA."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers import DEMO_CONFIG, set_args, tiny_overrides
from mtpkdot.atomic import atomic_torch_save, atomic_write_text
from mtpkdot.cli import app
from mtpkdot.errors import USER_ERROR_EXIT, FileError

FOLD = "seed0/fold1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished tiny demo run (fold 1, the student without distillation) and its data and store."""
    base = tmp_path_factory.mktemp("errors")
    sets = tiny_overrides(base / "data", base / "store")
    run = base / "run"
    res = _cli(["demo", "--out", str(run)] + _demo_args(sets))
    assert res.exit_code == 0, res.output
    return {"base": base, "sets": sets, "run": run}


def _demo_args(sets: list[str]) -> list[str]:
    return ["--device", "cpu", "--folds", "1", "--methods", "none"] + set_args(sets)


def _cli(args: list[str]):
    return CliRunner().invoke(app, args)


def _copy(tiny, name: str) -> Path:
    return Path(shutil.copytree(tiny["run"], tiny["base"] / name))


def _assert_one_line(res, *words: str) -> str:
    """The command failed as a user error: one ``error:`` line holding ``words``, no traceback."""
    assert res.exit_code == USER_ERROR_EXIT, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


class _FullDisk:
    """A file object that takes ``room`` bytes and then fails like a full disk."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def test_a_full_disk_under_torch_save_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    atomic_torch_save({"w": torch.ones(3)}, target)
    old = target.read_bytes()
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, fh: real_save(obj, _FullDisk(fh, 600)))
    with pytest.raises(FileError) as caught:
        atomic_torch_save({"w": torch.zeros(10_000)}, target)
    # torch raises its own RuntimeError ("unexpected pos ...") while handling the OSError
    assert str(target) in str(caught.value) and "No space left on device" in str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == old and _leftovers(tmp_path) == []


def test_a_full_disk_during_training_is_one_line_and_no_stage_is_done(tiny, monkeypatch):
    run = tiny["base"] / "full_disk_run"
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, fh: real_save(obj, _FullDisk(fh, 600)))
    res = _cli(["demo", "--out", str(run)] + _demo_args(tiny["sets"]))
    line = _assert_one_line(res, "cannot write", ".pt", "No space left on device", "rerun")
    stage = Path(line.split("cannot write ")[1].split(":")[0]).parent
    assert stage.parent == run / FOLD and not (stage / "done").exists()
    assert _leftovers(run) == []


def test_a_read_only_run_directory_is_one_line(tiny, monkeypatch):
    """Root ignores permissions, so the read-only file system is injected where files are created."""
    run = tiny["base"] / "read_only_run"
    run.mkdir()
    real_mkstemp, real_mkdir = tempfile.mkstemp, os.mkdir

    def inside(path) -> bool:
        return Path(path).absolute().is_relative_to(run)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path) and not Path(path).exists():
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)
    res = _cli(["demo", "--out", str(run)] + _demo_args(tiny["sets"]))
    _assert_one_line(res, str(run), "Read-only file system")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder all the same")
def test_a_folder_without_write_permission_is_one_line(tiny):
    run = tiny["base"] / "no_permission_run"
    run.mkdir(mode=0o555)
    res = _cli(["demo", "--out", str(run)] + _demo_args(tiny["sets"]))
    _assert_one_line(res, str(run), "Permission denied")


def test_a_corrupt_checkpoint_in_run_is_one_line(tiny):
    run = _copy(tiny, "corrupt_run")
    stage = run / FOLD / "student_none"
    (stage / "done").unlink()
    last = stage / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    res = _cli(["demo", "--out", str(run)] + _demo_args(tiny["sets"]))
    _assert_one_line(res, str(last), "cannot be read")


def test_a_corrupt_checkpoint_in_export_is_one_line(tiny):
    run = _copy(tiny, "corrupt_export")
    best = run / FOLD / "student_none" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    out = tiny["base"] / "student.pt"
    res = _cli(["export", str(run), "--fold", "1", "--method", "none", "--out", str(out)])
    _assert_one_line(res, str(best), "cannot be read")
    assert not out.exists()


def test_device_cuda_without_cuda_is_one_line(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = _cli(
        ["demo", "--out", str(tiny["base"] / "cuda_run")] + _demo_args(tiny["sets"]) + ["--device", "cuda"]
    )
    _assert_one_line(res, "--device cuda", "no CUDA device")


def test_mtpkdot_debug_keeps_the_traceback(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("MTPKDOT_DEBUG", "1")
    res = _cli(
        ["demo", "--out", str(tiny["base"] / "cuda_debug")] + _demo_args(tiny["sets"]) + ["--device", "cuda"]
    )
    assert res.exit_code != 0 and "no CUDA device" in str(res.exception)


# --- the report's files are one set: all new or all old -------------------------------------------

REPORT_FILES = ("report.md", "report.html")


def _mark_old(run: Path) -> None:
    for name in REPORT_FILES:
        (run / name).write_text(f"old {name}\n")


def _still_old(run: Path) -> bool:
    return all((run / name).read_text() == f"old {name}\n" for name in REPORT_FILES)


def test_a_full_disk_while_writing_the_report_keeps_both_old_files(tiny, monkeypatch):
    run = _copy(tiny, "report_full")
    _mark_old(run)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, prefix=None, **kwargs):
        if prefix == ".report.html.":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    res = _cli(["report", str(run)])
    _assert_one_line(res, str(run / "report.html"), "No space left on device")
    assert _still_old(run) and _leftovers(run) == []


def test_a_report_written_as_a_set_embeds_the_new_figures(tiny):
    run = _copy(tiny, "report_new")
    _mark_old(run)
    for png in (run / "figures").glob("*.png"):
        png.write_bytes(b"old figure")
    res = _cli(["report", str(run)])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert "old report" not in (run / "report.md").read_text() and "old report" not in html
    from mtpkdot.report.html import image_data_uri

    figures = sorted((run / "figures").glob("*.png"))
    assert figures and all(image_data_uri(png) in html for png in figures)
    assert _leftovers(run) == []


def test_a_file_size_limit_while_writing_the_report_keeps_both_old_files(tiny):
    """A real fault: RLIMIT_FSIZE below the size of report.html (it embeds the figures), above the
    size of every other file of the report, so only report.html fails to be written."""
    run = _copy(tiny, "report_fsize")
    html_size = (run / "report.html").stat().st_size
    others = [run / "report.md", run / "results.csv", *(run / "figures").glob("*.png")]
    limit = max(p.stat().st_size for p in others) + 1024
    assert limit < html_size
    _mark_old(run)
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from mtpkdot.cli import app\n"
        "app(['report', sys.argv[1]])\n"
    )
    res = subprocess.run([sys.executable, "-c", script, str(run)], capture_output=True, text=True)
    assert res.returncode == USER_ERROR_EXIT, res.stderr
    assert "Traceback" not in res.stderr
    assert f"error: cannot write {run / 'report.html'}: File too large" in res.stderr
    assert _still_old(run) and _leftovers(run) == []


# --- prepare: a full disk is an error line, not a SIGBUS ----------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root and the right to mount; skipped otherwise): smaller than the store."""
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_prepare_is_one_line(tiny, small_tmpfs):
    sets = [s for s in tiny["sets"] if not s.startswith("data.store=")] + [
        f"data.store={small_tmpfs / 'store'}"
    ]
    cmd = [sys.executable, "-m", "mtpkdot", "prepare", str(DEMO_CONFIG)] + set_args(sets)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tiny["base"])
    assert res.returncode == USER_ERROR_EXIT, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], res.stderr[-2000:]
    assert str(small_tmpfs / "store") in errors[0]


def test_atomic_writes_of_a_set_land_together(tmp_path):
    from mtpkdot.atomic import file_set, staged

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with file_set():
        atomic_write_text(a, "new a")
        assert a.exists() is False and staged(a).read_text() == "new a"
        atomic_write_text(b, "new b")
    assert a.read_text() == "new a" and b.read_text() == "new b" and _leftovers(tmp_path) == []
    with pytest.raises(RuntimeError), file_set():
        atomic_write_text(a, "newer a")
        raise RuntimeError("the second file failed")
    assert a.read_text() == "new a" and _leftovers(tmp_path) == []
