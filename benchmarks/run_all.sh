#!/usr/bin/env bash
# Run every benchmark at its reported setting and write benchmarks/results/*.json (quoted in BENCHMARKS.md).
# Run on a quiet machine: the numbers are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
mkdir -p "$R"
python benchmarks/bench_losses.py --json "$R/losses.json" --scaling-json "$R/losses_scaling.json" --scalings 0.5 0.7 0.9 0.99
python benchmarks/bench_student.py --json "$R/student.json"
python benchmarks/bench_models.py --json "$R/models.json"
python benchmarks/bench_prepare.py --json "$R/prepare.json"
python benchmarks/bench_prepare.py --real-size --json "$R/prepare_real.json"
python benchmarks/bench_prepare.py --real-size --bframes 0 --json "$R/prepare_real_bframes0.json"
python benchmarks/bench_demo.py --json "$R/demo.json"
