"""Student training on cached features vs. recomputing the frozen backbones every step.

The released code runs the frozen R3D-18 (student and teacher) and the EMG ResNet-18 (teacher) on every
training batch; the pipeline caches their features once per fold. Both variants below run the same
MT-PKDOT student step (mmt fusion student + frozen T-Net, teacher pool with adapters, OT + centroid
loss, Adam): one on cached feature tensors, one that first recomputes the three backbone passes
from clips (3 x 10 x 112 x 112) and EMG spectrograms (1 x 65 x 127) under no_grad.

    python benchmarks/bench_student.py --json bench_student.json             # paper size: batch 128
    python benchmarks/bench_student.py --batch 8 --steps 2 --size 32         # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def build(batch: int, device: torch.device):  # noqa: ANN201
    from mtpkdot.config import DistillConfig
    from mtpkdot.distill import TeacherPool, build_method
    from mtpkdot.models import Adapter, LinearHead, Student, TNet, build_backbone, build_fusion
    from mtpkdot.tasks import Task

    task = Task.from_name("bl1_pa4")
    video = build_backbone("r3d_18").to(device).eval().requires_grad_(False)
    video_student = build_backbone("r3d_18").to(device).eval().requires_grad_(False)
    emg = build_backbone("resnet18_spec", in_channels=1).to(device).eval().requires_grad_(False)
    order = ["video", "emg"]
    teacher = build_fusion("mmt", [512, 512], 2)
    adapters = {m: Adapter(512, 512) for m in order}
    heads = {m: LinearHead(512, 2) for m in order}
    pool = TeacherPool(teacher, adapters, heads, order)
    student = Student(build_fusion("mmt", [512, 512], 2), {"emg": TNet(512, 512)}, order, ["video"])
    method = build_method(
        "mtpkdot", student, pool, task, DistillConfig(mtpkdot={"k": min(30, batch - 1)})
    ).to(device)
    opt = torch.optim.Adam(list(method.trainable_parameters()), lr=1e-4)
    return method, opt, video, video_student, emg


def run(batch: int, steps: int, size: int, frames: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    method, opt, video, video_student, emg = build(batch, device)
    clips = torch.randn(batch, 3, frames, size, size, device=device)
    specs = torch.randn(batch, 1, 65, 127, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    cached = {"video": torch.randn(batch, 512, device=device), "emg": torch.randn(batch, 512, device=device)}

    def step(recompute: bool) -> None:
        if recompute:
            with torch.no_grad():
                feats = {"video": video(clips), "emg": emg(specs)}
                student_video = video_student(clips)
        else:
            feats, student_video = cached, cached["video"]
        batch_ = {"student": {"video": student_video}, "teacher": feats, "y": y, "mask": None}
        opt.zero_grad(set_to_none=True)
        _, losses = method.forward_train(batch_)
        losses["total"].backward()
        opt.step()

    def timed(recompute: bool, n: int) -> float:
        step(recompute)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step(recompute)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n

    method.train()
    cached_s = timed(False, max(steps, 5))
    recompute_s = timed(True, steps)
    return {"cached_step_s": cached_s, "recompute_step_s": recompute_s, "speedup": recompute_s / cached_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed steps of the recomputing variant")
    ap.add_argument("--size", type=int, default=112, help="clip side (paper: 112)")
    ap.add_argument("--frames", type=int, default=10, help="clip frames (paper setting of the code: 10)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dev = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    res = run(args.batch, args.steps, args.size, args.frames, dev)
    out = {
        **{k: round(v, 5) for k, v in res.items()},
        "batch": args.batch,
        "size": args.size,
        "frames": args.frames,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None,
    }
    print(f"student step on cached features: {res['cached_step_s'] * 1e3:.1f} ms")
    print(f"student step recomputing frozen backbones: {res['recompute_step_s'] * 1e3:.1f} ms")
    print(
        f"speedup: {res['speedup']:.1f}x  (batch {args.batch}, clips 3x{args.frames}x{args.size}x{args.size}, {dev})"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
