// The sweep worker loop: claim, read the run's config and checkpoint, run it (after its dense
// parent when it converts), record the outcome; a scheduled task waits for others' runs.
#include "harness/sweep/sweep_worker.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>

#include "harness/core/exception_text.h"
#include "harness/core/interrupt.h"
#include "harness/run/runner.h"
#include "harness/sweep/dense_parent.h"
#include "harness/sweep/queue.h"
#include "harness/train/checkpoint.h"
#include "harness/train/provenance.h"
#include "harness/train/trainer.h"

namespace moelab {
namespace {

// Runs a claimed run, after resolving its dense parent when it converts (the claimed run's
// heartbeat stays fresh meanwhile, so that no supervisor requeues it).
RunOutcome run_claimed(Store& store, const RunSpec& run, bool resume, double stale_after_seconds) {
  if (run.config.convert.method == "none") return run_on_row(store, run, resume, nullptr);
  std::optional<RunSpec> parent;
  try {
    RunHeartbeat heartbeat(store.path(), run.run_id);
    parent = resolve_dense_parent(run.config, store, run.sweep, /*retry_failed=*/false,
                                  stale_after_seconds);
  } catch (...) {
    return record_failed_start(store, run.run_id, std::current_exception());
  }
  return run_on_row(store, run, resume, &*parent);
}

std::atomic<bool> g_time_limit_warning{false};
extern "C" void on_time_limit_warning(int) {
  g_time_limit_warning = true;
  request_interrupt();
}

// A scheduled worker with nothing to claim: true while runs of the sweep are still running
// elsewhere (after taking back those of dead or stale workers and the interrupted ones),
// having waited a little.
bool others_still_running(Store& store, const std::string& sweep, double stale_after_seconds) {
  requeue_dead_local_workers(store, sweep);
  store.requeue_stale(sweep, stale_after_seconds);
  // A task killed between recording its run interrupted and giving it back.
  store.requeue_sweep(sweep, RunStatus::Interrupted);
  const QueueCounts counts = sweep_counts(store, sweep);
  if (counts.pending > 0) return true;  // claim it at once
  if (counts.running == 0) return false;
  for (int tick = 0; tick < 20 && !interrupt_requested(); ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return !interrupt_requested();
}

}  // namespace

int sweep_worker(const std::string& db, const std::string& sweep, const WorkerOptions& options,
                 const std::function<bool()>& wait_for_queue) {
  install_interrupt_handlers();
  if (options.scheduled) std::signal(SIGUSR1, on_time_limit_warning);
  Store store(db);
  if (wait_for_queue && !wait_for_queue()) return 0;
  const std::string id = worker_id();
  while (!interrupt_requested()) {
    auto claimed = store.claim_run(sweep, id);
    if (!claimed) {
      if (options.scheduled && others_still_running(store, sweep, options.stale_after_seconds)) continue;
      break;
    }
    // Reading the config or the checkpoint can fail too: record that as the run's failure
    // instead of losing the worker (and having the run requeued forever).
    std::optional<RunSpec> run;
    int64_t step = -1;
    try {
      run.emplace(parse_run_config(claimed->config_yaml, fmt::format("run {}", claimed->run_id),
                                   {fmt::format("threads={}", options.threads)}),
                  sweep, claimed->config_hash);
      run->run_id = claimed->run_id;
      step = checkpoint_step(run->checkpoint);
    } catch (const std::exception& e) {
      store.finish_run(claimed->run_id, RunStatus::Failed, {}, exception_text(e));
      fmt::print(stderr, "worker {}: run {} failed: {}\n", id, claimed->run_id, exception_text(e));
      continue;
    }
    apply_thread_settings(run->config);
    // Metrics after the checkpoint (or all of them, without one) are logged again.
    store.reopen_run(run->run_id, step, collect_provenance(run->config));
    fmt::print(stderr, "worker {}: run {} [{}]{}\n", id, run->run_id, run->config.name,
               step >= 0 ? fmt::format(" resuming at step {}", step) : "");
    const RunOutcome outcome = run_claimed(store, *run, step >= 0, options.stale_after_seconds);
    fmt::print(stderr, "worker {}: run {} {}{}\n", id, outcome.run_id, run_status_text(outcome.status),
               outcome.error.empty() ? "" : ": " + outcome.error);
    // Resumed from its checkpoint by whichever task claims it (unless one already has).
    if (options.scheduled && outcome.status == RunStatus::Interrupted &&
        store.requeue_if(outcome.run_id, RunStatus::Interrupted)) {
      fmt::print(stderr, "worker {}: run {} is back in the queue\n", id, outcome.run_id);
    }
  }
  std::fflush(stderr);
  return options.scheduled && g_time_limit_warning ? kExitRequeue : 0;
}

}  // namespace moelab
