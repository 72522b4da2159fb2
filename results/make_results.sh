#!/usr/bin/env bash
# Rebuild the published results quoted in README.md and BENCHMARKS.md ("Results on the synthetic data").
#
# All settings use configs/demo.yaml (synthetic Biovid layout: face video + EDA, BL1 vs PA4, tiny3d / cnn1d
# backbones, concat fusion, frozen backbones) on 40 synthetic subjects with 5 subject-wise folds x 3 seeds,
# and differ only in the generator's modality strengths, the number of training subjects or one switch:
#   sew       generator defaults (video 1, EDA 1): the privileged EDA is the stronger modality (SEW, Biovid A)
#   wes       video strength 3, EDA 0.3: the video is the stronger modality (WES, as Biovid B / Affwild2)
#   lowdata   sew with only 8 training subjects per fold (validation and test subjects unchanged)
#   finetune  sew with student.finetune_backbone=true (the student's video backbone trains end to end)
#   sweep     sew, 5 folds x 1 seed, mtpkdot students: batch size x anchors (Fig. 7) x centroid (Table VI)
# Usage: bash results/make_results.sh   (about 40 minutes on 2 CPU cores; resumable: rerun to continue)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/runs/published}
SEW=(--set data.synthetic.video_strength=1.0 --set data.synthetic.physio_strength=1.0)
WES=(--set data.synthetic.video_strength=3.0 --set data.synthetic.physio_strength=0.3)
COMMON=(--set data.synthetic.subjects=40 --set protocol.folds=5 --set num_threads=1)

run() {  # run NAME DATA_NAME ARGS...
  local name=$1 data=$2
  shift 2
  mtpkdot run configs/demo.yaml --out "$OUT/$name" --seeds 0,1,2 --set "name=$name" \
    --set "data.root=$OUT/data_$data" "${COMMON[@]}" "$@" > "$OUT/$name.log" 2>&1
}

mkdir -p "$OUT"
(run sew sew "${SEW[@]}" && run lowdata sew "${SEW[@]}" --set protocol.train_subjects=8 &&
  run finetune sew "${SEW[@]}" --set student.finetune_backbone=true) &
(run wes wes "${WES[@]}" &&
  mtpkdot sweep configs/demo.yaml --out "$OUT/sweep" --set name=sweep --set "data.root=$OUT/data_sweep" \
    "${COMMON[@]}" "${SEW[@]}" --grid batch_size=16,32,64 --grid anchors=4,8,15 --grid centroid=none,similarity --methods mtpkdot \
    > "$OUT/sweep.log" 2>&1) &
wait

# Copy the light outputs (tables, reports, figures) into results/; checkpoints and data stay in $OUT.
for name in sew wes lowdata finetune sweep; do
  [ -d "$OUT/$name" ] || continue
  mkdir -p "results/$name"
  (cd "$OUT/$name" && cp -r $(ls -d summary.csv results.csv sweep.csv sweep.json report.md report.html \
    sweep_report.md sweep_report.html figures 2>/dev/null) "$OLDPWD/results/$name/")
done
python results/summarize.py "$OUT"
echo "results written to results/"
