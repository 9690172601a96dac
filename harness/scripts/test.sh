#!/usr/bin/env bash
# Set-up, build everything, and run the default test suite through CTest. With --slow, the
# slow tests (tagged [.slow], CTest label "slow") run after it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh
cd "${MOELAB_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure --parallel 1 --label-exclude slow
if [ "${1:-}" = "--slow" ]; then
  ctest --output-on-failure --parallel 1 --label-regex slow
fi
