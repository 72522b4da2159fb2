#!/usr/bin/env bash
# Make the published results (README.md and BENCHMARKS.md, "Results on the synthetic data"), one setting
# at a time, on the credible protocol: 5 subject-wise folds x 3 seeds (repeated CV, one partition per seed),
# every applicable method plus lower_bound, none and teacher.
#
#   bash results/make_results.sh              list the settings
#   bash results/make_results.sh SETTING ...  run these settings (resumable: rerun to continue)
#   bash results/make_results.sh all          run every setting, one after the other
#   DRY_RUN=1 bash results/make_results.sh S  print the commands instead of running them
#
# Each setting writes its run to $OUT/<setting> (default runs/results/<setting>; checkpoints and data stay
# there) and copies the light outputs (summary.csv, results.csv, report.md/.html, figures) to
# results/<setting>/, so each finished setting can be committed on its own. JOBS (default 2) worker
# processes of one thread each share a setting's 15 (seed, fold) runs.
#
# Budget: every setting under 30 minutes and all under 2 hours on 2 CPU cores. Measured wall times of the
# published run (2026-12-03, the 2-core machine of this project, JOBS=2; a helper's jobs ran beside it at
# nice 19), from nothing (data generation, prepare, 15 folds, report):
#
# setting           what                                                                 wall time
# shared0           known-answer world, shared 0 (the truth: "no gain")                  11.5 min (*)
# shared1           known-answer world, shared 1 (the video holds what the EDA            5.3 min
#                   teacher encodes)
# shared1_finetune  shared1, the student's video backbone fine-tuned                     10.7 min
# shared1_crossfit  shared1, cross-fitted teacher-side features, K = 3                    10.6 min
# wes               video strength 3, EDA 0.3: video the stronger one                     5.4 min
# lowdata           video 1, EDA 1, 8 training subjects per fold                          3.1 min
# affwild2          Affwild2-like: valence/arousal regression, video + audio              2.4 min
#                   (privileged), joint cross-attention, CCC
# physio            physiological student: EMG (prevalent), video (privileged),          9.6 min
#                   reverse T-Net, mmt, synthetic Biovid B
# all                                                                                    58.5 min
# sweep             shared1 data, batch 16/32/64 x anchors 4/8/15 x centroid, none +      23.3 min (**)
#                   MT-PKDOT per point (Fig. 7, Table VI)
# (**) about 12 of its minutes shared the 2 cores with a CI run and an install; not part of "all" above.
# (*) includes generating the data shared by shared0 and lowdata, and one restart (its first attempt
# failed on a report race, fixed by `run --no-report`; the finished folds were kept). The shared1_*
# settings reuse shared1's data folder, so run after it they skip its generation. shared1_crossfit's
# 10.6 min are its first, complete run; its published results come from rerunning every stage after the
# backbones (2.2 min) once the cross-fitted features were mapped into the stage-1 coordinates (5d05efc).
# Headroom: with about an hour for all eight, the Biovid settings could take more subjects (more power)
# and stay inside the budget; the sizes were kept as fixed before the run.
#
# What was traded for the budget (all settings): the demo's model sizes (tiny3d width 8 on 8 x 32 x 32
# clips instead of R3D-18 on 112 x 112, 64-d features, 10-20 epochs with early stopping) and 40 synthetic
# subjects (10 samples per subject and class). The Biovid settings keep the demo's concat teacher and
# cnn1d EDA backbone. affwild2: 5 subject-wise k folds instead of the official split (one test set gives
# no repeated CV), 30 synthetic videos, sequences of 4 clips, tiny3d video and ResNet-18 on 32 x 32 audio
# spectrograms, jca with k = 16, hidden 64. physio: ResNet-18 on the EMG spectrogram (paper) but 5
# epochs, mmt with d_model 64, 1 layer; the video teacher branch is the demo's tiny3d. The known-answer
# knob is data.synthetic.shared (> 0 puts the per-sample latent into the face video). Students: the Biovid
# settings keep the demo's (Adam, lr 1e-4 as the paper, batch 32 and k 8 instead of 128 and 30: about
# 480 training samples per fold, see configs/demo.yaml); affwild2 and physio use batch 32 and k 8 for the
# same reason but lr 1e-3, set when these two settings were first written and not measured against the
# paper's (5e-3 for Affwild2, 1e-4 for the physiological student): a difference from the paper, not a
# choice made on results.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/runs/results}
SEEDS=${SEEDS:-0 1 2}
FOLDS=${FOLDS:-1 2 3 4 5}
JOBS=${JOBS:-2}

