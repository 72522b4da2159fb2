"""Benchmark ``prepare`` on a synthetic Biovid set: samples/s with 1 and 2 workers, and peak memory at
two dataset sizes (it must stay flat: nothing holds the whole dataset in RAM).

Each measurement runs in a fresh subprocess; peak memory is the larger of that process's and its
worker processes' ``ru_maxrss`` (``resource.getrusage``), which, unlike tracemalloc, sees numpy
buffers and memory-mapped pages.

    python benchmarks/bench_prepare.py --json bench_prepare.json            # 20 subjects (400 samples)
    python benchmarks/bench_prepare.py --subjects 4 --samples-per-class 2   # a tiny check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODALITIES = {
    "video": {"kind": "video", "segments": 8, "size": 112},
    "eda": {"kind": "eda", "column": "gsr", "lowpass_hz": 5.0, "normalize": "baseline"},
    "emg": {"kind": "emg", "column": "emg_corrugator", "window": [2.0, 5.0], "highpass_hz": 20.0},
}


def _child(root: str, store: str, workers: int) -> None:
    import resource

    # import the decoders first so that the timing is the work, not the imports (worker start-up, which
    # includes their imports, is part of the 2-worker timing: amortised on real sizes)
    import av  # noqa: F401
    import cv2  # noqa: F401
    import scipy.signal  # noqa: F401

    import mtpkdot.signals.physio  # noqa: F401
    import mtpkdot.signals.video  # noqa: F401
    from mtpkdot.config import DataConfig
    from mtpkdot.data import prepare

    cfg = DataConfig(dataset="biovid", root=root, modalities=MODALITIES, privileged=["eda", "emg"])
    t0 = time.perf_counter()
    s = prepare(cfg, store, workers=workers, progress=False)
    elapsed = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": len(s), "seconds": elapsed, "rss_main_mb": own, "rss_workers_mb": kids}))


def _measure(root: Path, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--_child", str(root), str(Path(tmp) / "store"), str(workers)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["workers"] = workers
    res["samples_per_s"] = res["n"] / res["seconds"]
    res["peak_mb"] = max(res["rss_main_mb"], res["rss_workers_mb"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--samples-per-class", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child(args._child[0], args._child[1], int(args._child[2]))
        return

    from mtpkdot.config import SynthConfig
    from mtpkdot.data.synthetic import synth_biovid

    results: dict = {"settings": {"modalities": MODALITIES, "subjects": args.subjects}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {"small": max(2, args.subjects // 2), "full": args.subjects}
        roots = {}
        for name, n_subj in sizes.items():
            cfg = SynthConfig(subjects=n_subj, samples_per_class=args.samples_per_class, part="B")
            roots[name] = synth_biovid(Path(tmp) / name, cfg, workers=2)
        for name, workers in (("full", 1), ("full", 2), ("small", 1)):
            r = _measure(roots[name], workers)
            r["dataset"] = name
            results["runs"].append(r)
            print(
                f"{name:>5} set, {r['n']:4d} samples, workers={workers}: {r['samples_per_s']:6.1f} samples/s, "
                f"peak {r['peak_mb']:6.0f} MB (main {r['rss_main_mb']:.0f}, workers {r['rss_workers_mb']:.0f})"
            )
    full1 = next(r for r in results["runs"] if r["dataset"] == "full" and r["workers"] == 1)
    small1 = next(r for r in results["runs"] if r["dataset"] == "small")
    results["peak_ratio_full_vs_small"] = full1["peak_mb"] / small1["peak_mb"]
    print(f"peak memory full / small (workers=1): {results['peak_ratio_full_vs_small']:.2f} (flat = about 1)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
