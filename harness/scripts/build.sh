#!/usr/bin/env bash
# Configures and builds moelab (Release) into build/. Usage: build.sh [cmake targets...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${MOELAB_BUILD_DIR:-$ROOT/build}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ "$#" -gt 0 ]; then
  for target in "$@"; do cmake --build "$BUILD" --parallel "$(nproc)" --target "$target"; done
else
  cmake --build "$BUILD" --parallel "$(nproc)"
fi
