"""Two gloo processes on the CPU: the relational loss on the gathered batch gives the single-process
gradient, DDP's averaged parameter gradient equals the single-process one, and teacher selection agrees."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mtpkdot.dist import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_mean,
    all_reduce_sum,
    is_distributed,
    rank,
    world_size,
)
from mtpkdot.distill import RelationalOTLoss, select_teacher

WORLD, B, D_IN, D_S, D_T, K = 2, 12, 5, 6, 7, 4
LOCAL_TASK_LOSSES = [[0.1, 0.5, 0.3], [0.6, 0.2, 0.3]]  # rank-local argmins differ (0 and 1)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D_IN, dtype=torch.float64, generator=g)
    t = torch.randn(B, D_T, dtype=torch.float64, generator=g)
    torch.manual_seed(1)
    student = nn.Linear(D_IN, D_S).double()
    return x, t, student


def _loss_fn():
    return RelationalOTLoss(k=K, centroid="similarity", scaling=0.5)


def _worker(r: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=r, world_size=WORLD)
    try:
        x, t, student = _data()
        n = B // WORLD
        rows = slice(r * n, (r + 1) * n)
        model = nn.parallel.DistributedDataParallel(student)
        feats = model(x[rows])
        feats.retain_grad()
        out = _loss_fn()(feats, t[rows])
        (out["ot"] + out["centroid"]).backward()
        local = torch.tensor(LOCAL_TASK_LOSSES[r], dtype=torch.float64)
        choice = select_teacher(all_reduce_mean(local), joint_index=-1)
        gathered = all_gather_no_grad(torch.full((2,), float(r)))
        torch.save(
            {
                "ot": out["ot"].detach(),
                "centroid": out["centroid"].detach(),
                "feat_grad": feats.grad,
                "param_grads": [p.grad for p in model.parameters()],
                "choice": choice,
                "local_choice": select_teacher(local, joint_index=-1),
                "rank": rank(),
                "world": world_size(),
                "is_dist": is_distributed(),
                "sum": all_reduce_sum(torch.tensor([1.0])),
                "gathered": gathered,
            },
            Path(out_dir) / f"rank{r}.pt",
        )
        # DDP's reducer must go before its process group: destroyed after it, gloo can abort the process
        # ("terminate called without an active exception", SIGABRT; seen once in CI)
        del model, feats, out
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_helpers_are_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert not is_distributed() and rank() == 0 and world_size() == 1
    assert all_gather_with_grad(x) is x
    assert torch.equal(all_gather_no_grad(x), x)
    assert torch.equal(all_reduce_mean(x), x.detach()) and not all_reduce_sum(x).requires_grad


def test_two_gloo_processes_match_single_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # single process, the whole batch
    x, t, student = _data()
    feats = student(x)
    feats.retain_grad()
    out = _loss_fn()(feats, t)
    (out["ot"] + out["centroid"]).backward()
    n = B // WORLD
    for r, got in enumerate(res):
        assert got["is_dist"] and got["rank"] == r and got["world"] == WORLD
        assert float(got["sum"]) == WORLD
        assert got["gathered"].tolist() == [0.0, 0.0, 1.0, 1.0]
        # every rank computes the global loss value
        torch.testing.assert_close(got["ot"], out["ot"].detach(), rtol=0, atol=1e-10)
        torch.testing.assert_close(got["centroid"], out["centroid"].detach(), rtol=0, atol=1e-12)
        # the gather's backward sums over ranks (adjoint for the sum of the rank losses): world x dL/dx_r ...
        rows = slice(r * n, (r + 1) * n)
        torch.testing.assert_close(got["feat_grad"] / WORLD, feats.grad[rows], rtol=0, atol=1e-6)
        # ... which DDP's average over ranks turns into the single-process parameter gradient
        for g_ddp, p in zip(got["param_grads"], student.parameters(), strict=True):
            torch.testing.assert_close(g_ddp, p.grad, rtol=0, atol=1e-6)
        # teacher selection is global: both ranks pick the joint (mean losses 0.35, 0.35, 0.3)
        assert int(got["choice"]) == 2
    assert [int(g["local_choice"]) for g in res] == [0, 1], "the test data must disagree locally"