SETTINGS=(shared0 shared1 shared1_finetune shared1_crossfit wes lowdata affwild2 physio sweep)
BIOVID=(--set data.synthetic.subjects=40 --set data.synthetic.samples_per_class=10 --set protocol.folds=5)
SEW=(--set data.synthetic.video_strength=1.0 --set data.synthetic.physio_strength=1.0)
AFFWILD2=(
  --set data.dataset=synthetic_affwild2 --set data.synthetic.subjects=30 --set data.synthetic.size=48
  --set data.sequence_length=4 --set protocol.scheme=kfold --set protocol.folds=5 --set protocol.val_subjects=0.25
  --set data.modalities.video.backbone=tiny3d --set "data.modalities.video.backbone_kwargs={width: 8}"
  --set data.modalities.video.size=32 --set data.modalities.video.feature_dim=64
  --set "backbones.video={epochs: 10, batch_size: 16, lr: 1.0e-3, patience: 4}"
  --set data.modalities.audio.freq_bins=32 --set data.modalities.audio.time_bins=32
  --set data.modalities.audio.feature_dim=64
  --set "backbones.audio={epochs: 10, batch_size: 16, lr: 1.0e-3, patience: 4}"
  --set "teacher.fusion_kwargs={k: 16, hidden: 64}" --set teacher.epochs=20
  --set adapters.hidden=64 --set adapters.epochs=15 --set tnet.hidden=[64] --set tnet.epochs=20
  --set student.epochs=15 --set student.batch_size=32 --set student.lr=1.0e-3 --set distill.pkdot.k=8 --set distill.mtpkdot.k=8
)
PHYSIO=(
  --set data.dataset=synthetic_biovid --set data.synthetic.part=B --set data.synthetic.subjects=40
  --set data.synthetic.samples_per_class=10 --set data.synthetic.size=48 --set data.synthetic.duration=5.5
  --set data.modalities.video.face=none --set data.modalities.video.backbone=tiny3d
  --set "data.modalities.video.backbone_kwargs={width: 8}" --set data.modalities.video.size=32
  --set data.modalities.video.segments=8 --set data.modalities.video.feature_dim=64
  --set "backbones.video={epochs: 10, batch_size: 16, lr: 1.0e-3, patience: 4}"
  --set data.modalities.emg.feature_dim=64
  --set "backbones.emg={epochs: 5, batch_size: 32, lr: 1.0e-3, patience: 3}"
  --set "teacher.fusion_kwargs={d_model: 64, heads: 2, ff_dim: 64, layers: 1, dropout: 0.1}"
  --set teacher.epochs=20 --set teacher.lr=1.0e-3 --set teacher.patience=5
  --set adapters.hidden=64 --set adapters.epochs=15 --set tnet.hidden=[64] --set tnet.epochs=20
  --set student.epochs=15 --set student.batch_size=32 --set student.lr=1.0e-3 --set distill.pkdot.k=8 --set distill.mtpkdot.k=8
)

# config, data folder (settings with the same data share it), then the setting's --set arguments
setting() {
  case $1 in
    shared0) ARGS=(configs/demo.yaml shared0 "${BIOVID[@]}" "${SEW[@]}" --set data.synthetic.shared=0.0) ;;
    shared1) ARGS=(configs/demo.yaml shared1 "${BIOVID[@]}" "${SEW[@]}" --set data.synthetic.shared=1.0) ;;
    shared1_finetune) ARGS=(configs/demo.yaml shared1 "${BIOVID[@]}" "${SEW[@]}" --set data.synthetic.shared=1.0
      --set student.finetune_backbone=true) ;;
    shared1_crossfit) ARGS=(configs/demo.yaml shared1 "${BIOVID[@]}" "${SEW[@]}" --set data.synthetic.shared=1.0
      --set features.crossfit=3) ;;
    wes) ARGS=(configs/demo.yaml wes "${BIOVID[@]}" --set data.synthetic.video_strength=3.0
      --set data.synthetic.physio_strength=0.3) ;;
    lowdata) ARGS=(configs/demo.yaml sew "${BIOVID[@]}" "${SEW[@]}" --set protocol.train_subjects=8) ;;
    affwild2) ARGS=(configs/affwild2.yaml affwild2 "${AFFWILD2[@]}") ;;
    physio) ARGS=(configs/biovid_b_physio_student.yaml physio "${PHYSIO[@]}") ;;
    sweep) ARGS=(configs/demo.yaml shared1 "${BIOVID[@]}" "${SEW[@]}" --set data.synthetic.shared=1.0) ;;
    *) echo "unknown setting '$1' (settings: ${SETTINGS[*]})" >&2; exit 2 ;;
  esac
}

