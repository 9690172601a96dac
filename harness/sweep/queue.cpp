// The sweep's queue in the results database: claim order, enqueueing policy, counts.
#include "harness/sweep/queue.h"

#include <unistd.h>

#include <filesystem>
#include <set>

#include "harness/core/parse.h"
#include "harness/core/subprocess.h"
#include "harness/sweep/dense_parent.h"
#include "harness/train/run_spec.h"

namespace moelab {

void requeue_dead_local_workers(Store& store, const std::string& sweep) {
  const std::string prefix = host_name() + ":";
  for (const auto& worker : store.running_workers(sweep)) {
    if (worker.rfind(prefix, 0) != 0) continue;
    const auto pid = static_cast<pid_t>(to_int64(worker.substr(prefix.size()), "worker pid"));
    if (pid != getpid() && !process_alive(pid)) store.requeue_worker(worker);
  }
}

QueueCounts sweep_counts(Store& store, const std::string& sweep) {
  const auto counts = store.status_counts(sweep);
  auto count = [&](RunStatus status) {
    auto found = counts.find(status);
    return found == counts.end() ? int64_t{0} : found->second;
  };
  return {count(RunStatus::Pending), count(RunStatus::Running),  count(RunStatus::Done),
          count(RunStatus::Failed),  count(RunStatus::Diverged), count(RunStatus::Interrupted)};
}

std::vector<QueuedRun> queue_order(const SweepPlan& plan) {
  std::vector<QueuedRun> parents, runs;
  for (const auto& run : plan.runs) {
    if (run.config.convert.method != "none" && run.config.convert.parent == "auto") {
      parents.push_back({dense_parent_config(run.config), kDenseParentLabel, ""});
    }
    runs.push_back({run.config, run.label(), ""});
  }
  std::set<std::string> seen;
  std::vector<QueuedRun> order;
  for (auto* list : {&parents, &runs}) {
    for (auto& entry : *list) {
      entry.hash = config_hash(entry.config);
      if (seen.insert(entry.hash).second) order.push_back(std::move(entry));
    }
  }
  return order;
}

QueueCounts enqueue_sweep(Store& store, const SweepPlan& plan, const EnqueueOptions& options) {
  store.requeue_stale(plan.name, options.stale_after_seconds);
  requeue_dead_local_workers(store, plan.name);
  store.batch([&] {  // one transaction: all of the plan is queued, or none of it
    for (const QueuedRun& run : queue_order(plan)) {
      const RunSpec spec(run.config, plan.name, run.hash);
      const std::string& checkpoint = spec.checkpoint;
      const auto state = store.run_for_hash(run.hash);
      auto enqueue = [&] {
        RunRecord record = make_run_record(spec);
        record.axes = run.label;
        store.enqueue_run(record);
      };
      if (!state || (state->status == RunStatus::Done && options.force)) {
        std::filesystem::remove(checkpoint);  // a new run starts from scratch
        enqueue();
      } else if (state->sweep != plan.name && state->status != RunStatus::Done) {
        enqueue();  // unfinished in another sweep: this sweep runs its own copy
      } else if (state->sweep != plan.name) {
        store.add_to_sweep(plan.name, state->run_id);  // done elsewhere: reused, and reported
      } else if ((state->status == RunStatus::Failed || state->status == RunStatus::Diverged) &&
                 options.retry_failed) {
        std::filesystem::remove(checkpoint);  // retried from scratch
        store.requeue_if(state->run_id, state->status);
      } else if (state->status == RunStatus::Interrupted) {
        store.requeue_if(state->run_id, state->status);  // resumes from its checkpoint
      }
    }
  });
  return sweep_counts(store, plan.name);
}

}  // namespace moelab
