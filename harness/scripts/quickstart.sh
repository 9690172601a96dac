#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build, then a small sweep comparing five routers
# on Fashion-MNIST and its MNIST-C corruptions (experiments/sweeps/main.yaml, 2 workers),
# ending with the report table (clean test accuracy) and the corruption table from the
# results database. Re-running skips the runs already done; Ctrl-C and re-run resumes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh moelab
MOELAB="${MOELAB_BUILD_DIR:-$ROOT/build}/moelab"
"$MOELAB" sweep experiments/sweeps/main.yaml --workers 2 "$@"
echo
echo "Corruption robustness (FMNIST-C, 2000 test images per corruption; baseline: topk):"
"$MOELAB" robustness results/moelab.db --sweep main --suite fmnist_c --baseline topk
