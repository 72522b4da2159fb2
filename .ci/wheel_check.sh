#!/usr/bin/env bash
# The wheel works on its own (no file of the checkout on the path): build it, install it into a fresh venv outside the repository
# and, from a temporary folder, run `mtpkdot --version`, `mtpkdot config`, `mtpkdot demo --help` and a
# `mtpkdot run` of a shipped config at tiny size. Needs `build` (in the test extra) in the calling Python.
# Usage: bash .ci/wheel_check.sh   (about 2-4 minutes, most of it installing torch into the fresh venv)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mtpkdot-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { echo "wheel check: $*"; }

step "build"
# from a copy of what the wheel is made of: a build/ folder left in the repository would leak stale files
mkdir "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/src" "$work/src/"
rm -rf "$work"/src/src/*.egg-info
python -m build --wheel --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 || {
  cat "$work/build.log"
  exit 1
}
wheel=("$work"/dist/mtpkdot-*.whl)

step "every config of configs/ is in the wheel"
python - "$wheel" "$repo/configs" <<'EOF'
import sys, zipfile
from pathlib import Path

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [p.name for p in sorted(Path(sys.argv[2]).glob("*.yaml")) if f"mtpkdot/resources/{p.name}" not in names]
if missing:
    sys.exit(f"configs missing from the wheel: {missing}")
EOF

step "install into a fresh venv"
python -m venv "$work/venv"
# torch first: a plain 'torch' requirement would pull a multi-GB CUDA build (as .ci/run does).
{
  "$work/venv/bin/pip" install -q torch==2.13.0 && "$work/venv/bin/pip" install -q "${wheel[0]}"
} > "$work/install.log" 2>&1 || {
  cat "$work/install.log"
  exit 1
}

mkdir "$work/cwd"
cd "$work/cwd"
export PATH="$work/venv/bin:$PATH" MTPKDOT_NO_PROGRESS=1
unset PYTHONPATH
python -c "import mtpkdot, sys; sys.exit(0 if '$repo' not in mtpkdot.__file__ else 'imports the repository')"

step "mtpkdot --version"
version="$(python -c 'import mtpkdot; print(mtpkdot.__version__)')"
test "$(mtpkdot --version)" = "mtpkdot $version"

step "mtpkdot config"
mtpkdot config
test "$(mtpkdot config | wc -l)" -eq "$(ls "$repo"/configs/*.yaml | wc -l)"
mtpkdot config biovid_b > biovid_b.yaml
cmp biovid_b.yaml "$repo/configs/biovid_b.yaml"

step "mtpkdot demo --help"
mtpkdot demo --help > /dev/null

step "mtpkdot run demo (tiny)"
tiny=(
  data.synthetic.subjects=6 data.synthetic.samples_per_class=3 data.synthetic.size=24
  data.synthetic.duration=2.0 data.modalities.video.size=16 data.modalities.video.segments=4
  data.modalities.video.feature_dim=16 "data.modalities.video.backbone_kwargs={width: 4}"
  "data.modalities.eda.window=[0.0, 2.0]" data.modalities.eda.feature_dim=16 protocol.folds=2
  protocol.val_subjects=0.3 adapters.hidden=8 "tnet.hidden=[8]" distill.k=3 student.batch_size=8
  teacher.batch_size=8 num_threads=1
)
for sec in data.modalities.video.train data.modalities.eda.train teacher adapters tnet student; do
  tiny+=("$sec.epochs=2")
done
sets=()
for s in "${tiny[@]}"; do sets+=(--set "$s"); done
mtpkdot run demo --out run --device cpu --folds 1 --methods none,mtpkdot "${sets[@]}" > run.log 2>&1 || {
  cat run.log
  exit 1
}
test -s run/summary.csv
test -d data # the shipped config's data.root (data) resolved against this folder, not the package's
step "ok ($(basename "${wheel[0]}"))"
