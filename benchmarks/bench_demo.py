"""Wall time and peak memory of `mtpkdot demo` (the README's first command), in a subprocess.

    python benchmarks/bench_demo.py --json bench_demo.json            # the real number (defaults)
    python benchmarks/bench_demo.py --set data.synthetic.subjects=6   # a quick check

Peak RSS is the largest resident set of the demo process and its children (``RUSAGE_CHILDREN``).
The target: <= 10 minutes and <= 3 GB on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="demo folder (default: a fresh temporary one)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override passed to the demo")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="mtpkdot-demo-")) / "demo"
    cmd = [sys.executable, "-m", "mtpkdot", "demo", "--out", str(out)]
    for s in args.sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"demo failed with exit code {proc.returncode}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    result = {
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "overrides": args.sets,
        "out": str(out),
    }
    print(proc.stdout.strip().split("\nresults:")[0])
    print(f"\nmtpkdot demo: {result['wall_s']} s wall, peak RSS {result['peak_rss_mb']} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
