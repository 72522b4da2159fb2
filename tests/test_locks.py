"""One process per cell of a run directory and per store: a second one on the same cells or store is
refused naming the holder, or waits with ``--wait``; processes on disjoint folds share the run
directory; a lock left by a dead process is taken over. Real ``mtpkdot`` processes on a tiny config,
made to overlap exactly by ``tests/paused_cli.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import DEMO_CONFIG, ROOT, tiny_overrides
from mtpkdot.cli import app
from mtpkdot.layout import RunLayout, store_lock
from mtpkdot.locks import FileLock, Holder, LockHeldError

PAUSED_CLI = Path(__file__).with_name("paused_cli.py")
TIMEOUT = 300


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny demo data and a prepared store; each test runs into its own --out."""
    base = tmp_path_factory.mktemp("locks")
    sets = tiny_overrides(base / "data", base / "store")
    sets = [s.replace("epochs=2", "epochs=1") for s in sets]
    args = [a for s in sets for a in ("--set", s)]
    res = CliRunner().invoke(app, ["prepare", str(DEMO_CONFIG), *args])
    assert res.exit_code == 0, res.output
    return {"base": base, "args": args}


def _user_error_code(args: list[str]) -> int:
    """The exit code of a known user error of the same command (a bad --methods / --set)."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code not in (0, None) and "error:" in res.output, res.output
    return res.exit_code


def _env(**extra: str) -> dict[str, str]:
    """This environment without MTPKDOT_DEBUG (the error lines are checked), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != "MTPKDOT_DEBUG"}, **extra}


def _start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``mtpkdot COMMAND`` through paused_cli.py, its output to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, str(PAUSED_CLI), *command],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=_env(**env),
            cwd=ROOT,
        )


def _mtpkdot(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtpkdot", *command], capture_output=True, text=True, env=_env(), cwd=ROOT
    )


