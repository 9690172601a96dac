// Runs a sweep with worker processes that share the results database as their queue.
//
// `moelab sweep FILE` enqueues every run of the plan that is not already done (identity =
// config hash), starts N workers (`moelab sweep-worker`, one process each, logs under
// results/logs/<sweep>/), and watches them: a worker that dies has its run requeued at once, a
// run whose heartbeat went stale (any process, any machine) is requeued after
// --stale-after seconds, and a requeued or interrupted run resumes from its checkpoint.
// Ctrl-C stops every worker after its current step; the runs are marked interrupted.
#pragma once

#include <string>

#include "harness/sweep/queue.h"
#include "harness/sweep/sweep.h"

namespace moelab {

struct SweepOptions : EnqueueOptions {
  int64_t workers = 0;             // 0: one per usable CPU (cpus.h), at most one per run
  int64_t threads_per_worker = 0;  // 0: the config's threads with one explicit worker, else 1
  std::string executable;          // this moelab binary, to start workers with
};

// Enqueue + workers + supervision. Returns 0 when every run of the plan is done, else 1.
int run_sweep(const SweepPlan& plan, const SweepOptions& options);

}  // namespace moelab
