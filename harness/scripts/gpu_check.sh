#!/usr/bin/env bash
# Everything one short GPU session checks, in one script: build against the machine's CUDA
# LibTorch with MOELAB_CUDA=ON, the [gpu] tests and the host-sync checks, the quickstart and a
# short char LM on cuda, and the GPU benchmarks beside their eager PyTorch references.
#
# Prepare on the CPU machine: bash harness/scripts/gpu_prep.sh (fills the git-ignored .gpu/).
# Then on the GPU machine, with .gpu/ copied along, from the project root:
#   bash harness/scripts/gpu_check.sh
# Logs go to $OUT (or /tmp/moelab-gpu-out): machine.txt build.log tests.log runs.log bench.log.
set -uo pipefail
out="${OUT:-/tmp/moelab-gpu-out}"
mkdir -p "$out"
build=/tmp/moelab-gpu
step() { echo "== $(date +%T) $*"; }

step "machine" | tee "$out/machine.txt"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  lscpu | grep -E 'Model name|^CPU\(s\)'
  git log -1 --format='commit %H' 2>/dev/null || echo "commit: no git metadata here"
} >> "$out/machine.txt" 2>&1

# Data the checks read: Fashion-MNIST where Debian's package puts it, the Gutenberg corpus.
mkdir -p /usr/share/datasets .data
cp -r .gpu/data/fashion-mnist /usr/share/datasets/
[ -d .data/gutenberg ] || cp -r .gpu/data/gutenberg .data/

step "build" | tee "$out/build.log"
# The carried Debian packages, unpacked beside the image's PyTorch (its LibTorch and CUDA).
mkdir -p /tmp/deps
for deb in .gpu/debs/*.deb; do dpkg -x "$deb" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOELAB_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;/tmp/deps/usr" -DSQLite3_INCLUDE_DIR=/tmp/deps/usr/include \
  -DSQLite3_LIBRARY=/usr/lib/x86_64-linux-gnu/libsqlite3.so.0 -DCMAKE_CUDA_ARCHITECTURES=90 \
  >> "$out/build.log" 2>&1
# Keep going past a failing target, so that what does compile can still be checked.
cmake --build "$build" -j"$(nproc)" -- -k >> "$out/build.log" 2>&1
ls -la "$build/moelab" "$build/tests/moelab_tests" "$build/tests/moelab_cuda_tests" >> "$out/build.log" 2>&1
moelab="$build/moelab"

step "tests" | tee "$out/tests.log"
{
  step "[gpu] tests"
  timeout 300 "$build/tests/moelab_tests" "[gpu]"
  step "host-sync checks"
  # Assertions and the layer's report, with the first library frames of any sync found.
  timeout 120 "$build/tests/moelab_cuda_tests" -s 2>&1 |
    grep -E 'FAILED|passed|failed|MoE layer|router.name|frame #[3-9]:|frame #1[0-2]:' | head -80
} >> "$out/tests.log" 2>&1

run_and_summarise() {  # name, then moelab run arguments
  local name="$1"; shift
  step "run $name"
  local start=$SECONDS
  timeout 240 "$moelab" run "$@" db="/tmp/gpu-$name.db" checkpoint_dir="/tmp/gpu-ckpt-$name" 2>&1 | tail -3
  echo "exit ${PIPESTATUS[0]}, $((SECONDS - start)) s wall"
  "$moelab" query "/tmp/gpu-$name.db" "SELECT s.name, round(s.value, 4) FROM summaries s WHERE s.name IN ('train/loss', 'train/steps_per_second', 'train/seconds', 'test/accuracy', 'test/loss', 'test/bpc') ORDER BY s.name" 2>&1
  "$moelab" query "/tmp/gpu-$name.db" "SELECT status, wall_seconds, peak_rss_mb FROM runs" 2>&1
}
{
  run_and_summarise quickstart experiments/quickstart.yaml device=cuda
  run_and_summarise lm_char experiments/lm_char.yaml device=cuda train.steps=300 train.eval_every=150 train.checkpoint_every=150
} > "$out/runs.log" 2>&1

step "bench" | tee "$out/bench.log"
{
  timeout 120 "$moelab" bench moe --device cuda --tokens 16384 --dim 512 --hidden 1024 --experts 16 --k 2 --repeats 20
  timeout 60 "$moelab" bench sinkhorn --device cuda --tokens 16384 --experts 64 --repeats 20
  timeout 60 "$moelab" bench sinkhorn --device cuda --tokens 16384 --experts 64 --repeats 20 --logit-std 30
  timeout 240 "$moelab" bench lm --device cuda --batch 22 --seq-len 512 --dim 256 --depth 4 --heads 8 --experts 16 --hidden 512 --k 2 --steps 30 --repeats 1
} >> "$out/bench.log" 2>&1
step "done"
