// A sweep worker: the loop that claims the sweep's queued runs from the results database and
// runs them, one at a time, until the queue is empty or it is interrupted.
#pragma once

#include <functional>
#include <string>

#include "harness/store/store.h"

namespace moelab {

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

}  // namespace moelab
