#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build, then a small sweep comparing three routers
# over six seeds on Fashion-MNIST and its MNIST-C corruptions (experiments/sweeps/main.yaml,
# 2 workers), ending with the paired comparisons against topk (clean test accuracy and
# FMNIST-C mean error: difference, interval, Holm-adjusted p, MDE, verdict) and the corruption
# table. Re-running skips the runs already done; Ctrl-C and re-run resumes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh moelab
MOELAB="${MOELAB_BUILD_DIR:-$ROOT/build}/moelab"
"$MOELAB" sweep experiments/sweeps/main.yaml --workers 2 "$@"
for metric in test/accuracy fmnist_c/mean_error; do
  echo
  "$MOELAB" compare results/moelab.db --sweep main_paired --baseline topk --metric "$metric" --margin 0.005
done
echo
echo "Corruption robustness (FMNIST-C, 1000 test images per corruption; baseline: topk):"
"$MOELAB" robustness results/moelab.db --sweep main_paired --suite fmnist_c --baseline topk
