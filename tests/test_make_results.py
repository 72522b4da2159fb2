"""results/make_results.sh (the published results): lists its settings, refuses an unknown one, and each setting
runs every (seed, fold) of 5 folds x 3 seeds exactly once on a config that validates (DRY_RUN prints the
commands instead of running them)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mtpkdot.config import SynthConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "results" / "make_results.sh"
SETTINGS = [
    "shared0",
    "shared1",
    "shared1_finetune",
    "shared1_crossfit",
    "wes",
    "lowdata",
    "affwild2",
    "physio",
    "sweep",
]
RUN_SETTINGS = [s for s in SETTINGS if s != "sweep"]


def _script(*args: str, dry: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT="/nonexistent/results")
    if dry:
        env["DRY_RUN"] = "1"
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_without_argument_it_lists_the_settings():
    res = _script(dry=False)
    assert res.returncode == 0
    assert res.stdout.splitlines()[-1].split()[1:] == SETTINGS


def test_an_unknown_setting_fails_before_anything_runs():
    res = _script("shared1", "nope")
    assert res.returncode == 2 and "unknown setting 'nope'" in res.stderr
    assert "started" not in res.stdout


def _overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


@pytest.mark.parametrize("name", RUN_SETTINGS)
def test_each_setting_runs_every_seed_and_fold_once_on_a_valid_config(name):
    res = _script(name)
    assert res.returncode == 0, res.stderr
    cmds = [shlex.split(line) for line in res.stdout.splitlines() if line.startswith("mtpkdot ")]
    verbs = [c[1] for c in cmds]
    assert verbs[0] == "prepare" and verbs[-2:] == ["evaluate", "report"]
    runs = [c for c in cmds if c[1] == "run"]
    jobs = sorted((c[c.index("--seeds") + 1], c[c.index("--folds") + 1]) for c in runs)
    assert jobs == sorted((str(s), str(k)) for s in range(3) for k in range(1, 6))
    assert all(
        c[c.index("--out") + 1] == f"/nonexistent/results/{name}" for c in cmds if c[1] in ("prepare", "run")
    )
    sets = {tuple(_overrides(c)) for c in runs}
    assert len(sets) == 1  # every run: one config
    assert _overrides(cmds[0]) == [
        *next(iter(sets)),
        f"data.workers={2}",
    ]  # prepare: the same, in 2 processes
    overrides = list(sets.pop())
    if "shared" not in SynthConfig.model_fields:  # a SynthConfig from before the shared knob
        knob = [o for o in overrides if o.startswith("data.synthetic.shared=")]
        assert bool(knob) == name.startswith("shared")
        overrides = [o for o in overrides if o not in knob]
    cfg = load_config(ROOT / runs[0][2], overrides)
    assert cfg.protocol.folds == 5 and cfg.protocol.scheme == "kfold"
    assert cfg.num_threads == 1 and cfg.name == name
    assert cfg.student.finetune_backbone == (name == "shared1_finetune")
    assert cfg.features.crossfit == (3 if name == "shared1_crossfit" else 0)
    expect = {"affwild2": ("synthetic_affwild2", ["video"]), "physio": ("synthetic_biovid", ["emg"])}
    dataset, prevalent = expect.get(name, ("synthetic_biovid", ["video"]))
    assert cfg.data.dataset == dataset and cfg.data.prevalent == prevalent


def test_the_sweep_runs_the_grid_in_the_shared1_world_over_three_seeds():
    res = _script("sweep")
    assert res.returncode == 0, res.stderr
    (cmd,) = [shlex.split(line) for line in res.stdout.splitlines() if line.startswith("mtpkdot ")]
    assert cmd[1:3] == ["sweep", "configs/demo.yaml"]
    assert cmd[cmd.index("--out") + 1] == "/nonexistent/results/sweep"
    grids = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--grid"]
    assert grids == ["batch_size=16,32,64", "anchors=4,8,15", "centroid=none,similarity"]
    cfg = load_config(ROOT / cmd[2], _overrides(cmd))
    assert cfg.seeds == [0, 1, 2] and cfg.protocol.folds == 5 and cfg.data.synthetic.shared == 1.0
    assert cfg.data.root == Path("/nonexistent/results/data_shared1")  # shared1's data, generated once
