#!/usr/bin/env bash
# The main job on a fresh machine: set-up, build, train the quickstart MoE vision
# transformer on Fashion-MNIST, and print the results table from the database.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash harness/scripts/setup.sh
bash harness/scripts/build.sh moelab
MOELAB="${MOELAB_BUILD_DIR:-$ROOT/build}/moelab"
"$MOELAB" run experiments/quickstart.yaml "$@"
echo
echo "Latest quickstart runs in results/moelab.db:"
"$MOELAB" query results/moelab.db "
SELECT r.id, r.status, r.router, r.seed, round(r.wall_seconds, 1) AS seconds,
       round(MAX(CASE WHEN s.name = 'test/accuracy' THEN s.value END), 4) AS test_accuracy,
       round(MAX(CASE WHEN s.name = 'val/accuracy' THEN s.value END), 4) AS val_accuracy,
       round(MAX(CASE WHEN s.name = 'train/moe/load_cv' THEN s.value END), 3) AS load_cv
FROM runs r LEFT JOIN summaries s ON s.run_id = r.id
WHERE r.name = 'quickstart' GROUP BY r.id ORDER BY r.id DESC LIMIT 5"
