"""``python tests/paused_cli.py COMMAND ARGS...``: ``mtpkdot COMMAND ARGS...`` that a test can pause.

With ``PAUSE_GATE=<file>`` it stops at ``PAUSE_AT`` (``stage``: before its first stage, when it holds
its cells; ``manifest``: when ``prepare`` reads the data, holding the store), touches ``<file>.reached``
and goes on once ``<file>`` exists. With ``TRAINED_LOG=<file>`` it appends ``seed fold stage`` for
each stage it trains. So two processes can be made to overlap exactly, and what each trained is known.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mtpkdot.cli import main
from mtpkdot.data.prepare import run as prepare
from mtpkdot.pipeline import graph, runner


def _pause() -> None:
    gate = os.environ.get("PAUSE_GATE")
    if not gate:
        return
    Path(gate + ".reached").touch()
    while not Path(gate).exists():
        time.sleep(0.05)


def _paused(fn, at: str):
    def wrapper(*args, **kwargs):
        if os.environ.get("PAUSE_AT") == at:
            _pause()
        return fn(*args, **kwargs)

    return wrapper


def _logged(fn):
    def train_and_test(ctx, stage, build, *rest, **kwargs):
        with open(os.environ["TRAINED_LOG"], "a") as fh:
            fh.write(f"{ctx.seed} {ctx.fold} {stage}\n")
        return fn(ctx, stage, build, *rest, **kwargs)

    return train_and_test


if __name__ == "__main__":
    graph.run_stage = _paused(graph.run_stage, "stage")
    prepare.read_manifest = _paused(prepare.read_manifest, "manifest")
    if os.environ.get("TRAINED_LOG"):
        runner.train_and_test = _logged(runner.train_and_test)
    sys.argv = ["mtpkdot", *sys.argv[1:]]
    main()
