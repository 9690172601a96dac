// The results database as a sweep's queue: which runs a plan puts there, in which order, and
// what happens to runs already recorded under the same identity (done, failed, interrupted,
// running elsewhere); the queue's counts by status.
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"
#include "harness/sweep/sweep.h"

namespace moelab {

struct QueueCounts {
  int64_t pending = 0, running = 0, done = 0, failed = 0, diverged = 0, interrupted = 0;
  int64_t total() const { return pending + running + done + failed + diverged + interrupted; }
};

// What enqueueing does with the runs a plan shares with the database.
struct EnqueueOptions {
  bool retry_failed = false;  // requeue failed and diverged runs (from scratch)
  bool force = false;         // requeue done runs as new runs (from scratch)
  double stale_after_seconds = kDefaultStaleSeconds;  // running runs older than this go back
};

// The distinct runs of a plan in claim order: the dense parents of converting runs
// (convert.parent = auto) first, labelled "dense parent", so workers train them before the
// runs that need them; then the plan's runs with their axis labels.
struct QueuedRun {
  RunConfig config;
  std::string label;  // axis values, or kDenseParentLabel
  std::string hash;   // config_hash(config)
};
std::vector<QueuedRun> queue_order(const SweepPlan& plan);

// Enqueues the plan's runs in one transaction (after taking back the runs of stale and dead
// local workers): a run not recorded yet, or done and forced, is queued from scratch; one
// unfinished in another sweep gets a copy in this one; one done in another sweep is added to
// this one; a failed or diverged one is requeued from scratch with retry_failed; an
// interrupted one resumes from its checkpoint. Returns the queue state of the sweep.
QueueCounts enqueue_sweep(Store& store, const SweepPlan& plan, const EnqueueOptions& options);
QueueCounts sweep_counts(Store& store, const std::string& sweep);

// Running runs of the sweep whose worker was a process on this host that no longer exists go
// back to pending (without waiting for staleness).
void requeue_dead_local_workers(Store& store, const std::string& sweep);

}  // namespace moelab
