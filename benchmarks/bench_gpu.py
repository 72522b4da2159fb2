"""The CUDA check, prepared for a machine with a GPU (issue 5, item 8): one script, a few minutes.

    python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json

1. one demo fold (all six methods) on CUDA in float32, then the same fold with mixed precision (`--amp`),
   each in a fresh run directory: wall time, peak GPU memory, and the test accuracies (AMP must stay
   close to float32; the numbers are not expected to be identical);
2. the paper-size student step of `bench_student.py` on CUDA (cached features vs recomputing the
   frozen backbones).
It refuses to run without CUDA (nothing is measured on the CPU here: `bench_demo.py` and
`bench_student.py` do that). `--device cpu` is accepted only to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def demo_fold(out: Path, device: str, amp: bool) -> dict[str, object]:
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
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"demo on {device} (amp={amp}) failed with exit code {proc.returncode}")
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    return {
        "wall_s": round(wall, 1),
        "accuracy": {m: float(a) for m, a in zip(summary["method"], summary["accuracy"], strict=True)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to check the script")
    ap.add_argument("--batch", type=int, default=128, help="student step batch (paper: 128)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures the GPU path only")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_student import run as student_step

    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "machine": platform.platform(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="mtpkdot-gpu-"))
    for amp in (False, True):
        results[f"demo_fold_amp_{str(amp).lower()}"] = demo_fold(tmp / f"amp_{amp}", args.device, amp)
        print(json.dumps({f"demo fold amp={amp}": results[f"demo_fold_amp_{str(amp).lower()}"]}))
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = student_step(args.batch, 3, 112, 10, torch.device(args.device))
    if args.device == "cuda":
        step["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    results["student_step"] = step
    print(json.dumps({"student step": step}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
