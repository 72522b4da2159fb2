"""Two gloo processes on the CPU: every trained stage runs through DistributedDataParallel, only rank 0
writes files, and a 2-process student epoch reproduces the 1-process epoch on the same global batches."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import tiny_overrides

TRAINED_STAGES = ["backbone_video", "backbone_eda", "teacher", "tnet", "adapters", "student_mtpkdot"]

# The student comparison: SGD, because Adam's first steps divide each gradient by its own magnitude,
# which turns float32 rounding on near-zero gradients into lr-sized weight differences; batches of 4
# (2 rows per rank, several steps per epoch; k=3 anchors need 4 rows after the gather); a learning
# rate large enough that the weights move far more than the tolerance.
STUDENT_EPOCH = ["student.epochs=1", "student.batch_size=4", "student.optimizer=sgd", "student.lr=0.05"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(base: Path, run_dir: Path, extra: list[str]):  # noqa: ANN202
    from mtpkdot.pipeline.demo import demo_config

    return demo_config(run_dir, tiny_overrides(base / "data", base / "store") + extra)


def _worker(rank: int, world: int, port: int, base: str, run_name: str, extra: list[str]) -> None:
    """One rank of ``run_experiment`` (fold 1, mtpkdot) that records every DDP it builds and, on
    rank 1, every file it writes (all atomic writes end in ``os.replace``)."""
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    from mtpkdot.pipeline import runner
    from mtpkdot.pipeline.experiment import run_experiment

    base_p = Path(base)
    written: list[str] = []
    wrapped: list[dict] = []
    initial: dict[str, dict[str, torch.Tensor]] = {}
    real_ddp = runner.DistributedDataParallel

    def ddp_spy(module, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        ddp = real_ddp(module, *args, **kwargs)
        wrapped.append(
            {
                "stage": module.stage,
                "is_ddp": isinstance(ddp, torch.nn.parallel.DistributedDataParallel),
                "modules": sorted(module.trained.keys()),
                "grad_params": [n for n, p in module.named_parameters() if p.requires_grad],
                # rank 0's buffers at every forward (named forward_sync_buffers from torch 2.13)
                "broadcast_buffers": getattr(ddp, "forward_sync_buffers", None)
                or getattr(ddp, "broadcast_buffers", None),
                "find_unused_parameters": ddp.find_unused_parameters,
            }
        )
        initial[module.stage] = {k: v.detach().clone() for k, v in module.trained.state_dict().items()}
        return ddp

    runner.DistributedDataParallel = ddp_spy
    real_replace = os.replace
    if rank != 0:

        def replace_spy(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            written.append(str(dst))
            return real_replace(src, dst, *a, **k)

        os.replace = replace_spy  # type: ignore[assignment]
    run_dir = base_p / run_name
    cfg = _config(base_p, run_dir, extra)
    try:
        run_experiment(cfg, run_dir, folds=[1], methods=["mtpkdot"], device="cpu", progress=False)
    finally:
        os.replace = real_replace
        with open(base_p / f"ddp_rank{rank}.json", "w") as fh:
            json.dump({"written": written, "wrapped": wrapped}, fh)
        torch.save(initial, base_p / f"initial_rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()


def _spawn(base: Path, run_name: str, extra: list[str]) -> list[dict]:
    mp.spawn(_worker, args=(2, _free_port(), str(base), run_name, extra), nprocs=2, join=True)
    return [json.loads((base / f"ddp_rank{r}.json").read_text()) for r in range(2)]


def _student_state(run_dir: Path) -> dict[str, torch.Tensor]:
    path = run_dir / "seed0" / "fold1" / "student_mtpkdot" / "last.pt"
    return torch.load(path, weights_only=False)["modules"]["student"]


@pytest.fixture(autouse=True)
def _gloo():
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")


def test_two_process_student_epoch_matches_one_process(tmp_path):
    """DDP's gradient average + the core's all-gather = the single-process update on the global batch."""
    from mtpkdot.pipeline.experiment import run_experiment

    one = tmp_path / "one"
    run_experiment(
        _config(tmp_path, one, STUDENT_EPOCH),
        one,
        folds=[1],
        methods=["mtpkdot"],
        device="cpu",
        progress=False,
    )
    # the same upstream stages for the 2-process run: only the student epoch runs there
    shutil.copytree(one, tmp_path / "two", ignore=shutil.ignore_patterns("student_mtpkdot", "summary.csv"))
    ranks = _spawn(tmp_path, "two", STUDENT_EPOCH)

    assert ranks[1]["written"] == [], f"rank 1 wrote {ranks[1]['written'][:5]}"
    for r in ranks:  # upstream stages were done: the student is the one module wrapped
        assert [w["stage"] for w in r["wrapped"]] == ["student_mtpkdot"]
        w = r["wrapped"][0]
        assert w["is_ddp"] and w["modules"] == ["student"]
        assert w["broadcast_buffers"] and not w["find_unused_parameters"]
        # what the optimiser trains: the student's fusion; its frozen T-Nets are left to DDP's ignore
        assert w["grad_params"] and all(n.startswith("trained.student.fusion.") for n in w["grad_params"])

    got, want = _student_state(tmp_path / "two"), _student_state(one)
    start = torch.load(tmp_path / "initial_rank0.pt")["student_mtpkdot"]
    assert set(got) == set(want) and not any(k.startswith("module.") for k in got)
    fusion = [k for k in want if k.startswith("fusion.")]
    moved = max(float((want[k] - start["student." + k]).abs().max()) for k in fusion)
    assert moved > 1e-4, "the epoch did not train the student: the comparison would be empty"
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5, msg=f"student weight {k}")
    assert (tmp_path / "two" / "summary.csv").is_file()
    # the logged training losses are the global epoch's (both ranks' shards), as one process logs them
    rows = [
        pd.read_csv(d / "seed0" / "fold1" / "student_mtpkdot" / "metrics.csv")
        for d in (one, tmp_path / "two")
    ]
    train_cols = [c for c in rows[0].columns if c.startswith("train_")]
    assert train_cols and list(rows[1].columns) == list(rows[0].columns)
    for c in train_cols:
        # nan_ok: the epoch-0 row (the untrained student) has no training losses
        assert rows[1][c].tolist() == pytest.approx(rows[0][c].tolist(), rel=1e-5, abs=1e-7, nan_ok=True), c


@pytest.mark.slow
def test_two_process_run_wraps_every_trained_stage_and_only_rank0_writes(tmp_path):
    ranks = _spawn(tmp_path, "run", [])
    assert ranks[1]["written"] == [], f"rank 1 wrote {ranks[1]['written'][:5]}"
    for r in ranks:
        stages = [w["stage"] for w in r["wrapped"]]
        assert stages == TRAINED_STAGES, stages  # the feature cache (rank 0, no training) is not wrapped
        assert all(w["is_ddp"] and w["grad_params"] and w["broadcast_buffers"] for w in r["wrapped"])
        mods = {w["stage"]: w["modules"] for w in r["wrapped"]}
        assert mods["adapters"] == ["adapters", "heads"] and mods["backbone_video"] == ["model"]
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert set(summary["method"]) == {"lower_bound", "mtpkdot", "teacher"}
    metrics = pd.read_csv(tmp_path / "run" / "seed0" / "fold1" / "student_mtpkdot" / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1, 2]  # the epoch-0 row is the evaluation before any step
    metrics = metrics[metrics["epoch"] > 0]
    assert metrics["train_total"].notna().all()
    # teacher selection is global: each batch selects one teacher
    assert (metrics[["sel_joint", "sel_video", "sel_eda"]].sum(axis=1) > 0).all()
    # checkpoints hold the unwrapped modules: a single-process resume loads them
    state = torch.load(
        tmp_path / "run" / "seed0" / "fold1" / "backbone_video" / "best.pt", weights_only=False
    )
    assert not any(k.startswith(("module.", "trained.")) for k in state["modules"]["model"])
