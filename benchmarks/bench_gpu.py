"""The CUDA check, prepared for a machine with a GPU: one script, about 5 minutes.

    python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json

1. ``r3d18``: the r3d_18 video backbone at paper size (3 x 10 x 112 x 112, batch 64) with a linear head,
   training step (forward, backward, Adam) in float32, with autocast bf16, and bf16 with channels-last
   (``channels_last_3d``): clips/s and peak memory; feature extraction (eval, no_grad, batch 256) in
   float32 and bf16.
2. ``store_loading``: stage 1's own input path (``Store.array`` memmap, fancy-indexed by a shuffled
   batch, ``Normalizer`` to the device, ``engine.loop.run_epoch``, which reads each loss back) on a
   memory-mapped uint8 array at the real clip size, against the same steps on a batch already on the
   GPU: the share of the time the GPU waits for data, and the read alone per batch.
3. ``student_step``: the paper-size MT-PKDOT student step of ``bench_student.py`` (cached features vs
   recomputing the frozen backbones).
4. ``distill_term``: forward + backward of the distillation term, ours (``RelationalOTLoss``) against the
   released recipe (``bench_losses.ReferenceTerm``) at batch 64 to 512, and how many host
   synchronisations each makes (``torch.cuda.set_sync_debug_mode("warn")``; ours should make none).
5. ``nccl``: with two GPUs or more, two NCCL processes compute the relational loss on the gathered batch
   and compare it with one process on the whole batch; with one GPU it is skipped and says so.
6. ``demo_fold``: one demo fold (all six methods) on CUDA in float32, then with ``amp=true``: wall time
   and test accuracies (AMP must stay close to float32; not expected identical).

It refuses to run without CUDA. ``--device cpu --quick`` runs every part at tiny sizes on the CPU, to
check the script itself (its numbers mean nothing). ``--only r3d18 distill_term`` runs some parts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
PARTS = ("r3d18", "store_loading", "student_step", "distill_term", "nccl", "demo_fold")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call: ``warmup`` untimed calls, then ``steps`` calls between two synchronisations."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _autocast(device: torch.device, bf16: bool):  # noqa: ANN202
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _encoder(device: torch.device, channels_last: bool = False) -> tuple[nn.Module, torch.optim.Optimizer]:
    from mtpkdot.models import LinearHead, build_backbone

    torch.manual_seed(0)
    model = nn.Sequential(build_backbone("r3d_18"), LinearHead(512, 2)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


# ----------------------------------------------------------------------------------------------- 1
def r3d18(device: torch.device, shape: tuple[int, ...], batch: int, eval_batch: int, steps: int) -> dict:
    out: dict[str, dict] = {}
    y = torch.randint(0, 2, (batch,), device=device)
    for name, bf16, cl in (
        ("float32", False, False),
        ("bf16", True, False),
        ("bf16_channels_last", True, True),
    ):
        _reset_peak(device)
        model, opt = _encoder(device, cl)
        x = torch.randn(batch, *shape, device=device)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last_3d)

        def train_step(model=model, opt=opt, x=x, bf16=bf16) -> None:
            opt.zero_grad(set_to_none=True)
            with _autocast(device, bf16):
                loss = nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()

        model.train()
        s = _timed(train_step, steps, 3, device)
        out[name] = {"train_step_ms": 1000 * s, "train_clips_per_s": batch / s, "peak_mb": _peak_mb(device)}
        print(
            f"r3d_18 train {name}: {batch / s:.0f} clips/s ({1000 * s:.1f} ms per batch of {batch})",
            flush=True,
        )
        del model, opt, x
    for name, bf16 in (("float32", False), ("bf16", True)):
        model, _ = _encoder(device)
        model.eval()
        xe = torch.randn(eval_batch, *shape, device=device)

        def extract(model=model, xe=xe, bf16=bf16) -> None:
            with torch.no_grad(), _autocast(device, bf16):
                model(xe)

        s = _timed(extract, steps, 2, device)
        out[f"eval_{name}"] = {"clips_per_s": eval_batch / s}
        print(f"r3d_18 eval {name}: {eval_batch / s:.0f} clips/s", flush=True)
        del model, xe
    return {"input": list(shape), "batch": batch, "eval_batch": eval_batch, **out}


# ----------------------------------------------------------------------------------------------- 2
def store_loading(device: torch.device, shape: tuple[int, ...], batch: int, n: int, tmp: Path) -> dict:
    """Stage 1's input path against a batch already on the GPU (see the module docstring)."""
    from mtpkdot.engine.loop import index_batches, run_epoch
    from mtpkdot.pipeline.inputs import Normalizer

    t, h, w = shape[1:]
    path = tmp / "video.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, t, h, w, 3))
    rng = np.random.default_rng(0)
    for s in range(0, n, 64):  # written in chunks, as prepare does; then read back through a fresh map
        arr[s : s + 64] = rng.integers(0, 255, (min(64, n - s), t, h, w, 3), dtype=np.uint8)
    arr.flush()
    del arr
    arr = np.load(path, mmap_mode="r")
    norm = Normalizer("video", 4)
    y_all = torch.randint(0, 2, (n,), device=device)
    model, opt = _encoder(device)
    model.train()
    gen = torch.Generator().manual_seed(0)
    resident = norm(np.asarray(arr[:batch]), device)[0]

    def from_store(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        x, _ = norm(arr[idx.numpy()], device)
        loss = nn.functional.cross_entropy(model(x), y_all[idx.to(device)])
        return {"total": loss}, len(idx)

    def from_gpu(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        loss = nn.functional.cross_entropy(model(resident), y_all[idx.to(device)])
        return {"total": loss}, len(idx)

    def epoch(compute: Callable) -> float:
        batches = index_batches(torch.arange(n), batch, shuffle=True, generator=gen, drop_last=True)
        _sync(device)
        t0 = time.perf_counter()
        run_epoch(batches, compute, opt, device=device)
        _sync(device)
        return (time.perf_counter() - t0) / len(batches)

    epoch(from_store)  # warm-up: kernels, allocator, the page cache
    store_s, gpu_s = epoch(from_store), epoch(from_gpu)
    idx = index_batches(torch.arange(n), batch, shuffle=True, generator=gen)[0]
    read_s = _timed(lambda: np.asarray(arr[idx.numpy()]), 5, 1, device)
    res = {
        "clips": n,
        "batch": batch,
        "step_ms_from_store": 1000 * store_s,
        "step_ms_data_on_gpu": 1000 * gpu_s,
        "gpu_wait_share": max(0.0, 1 - gpu_s / store_s),
        "read_ms_per_batch": 1000 * read_s,
        "note": "float32 steps; run_epoch reads each loss back (one host synchronisation per step)",
    }
    print(
        f"store loading: {1000 * store_s:.1f} ms per step from the memmap store, {1000 * gpu_s:.1f} with the batch "
        f"on the GPU: the GPU waits {100 * res['gpu_wait_share']:.0f} % of the time "
        f"(read alone {1000 * read_s:.1f} ms per batch)",
        flush=True,
    )
    return res


# ----------------------------------------------------------------------------------------------- 3
def student_step(device: torch.device, batch: int, size: int, frames: int) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_student import run

    _reset_peak(device)
    step = run(batch, 3, size, frames, device)
    step["peak_mb"] = _peak_mb(device)
    print(f"student step: {json.dumps(step)}", flush=True)
    return step


# ----------------------------------------------------------------------------------------------- 4
def _host_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """Synchronising CUDA calls one call of ``fn`` makes (None on the CPU, where there is nothing to count)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def distill_term(device: torch.device, sizes: list[int], k: int, dim: int, repeats: int) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_losses import ReferenceTerm, features, step
    from mtpkdot.distill import RelationalOTLoss

    out = {}
    for b in sizes:
        kk = min(k, b - 1)
        ours, ref = RelationalOTLoss(kk, centroid="similarity"), ReferenceTerm(kk)
        student, teacher = features(b, dim, device, seed=b)
        ms = {
            name: 1000 * _timed(lambda term=term, s=student, t=teacher: step(term, s, t), repeats, 3, device)
            for name, term in (("ours", ours), ("reference", ref))
        }
        syncs = {
            name: _host_syncs(lambda term=term, s=student, t=teacher: step(term, s, t), device)
            for name, term in (("ours", ours), ("reference", ref))
        }
        out[str(b)] = {
            "ours_ms": ms["ours"],
            "reference_ms": ms["reference"],
            "ratio": ms["ours"] / ms["reference"],
            "ours_host_syncs": syncs["ours"],
            "reference_host_syncs": syncs["reference"],
        }
        print(f"distillation term b={b}: {json.dumps(out[str(b)])}", flush=True)
    return {"k": k, "dim": dim, "sizes": out}


# ----------------------------------------------------------------------------------------------- 5
def _nccl_worker(rank: int, port: int, out_dir: str, b: int, k: int) -> None:
    import torch.distributed as dist

    from mtpkdot.distill import RelationalOTLoss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    try:
        student, teacher = _nccl_data(b, torch.device("cuda", rank))
        rows = slice(rank * b // 2, (rank + 1) * b // 2)
        part = student[rows].detach().requires_grad_(True)
        out = RelationalOTLoss(k, centroid="similarity")(part, teacher[rows])
        (out["ot"] + out["centroid"]).backward()
        torch.save(
            {
                "ot": out["ot"].detach().cpu(),
                "centroid": out["centroid"].detach().cpu(),
                "grad": part.grad.cpu(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _nccl_data(b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 512, generator=g).to(device), torch.randn(b, 512, generator=g).to(device)


def nccl(device: torch.device, b: int = 64, k: int = 30) -> dict:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if device.type != "cuda" or torch.cuda.device_count() < 2:
        have = torch.cuda.device_count() if device.type == "cuda" else 0
        print(f"nccl: skipped ({have} GPU(s); the 2-process check needs two)", flush=True)
        return {"skipped": f"{have} GPU(s): the 2-process NCCL check needs two"}
    if not dist.is_nccl_available():
        return {"skipped": "this torch build has no NCCL"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_nccl_worker, args=(port, tmp, b, k), nprocs=2, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    from mtpkdot.distill import RelationalOTLoss

    student, teacher = _nccl_data(b, device)
    student.requires_grad_(True)
    out = RelationalOTLoss(k, centroid="similarity")(student, teacher)
    (out["ot"] + out["centroid"]).backward()
    grad = student.grad.cpu()
    res = {
        "batch": b,
        "max_abs_diff_ot": max(abs(float(r["ot"]) - float(out["ot"])) for r in ranks),
        "max_abs_diff_centroid": max(abs(float(r["centroid"]) - float(out["centroid"])) for r in ranks),
        # the gather's backward sums over ranks: each rank's gradient is world x the single-process rows
        "max_abs_diff_grad": max(
            float((r["grad"] / 2 - grad[i * b // 2 : (i + 1) * b // 2]).abs().max())
            for i, r in enumerate(ranks)
        ),
    }
    print(f"nccl: {json.dumps(res)}", flush=True)
    return res


# ----------------------------------------------------------------------------------------------- 6
def demo_fold(out: Path, device: str, amp: bool, quick: bool) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "mtpkdot",
        "demo",
        "--out",
        str(out),
        "--folds",
        "1",
        "--set",
        f"device={device}",
    ]
    if amp:
        cmd += ["--set", "amp=true"]
    if quick:
        cmd += ["--set", "data.synthetic.subjects=6", "--set", "data.synthetic.samples_per_class=4"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"demo on {device} (amp={amp}) failed with exit code {proc.returncode}")
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    res = {
        "wall_s": round(wall, 1),
        "accuracy": {m: float(a) for m, a in zip(summary["method"], summary["accuracy"], strict=True)},
    }
    print(f"demo fold amp={amp}: {json.dumps(res)}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to check the script")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run these parts only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures the GPU path only")
    device = torch.device(args.device)
    q = args.quick
    shape, batch = ((3, 4, 32, 32), 4) if q else ((3, 10, 112, 112), 64)
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "gpus": torch.cuda.device_count() if device.type == "cuda" else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": q,
    }
    tmp = Path(tempfile.mkdtemp(prefix="mtpkdot-gpu-"))
    runs: dict[str, Callable[[], object]] = {
        "r3d18": lambda: r3d18(device, shape, batch, 8 if q else 256, 2 if q else 20),
        "store_loading": lambda: store_loading(device, shape, batch, 16 if q else 2048, tmp),
        "student_step": lambda: student_step(device, 8 if q else 128, 32 if q else 112, 4 if q else 10),
        "distill_term": lambda: distill_term(
            device, [16] if q else [64, 128, 256, 512], 30, 512, 3 if q else 50
        ),
        "nccl": lambda: nccl(device),
        "demo_fold": lambda: {
            f"amp_{str(amp).lower()}": demo_fold(tmp / f"amp_{amp}", args.device, amp, q)
            for amp in (False, True)
        },
    }
    for part in PARTS:
        if part in args.only:
            t0 = time.perf_counter()
            results[part] = runs[part]()
            print(f"[{part}: {time.perf_counter() - t0:.0f} s]", flush=True)
            if args.json:  # after every part: a run cut short keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1))
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