do_or_print() {  # a command, or its printout with DRY_RUN=1
  if [ -n "${DRY_RUN:-}" ]; then printf '%s\n' "$(printf '%q ' "$@")"; else "$@"; fi
}

# Fig. 7 and Table VI: student batch size x anchors x centroid term, MT-PKDOT and none per point, in the
# shared-1 world (the one where the teacher's knowledge shows in the video), 5 folds x 3 seeds
SWEEP_GRID=(--grid batch_size=16,32,64 --grid anchors=4,8,15 --grid centroid=none,similarity)

publish() {  # publish NAME RUN_DIR FILE...: copy the light outputs that exist to results/NAME/
  local name=$1 run=$2
  shift 2
  mkdir -p "results/$name"
  (cd "$run" && cp -r $(ls -d "$@" 2>/dev/null) "$OLDPWD/results/$name/")
  echo "$name: done $(date -u +%H:%M:%S), results/$name/"
}

run_sweep() {
  local config=${ARGS[0]} data=${ARGS[1]} log=$OUT/sweep.log
  local sets=("${ARGS[@]:2}" --set name=sweep --set "data.root=$OUT/data_$data" --set "seeds=[0, 1, 2]"
    --set num_threads=2)
  if [ -n "${DRY_RUN:-}" ]; then log=/dev/stdout; else mkdir -p "$OUT"; fi
  echo "sweep: started $(date -u +%H:%M:%S), log $log"
  do_or_print mtpkdot sweep "$config" --out "$OUT/sweep" --methods none,mtpkdot "${SWEEP_GRID[@]}" \
    "${sets[@]}" > "$log" 2>&1 || { echo "sweep: failed, see $log" >&2; exit 1; }
  [ -n "${DRY_RUN:-}" ] && return
  publish sweep "$OUT/sweep" sweep.csv sweep.json sweep_report.md sweep_report.html figures
}

run_setting() {
  local name=$1 config data run log
  setting "$name"
  if [ "$name" = sweep ]; then run_sweep; return; fi
  config=${ARGS[0]} data=${ARGS[1]}
  local sets=("${ARGS[@]:2}" --set "name=$name" --set "data.root=$OUT/data_$data" --set num_threads=1)
  run=$OUT/$name log=$OUT/$name.log
  if [ -n "${DRY_RUN:-}" ]; then log=/dev/stdout; else mkdir -p "$OUT"; fi
  echo "$name: started $(date -u +%H:%M:%S), log $log"
  # data and store first, once (the workers below would race to make them)
  do_or_print mtpkdot prepare "$config" --out "$run" "${sets[@]}" --set "data.workers=$JOBS" > "$log" 2>&1 ||
    { echo "$name: prepare failed, see $log" >&2; exit 1; }
  local jobs=() pids=() s k w
  for s in $SEEDS; do for k in $FOLDS; do jobs+=("$s $k"); done; done
  for ((w = 0; w < JOBS; w++)); do
    (for ((i = w; i < ${#jobs[@]}; i += JOBS)); do
      read -r s k <<< "${jobs[$i]}"
      do_or_print mtpkdot run "$config" --out "$run" --seeds "$s" --folds "$k" --device cpu --no-report "${sets[@]}"
    done) >> "$([ -n "${DRY_RUN:-}" ] && echo /dev/stdout || echo "$log.$w")" 2>&1 &
    pids+=($!)
  done
  for w in "${!pids[@]}"; do
    wait "${pids[$w]}" || { echo "$name: a run failed, see $log.$w" >&2; exit 1; }
  done
  do_or_print mtpkdot evaluate "$run" >> "$log" 2>&1
  do_or_print mtpkdot report "$run" >> "$log" 2>&1
  [ -n "${DRY_RUN:-}" ] && return
  publish "$name" "$run" summary.csv results.csv report.md report.html figures
}

if [ $# -eq 0 ]; then
  echo "usage: bash results/make_results.sh SETTING ... | all   (DRY_RUN=1 prints the commands)"
  echo "settings: ${SETTINGS[*]}"
  exit 0
fi
[ "$1" = all ] && set -- "${SETTINGS[@]}"
for name in "$@"; do setting "$name"; done  # unknown names fail before anything runs
for name in "$@"; do run_setting "$name"; done
