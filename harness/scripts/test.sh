#!/usr/bin/env bash
# Set-up, build everything, and run the default test suite through CTest.
# Slow tests are tagged [.slow] and run with: build/tests/moelab_tests "[slow]"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh
cd "${MOELAB_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure --parallel 1
