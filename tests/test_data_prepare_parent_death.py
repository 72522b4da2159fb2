"""prepare's worker processes end when their parent dies (a SIGKILL leaves no orphan behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtpkdot.config import SynthConfig
from mtpkdot.data.synthetic import synth_biovid

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")

CONFIG = """data:
  dataset: biovid
  root: {root}
  modalities:
    video: {{kind: video, segments: 2, size: 8}}
    eda: {{kind: eda}}
  privileged: [eda]
"""


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc; psutil is not a dependency)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # the command name (2nd field) may hold spaces: the fields after its ')' are safe
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, todo = _parents(), set(), [pid]
    while todo:
        p = todo.pop()
        children = {c for c, pp in parents.items() if pp == p}
        todo += children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie left for a parent that does not reap it has ended)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_workers_end_when_prepare_is_killed(tmp_path: Path) -> None:
    root = synth_biovid(tmp_path / "d", SynthConfig(subjects=2, samples_per_class=12, size=16))
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(root=root))
    store = tmp_path / "run" / "store"
    cmd = [sys.executable, "-m", "mtpkdot", "prepare", str(config), "--out", str(tmp_path / "run")]
    parent = subprocess.Popen([*cmd, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:
            children = _descendants(parent.pid)
            if sum("spawn_main" in _cmdline(c) for c in children) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"prepare never started its two workers (exit code {parent.poll()})")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # the kill came while the workers were still preparing: a test of orphans, not of a normal exit
        assert not (store / "done").exists()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        survivors = {c: _cmdline(c) for c in children if _alive(c)}
        assert not survivors, f"alive 10 s after their parent was killed: {survivors}"
    finally:
        if parent.poll() is None:
            parent.kill()
        for c in children:
            if _alive(c):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c, signal.SIGKILL)
