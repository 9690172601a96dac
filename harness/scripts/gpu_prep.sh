#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for harness/scripts/gpu_check.sh on a GPU machine whose image
# has PyTorch with CUDA but none of moelab's other libraries and no network: the Debian 12
# packages of yaml-cpp, fmt, SQLiteCpp, SQLite's headers, Catch2, CLI11 and nlohmann-json, and
# the data the checks read (Fashion-MNIST, the Gutenberg corpus). Run from a set-up machine
# (harness/scripts/setup.sh done); idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PACKAGES=(libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 libsqlitecpp-dev libsqlite3-dev
          catch2 libcli11-dev nlohmann-json3-dev nettle-dev libnettle8 libboost1.74-dev
          libboost-dev)
mkdir -p .gpu/debs .gpu/data
(cd .gpu/debs && apt-get download "${PACKAGES[@]}" > /dev/null 2>&1) ||
  { apt-get update -qq && (cd .gpu/debs && apt-get download "${PACKAGES[@]}"); }
cp -r /usr/share/datasets/fashion-mnist .gpu/data/
cp -r .data/gutenberg .gpu/data/
echo "gpu_prep: .gpu/ ready ($(du -sh .gpu | cut -f1)); carry .gpu and run: bash harness/scripts/gpu_check.sh"
