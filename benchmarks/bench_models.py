"""Training-step time and feature-extraction throughput of every backbone (and fusion) on this machine.

A training step is forward + backward + Adam step of the backbone with a 2-way linear head, in train mode.
Throughput is eval mode under ``torch.no_grad``. Each number is the median of ``--repeats`` timed runs
after one untimed warm-up run.

    python benchmarks/bench_models.py --json bench_models.json            # paper and demo sizes
    python benchmarks/bench_models.py --quick --json /tmp/bench.json      # tiny sizes: proves it works
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtpkdot.atomic import atomic_write_text
from mtpkdot.models import build_backbone, build_fusion, count_parameters

# (backbone, kwargs, input shape without batch, setting). Spectrograms, signals and features have the
# same size in the paper and in the demo, so they appear once.
BACKBONE_CASES: list[tuple[str, dict[str, Any], tuple[int, ...], str]] = [
    ("r3d_18", {}, (3, 10, 112, 112), "paper (Biovid video)"),
    ("r3d_18", {}, (3, 8, 64, 64), "demo"),
    ("tiny3d", {}, (3, 8, 64, 64), "demo"),
    ("resnet18_spec", {"in_channels": 1}, (1, 65, 127), "paper/demo (EMG spectrogram)"),
    ("resnet18_spec", {"in_channels": 1}, (1, 64, 107), "paper (audio spectrogram)"),
    ("cnn1d", {"in_channels": 1}, (1, 2816), "paper/demo (EDA 5.5 s at 512 Hz)"),
    ("mlp", {"in_dim": 512}, (512,), "paper/demo (features)"),
]
QUICK_SHAPES = {"r3d_18": (3, 4, 32, 32), "tiny3d": (3, 4, 32, 32)}


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocator, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_backbone(
    name: str, kwargs: dict[str, Any], shape: tuple[int, ...], args: argparse.Namespace
) -> dict:
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs)
    head = nn.Linear(model.out_dim, 2)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-4)
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, 2, (args.batch,))

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(model(x)), y).backward()
        opt.step()

    train_s = median_seconds(train_step, args.repeats)
    xe = torch.randn(args.eval_batch, *shape)

    def extract() -> None:
        model.eval()
        with torch.no_grad():
            model(xe)

    eval_s = median_seconds(extract, args.repeats)
    return {
        "model": name,
        "input": "x".join(map(str, shape)),
        "params": count_parameters(model),
        "train_batch": args.batch,
        "train_step_s": train_s,
        "eval_batch": args.eval_batch,
        "throughput_per_s": args.eval_batch / eval_s,
    }


def bench_fusion(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    fusion = build_fusion(name, [512, 512], 2)
    opt = torch.optim.Adam(fusion.parameters(), lr=1e-4)
    feats = [torch.randn(args.fusion_batch, 512), torch.randn(args.fusion_batch, 512)]
    y = torch.randint(0, 2, (args.fusion_batch,))

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(fusion(feats)[0], y).backward()
        opt.step()

    def extract() -> None:
        with torch.no_grad():
            fusion(feats)

    fusion.train()
    train_s = median_seconds(train_step, args.repeats)
    fusion.eval()
    eval_s = median_seconds(extract, args.repeats)
    return {
        "model": f"fusion {name}",
        "input": "2 x 512",
        "params": count_parameters(fusion),
        "train_batch": args.fusion_batch,
        "train_step_s": train_s,
        "eval_batch": args.fusion_batch,
        "throughput_per_s": args.fusion_batch / eval_s,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--quick", action="store_true", help="tiny clips, batch 2, one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="training-step batch")
    parser.add_argument("--eval-batch", type=int, default=32, help="feature-extraction batch")
    parser.add_argument("--fusion-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.batch, args.eval_batch, args.fusion_batch = 1, 2, 2, 16
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    seen = set()
    for name, kwargs, shape, setting in BACKBONE_CASES:
        if args.quick:
            shape = QUICK_SHAPES.get(name, shape)
            if (name, shape) in seen:
                continue
            seen.add((name, shape))
        row = {"setting": "quick" if args.quick else setting, **bench_backbone(name, kwargs, shape, args)}
        rows.append(row)
        print(
            f"{row['model']:<16} {row['input']:<14} {row['setting']:<34} params {row['params']:>11,}  "
            f"train step (b={row['train_batch']}) {row['train_step_s'] * 1000:9.1f} ms  "
            f"extract {row['throughput_per_s']:9.1f}/s (b={row['eval_batch']})",
            flush=True,
        )
    for name in ("concat", "jca", "mmt"):
        row = {"setting": "teacher/student", **bench_fusion(name, args)}
        rows.append(row)
        print(
            f"{row['model']:<16} {row['input']:<14} {row['setting']:<34} params {row['params']:>11,}  "
            f"train step (b={row['train_batch']}) {row['train_step_s'] * 1000:9.1f} ms  "
            f"forward {row['throughput_per_s']:9.1f}/s",
            flush=True,
        )
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "quick": args.quick,
        "repeats": args.repeats,
        "results": rows,
    }
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
