// Runs a sweep with worker processes that share the results database as their queue.
//
// `moelab sweep FILE` enqueues every run of the plan that is not already done (identity =
// config hash), starts N workers (`moelab sweep-worker`, one process each, logs under
// results/logs/<sweep>/), and watches them: a worker that dies has its run requeued at once, a
// run whose heartbeat went stale (any process, any machine) is requeued after
// --stale-after seconds, and a requeued or interrupted run resumes from its checkpoint.
// Ctrl-C stops every worker after its current step; the runs are marked interrupted.
#pragma once

#include <functional>
#include <string>

#include "harness/store/store.h"
#include "harness/sweep/sweep.h"

namespace moelab {

struct SweepOptions {
  int64_t workers = 0;             // 0: one per usable CPU (cpus.h), at most one per run
  int64_t threads_per_worker = 0;  // 0: the config's threads with one explicit worker, else 1
  bool retry_failed = false;       // requeue failed and diverged runs (from scratch)
  bool force = false;              // requeue done runs as new runs (from scratch)
  double stale_after_seconds = kDefaultStaleSeconds;
  std::string executable;          // this moelab binary, to start workers with
};

struct QueueCounts {
  int64_t pending = 0, running = 0, done = 0, failed = 0, diverged = 0, interrupted = 0;
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

// A running run's progress: steps done (at its last logging step) of its total, in `seconds`
// since it started.
struct RunProgress {
  double steps_done = 0, steps_total = 0, seconds = 0;
};
// Seconds until the queue is empty: each running run ends at its own step rate, each pending
// one takes `run_seconds` and goes to the first worker free (list scheduling over `workers`).
// Negative when nothing is measured yet (no rate and no run length).
double estimate_eta(const std::vector<RunProgress>& running, int64_t pending, double run_seconds,
                    int64_t workers);

// Enqueues the plan's runs as described above, in one transaction; returns the queue state
// of the sweep.
QueueCounts enqueue_sweep(Store& store, const SweepPlan& plan, const SweepOptions& options);
QueueCounts sweep_counts(Store& store, const std::string& sweep);

// Enqueue + workers + supervision. Returns 0 when every run of the plan is done, else 1.
int run_sweep(const SweepPlan& plan, const SweepOptions& options);

struct WorkerOptions {
  int64_t threads = 1;
  double stale_after_seconds = kDefaultStaleSeconds;
  // A batch scheduler's task (--launcher slurm): while other workers' runs are running it
  // waits instead of leaving, taking over any whose worker died or went stale; on SIGTERM or
  // the time-limit warning (SIGUSR1) it checkpoints and gives its run back to the queue
  // (pending, for any task to resume) instead of marking it interrupted.
  bool scheduled = false;
};

// A scheduled worker's exit code after the time-limit warning: its task should be requeued.
inline constexpr int kExitRequeue = 75;

// The worker loop: claim, run (resuming from a checkpoint when there is one), repeat until
// the sweep has no pending run or an interrupt arrives. A worker started before its sweep was
// queued first calls `wait_for_queue`, and leaves at once when it returns false.
int sweep_worker(const std::string& db, const std::string& sweep, const WorkerOptions& options,
                 const std::function<bool()>& wait_for_queue = {});

// Running runs of the sweep whose worker was a process on this host that no longer exists go
// back to pending (without waiting for staleness).
void requeue_dead_local_workers(Store& store, const std::string& sweep);


}  // namespace moelab
