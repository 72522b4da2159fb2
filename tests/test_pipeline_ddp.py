"""Two gloo processes on the CPU: the data-parallel run finishes and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch.multiprocessing as mp
from tests.test_pipeline_run import tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, base: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    import torch.distributed as dist

    from mtpkdot.pipeline.demo import demo_config
    from mtpkdot.pipeline.experiment import run_experiment

    base_p = Path(base)
    run_dir = base_p / "run"
    written: list[str] = []
    if rank != 0:  # record every atomic write (they all end in os.replace) that rank 1 makes
        real_replace = os.replace

        def spy(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003
            written.append(str(dst))
            return real_replace(src, dst, *a, **k)

        os.replace = spy  # type: ignore[assignment]
    cfg = demo_config(run_dir, tiny_overrides(base_p / "data", base_p / "store"))
    try:
        run_experiment(cfg, run_dir, folds=[1], methods=["mtpkdot"], device="cpu", progress=False)
    finally:
        if rank != 0:
            with open(base_p / f"written_rank{rank}.json", "w") as fh:
                json.dump(written, fh)
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_run_only_rank0_writes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    written = json.loads((tmp_path / "written_rank1.json").read_text())
    assert written == [], f"rank 1 wrote {written[:5]}"
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert set(summary["method"]) == {"mtpkdot", "teacher"}
    metrics = pd.read_csv(tmp_path / "run" / "seed0" / "fold1" / "student_mtpkdot" / "metrics.csv")
    assert len(metrics) == 2 and metrics["train_total"].notna().all()
    # teacher selection is global: both ranks agree, so each batch is counted once per rank-0 log
    assert (metrics[["sel_joint", "sel_video", "sel_eda"]].sum(axis=1) > 0).all()