def _wait_for(check, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _finish(proc: subprocess.Popen) -> int:
    return proc.wait(timeout=TIMEOUT)


def _common(out: Path, folds: str) -> list[str]:
    return ["--out", str(out), "--folds", folds, "--methods", "none", "--device", "cpu", "--no-report"]


def _run(tiny, out: Path, folds: str, *extra: str) -> list[str]:
    return ["run", str(DEMO_CONFIG), *tiny["args"], *_common(out, folds), *extra]


def _trained(log: Path) -> list[tuple[int, int, str]]:
    if not log.is_file():
        return []
    return [(int(s), int(k), st) for s, k, st in (line.split() for line in log.read_text().splitlines())]


def _cells_once(run: Path, folds: list[int]) -> None:
    summary = pd.read_csv(RunLayout(run).summary)
    counts = summary.groupby(["seed", "fold", "method"]).size()
    assert (counts == 1).all(), counts
    assert sorted(set(summary["fold"])) == folds
    assert sorted(set(summary["method"])) == ["lower_bound", "none", "teacher"]


# ---- the lock itself --------------------------------------------------------------------------------
def test_a_held_lock_is_refused_naming_its_holder_and_freed_on_release(tmp_path):
    path = tmp_path / "x" / ".lock"
    with FileLock(path, "thing x"):
        # another open file of the same lock conflicts, as another process would
        with pytest.raises(LockHeldError) as err:
            FileLock(path, "thing x", "do something else").acquire()
        message = str(err.value)
        assert f"thing x is in use by pid {os.getpid()} on {socket.gethostname()} since " in message
        assert message.endswith("; do something else") and "\n" not in message
        assert Holder.decode(path.read_bytes()).pid == os.getpid()
    assert path.read_bytes() == b""  # released: an empty file is a free lock
    FileLock(path, "thing x").acquire().release()


def test_wait_blocks_until_the_holder_releases(tmp_path, caplog):
    path = tmp_path / ".lock"
    first = FileLock(path, "thing x").acquire()
    timer = threading.Timer(0.5, first.release)
    timer.start()
    t0 = time.monotonic()
    with caplog.at_level("INFO", logger="mtpkdot.locks"), FileLock(path, "thing x").acquire(wait=True):
        assert time.monotonic() - t0 >= 0.4
    timer.join()
    assert f"thing x is in use by pid {os.getpid()}" in caplog.text and "waiting" in caplog.text


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_message(tmp_path, caplog):
    path = tmp_path / ".lock"
    pid = _dead_pid()
    path.write_bytes(Holder(pid, "elsewhere", "2026-01-01 00:00:00 UTC").encode())
    with caplog.at_level("WARNING", logger="mtpkdot.locks"), FileLock(path, "thing x"):
        assert Holder.decode(path.read_bytes()).pid == os.getpid()
    assert f"taking over the lock of thing x from pid {pid} on elsewhere" in caplog.text


# ---- real processes -------------------------------------------------------------------------------
def test_a_second_run_on_the_same_cells_is_refused_naming_the_holder(tiny, tmp_path):
    """Two runs of fold 1 into one --out: the second stops at once, naming the first (which goes on)."""
    out, gate = tmp_path / "run", tmp_path / "gate"
    first = _start(_run(tiny, out, "1"), tmp_path / "first.log", PAUSE_GATE=str(gate), PAUSE_AT="stage")
    _wait_for(Path(f"{gate}.reached").exists, "the first run to hold its cells", first)
    second = _mtpkdot(_run(tiny, out, "1"))
    gate.touch()
    assert _finish(first) == 0, (tmp_path / "first.log").read_text()
    code = _user_error_code(["run", str(DEMO_CONFIG), "--methods", "nosuch", "--out", str(tmp_path / "x")])
    assert second.returncode == code, second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, second.stderr
    holder = f"is in use by pid {first.pid} on {socket.gethostname()} since "
    assert errors[0].startswith(f"error: seed 0 fold 1 of {out} {holder}") and "--wait" in errors[0]
    _cells_once(out, [1])


def test_wait_waits_for_the_holder_and_then_finds_the_cells_done(tiny, tmp_path):
    out, gate = tmp_path / "run", tmp_path / "gate"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(_run(tiny, out, "1"), first_log, PAUSE_GATE=str(gate), PAUSE_AT="stage")
    _wait_for(Path(f"{gate}.reached").exists, "the first run to hold its cells", first)
    second = _start(_run(tiny, out, "1", "--wait"), second_log, TRAINED_LOG=str(tmp_path / "second.trained"))
    _wait_for(lambda: "waiting for it" in second_log.read_text(), "the second run to wait", second)
    assert f"pid {first.pid}" in second_log.read_text()
    gate.touch()
    assert _finish(first) == 0, first_log.read_text()
    assert _finish(second) == 0, second_log.read_text()
    assert _trained(tmp_path / "second.trained") == []  # every stage was found done
    _cells_once(out, [1])


def test_runs_on_disjoint_folds_share_a_fresh_run_directory_and_store(tiny, tmp_path):
    """Fold 1 and fold 2 at the same time into a fresh --out with a fresh store (the fan-out over
    processes): both finish, each trains its own cell only, the summary holds each cell once."""
    out, gate = tmp_path / "run", tmp_path / "gate"
    args = [a.replace(str(tiny["base"] / "store"), str(tmp_path / "store")) for a in tiny["args"]]
    tiny = {**tiny, "args": args}
    procs = {}
    for k in (1, 2):
        log, trained = tmp_path / f"fold{k}.log", tmp_path / f"fold{k}.trained"
        env = {"PAUSE_GATE": str(gate), "PAUSE_AT": "stage", "TRAINED_LOG": str(trained)}
        procs[k] = _start(_run(tiny, out, str(k)), log, **env)
        time.sleep(0.5)
    _wait_for(lambda: (out / "seed0" / "fold1" / "split.csv").is_file(), "fold 1 to start", procs[1])
    _wait_for(lambda: (out / "seed0" / "fold2" / "split.csv").is_file(), "fold 2 to start", procs[2])
    gate.touch()  # both hold their cell now: they train at the same time
    for k, proc in procs.items():
        assert _finish(proc) == 0, (tmp_path / f"fold{k}.log").read_text()
    for k in (1, 2):
        trained = _trained(tmp_path / f"fold{k}.trained")
        assert trained and {fold for _, fold, _ in trained} == {k}
        assert len(trained) == len(set(trained))
    _cells_once(out, [1, 2])


def test_prepare_refuses_a_store_in_use_and_waits_for_it_with_wait(tiny, tmp_path):
    store = tmp_path / "store"
    args = ["prepare", str(DEMO_CONFIG)] + [
        a.replace(str(tiny["base"] / "store"), str(store)) for a in tiny["args"]
    ]
    gate = tmp_path / "gate"
    first = _start(args, tmp_path / "first.log", PAUSE_GATE=str(gate), PAUSE_AT="manifest")
    _wait_for(Path(f"{gate}.reached").exists, "the first prepare to hold the store", first)
    second = _mtpkdot(args)
    waiting_log = tmp_path / "waiting.log"
    waiting = _start([*args, "--wait"], waiting_log)
    _wait_for(lambda: "waiting for it" in waiting_log.read_text(), "the --wait prepare to wait", waiting)
    gate.touch()
    assert _finish(first) == 0, (tmp_path / "first.log").read_text()
    assert _finish(waiting) == 0, waiting_log.read_text()
    assert "up to date" in waiting_log.read_text()
    code = _user_error_code(["prepare", str(DEMO_CONFIG), "--set", "nosuch.key=1"])
    assert second.returncode == code, second.stderr
    holder = f"is in use by pid {first.pid} on {socket.gethostname()} since "
    assert f"error: store {store} {holder}" in second.stderr and "--wait" in second.stderr


def test_a_run_takes_over_the_locks_a_killed_run_left(tiny, tmp_path):
    """A killed run leaves its records in the lock files (the flocks die with it): the next run on
    those cells says so and goes on; its own locks are released (emptied) at the end."""
    out = tmp_path / "run"
    pid = _dead_pid()
    dead = Holder(pid, socket.gethostname(), "2026-01-01 00:00:00 UTC").encode()
    cell = RunLayout(out).fold(0, 1).lock
    for path in (RunLayout(out).lock, cell):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(dead)
    res = _mtpkdot(_run(tiny, out, "1"))
    assert res.returncode == 0, res.stderr
    assert f"taking over the lock of seed 0 fold 1 of {out} from pid {pid} on " in res.stderr
    assert f"taking over the lock of run directory {out} from pid {pid}" in res.stderr
    assert cell.read_bytes() == b"" and RunLayout(out).lock.read_bytes() == b""
    assert store_lock(tiny["base"] / "store").read_bytes() == b""
    _cells_once(out, [1])
