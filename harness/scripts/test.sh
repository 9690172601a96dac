#!/usr/bin/env bash
# Set-up, build everything, start the test servers (PostgreSQL, a one-node Slurm:
# test_servers.sh; stopped again on exit), and run the default test suite through CTest.
# With --slow, the slow tests (tagged [.slow], CTest label "slow") run after it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh
BUILD="${MOELAB_BUILD_DIR:-$ROOT/build}"
# Stopped on any exit, a failed start included (what did start is stopped, its logs kept in
# $BUILD/test-servers/logs).
trap 'bash "$ROOT/harness/scripts/test_servers.sh" stop "$BUILD/test-servers"' EXIT
bash harness/scripts/test_servers.sh start "$BUILD/test-servers"
# shellcheck source=/dev/null
source "$BUILD/test-servers/env"
cd "$BUILD"
ctest --output-on-failure --parallel 1 --label-exclude slow
if [ "${1:-}" = "--slow" ]; then
  ctest --output-on-failure --parallel 1 --label-regex slow
fi
