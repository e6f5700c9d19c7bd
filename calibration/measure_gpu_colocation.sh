#!/usr/bin/env bash
# Measure co-location on the local GPU (written for the H200 of the lent machines) WITHOUT
# changing any GPU setting: no MPS daemon, no clocks, no MIG. Two ways of sharing the GPU:
#   processes: the co-runner runs in a second process, the driver time-slices the two contexts;
#   streams:   the co-runner runs on a second CUDA stream of the measuring process.
# Each writes a profile CSV (stack=eager, precision=fp16 columns), which is then checked
# against the h200 spec as it is and fitted into calibration/h200-measured-calibrated.yaml.
#
#   bash calibration/measure_gpu_colocation.sh [OUT_DIR] [HW]     # defaults: calibration/h200 h200
#
# Status: written and checked on a CPU-only machine (argument handling); NOT yet run on a GPU,
# so no results are committed with it.
set -euo pipefail
out=${1:-calibration/h200}
hw=${2:-h200}
mkdir -p "$out"
plan=(
  mode=profile profile_run.device=cuda profile_run.passes=2 profile_run.repeats=5
  profile_run.min_time_s=0.3
  "profile_run.models=[resnet50,mobilenet_v2,bert-base@32]"
  "profile_run.batches.resnet50=[1,8,32]"
  "profile_run.batches.mobilenet_v2=[1,8,32]"
  "profile_run.pairs=[[resnet50,1,resnet50,1],[resnet50,8,mobilenet_v2,8],[resnet50,32,resnet50,32],[mobilenet_v2,32,bert-base@32,4],[resnet50,8,bert-base@32,4]]"
)
for mode in processes streams; do
  python -m experiments.calibrate "${plan[@]}" profile_run.colocation="$mode" \
    profile_run.out="$out/$mode.csv" hydra.run.dir="$out/run-$mode"
done
python -m experiments.calibrate mode=validate profile="$out/processes.csv" hw="$hw" \
  hydra.run.dir="$out/validate-processes"
python -m experiments.calibrate mode=fit profile="$out/processes.csv" hw="$hw" \
  fit.profile_spec="$hw-measured" hydra.run.dir="$out/fit-processes"
python -m experiments.calibrate mode=validate profile="$out/streams.csv" hw="$hw" \
  hydra.run.dir="$out/validate-streams"
