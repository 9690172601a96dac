// The run boundary: records a run in the database, trains and evaluates it, and records
// how it ended. The only place that catches errors from a run.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "harness/config/config.h"
#include "harness/store/store.h"
#include "harness/train/run_spec.h"
#include "tasks/task.h"

namespace moelab {

struct RunOutcome {
  int64_t run_id = 0;
  RunStatus status = RunStatus::Failed;  // done | failed | diverged | interrupted
  std::string error;
  MetricValues summaries;
};

// What would fail a run at its start, checked before any row is written: the device exists,
// the task's data files are there and its options fit them (TaskEntry::check). ConfigError.
void check_runnable(const RunConfig& config);

// Checks the config (check_runnable), gives it a new row and runs it. With `resume`,
// continues the newest unfinished run of this config from its checkpoint instead (ConfigError
// when there is none). A converting config starts from `parent`, its done dense parent,
// resolved by the scheduler before the run (harness/sweep/dense_parent.h).
RunOutcome execute_run(const RunConfig& config, bool resume = false,
                       const RunSpec* parent = nullptr);

// Trains and evaluates on a run row that is already 'running' (created, reopened or claimed
// by a sweep worker), then records resources, summaries and the final status.
RunOutcome run_on_row(Store& store, const RunSpec& run, bool resume, const RunSpec* parent);

// Ends a claimed run that failed before it could start (its dense parent failed, the run
// was interrupted while waiting for it), with the status run_on_row would give `error`.
RunOutcome record_failed_start(Store& store, int64_t run_id, std::exception_ptr error);

// The database record of a run: identity, flattened params, provenance.
RunRecord make_run_record(const RunSpec& run);

// Refreshes a run's heartbeat every 10 s from its own connection while it lives, so that
// supervisors can tell a live run from one whose process died.
class RunHeartbeat {
 public:
  RunHeartbeat(const std::string& db, int64_t run_id);
  ~RunHeartbeat();
  RunHeartbeat(const RunHeartbeat&) = delete;
  RunHeartbeat& operator=(const RunHeartbeat&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// Installs SIGINT/SIGTERM handlers that ask the training loop to stop at the next step.
void install_interrupt_handlers();

}  // namespace moelab
