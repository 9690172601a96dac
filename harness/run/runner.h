// The run boundary: records a run in the database, trains and evaluates it, and records
// how it ended. The only place that catches errors from a run.
#pragma once

#include <string>

#include "harness/config/config.h"
#include "harness/store/store.h"
#include "tasks/task.h"

namespace moelab {

struct RunOutcome {
  int64_t run_id = 0;
  std::string status;  // done | failed | diverged | interrupted
  std::string error;
  MetricValues summaries;
};

// What would fail a run at its start, checked before any row is written: the device exists,
// the task's data files are there and its options fit them (TaskEntry::check). ConfigError.
void check_runnable(const RunConfig& config);

// Checks the config (check_runnable), then runs it. With `resume`, continues the newest unfinished run of this config from its checkpoint
// (ConfigError when there is none) instead of starting a new run.
RunOutcome execute_run(const RunConfig& config, const std::string& sweep = "",
                       bool resume = false);

// Trains and evaluates on a run row that is already 'running' (created, reopened or claimed
// by a sweep worker), then records resources, summaries and the final status.
// A converting run waits on a dense parent that another process trains until that run's
// heartbeat is older than stale_after_seconds, then takes it over.
RunOutcome run_on_row(Store& store, int64_t run_id, const RunConfig& config, bool resume,
                      double stale_after_seconds = kDefaultStaleSeconds);

// The database record of a config: identity, flattened params, provenance.
RunRecord make_run_record(const RunConfig& config, const std::string& sweep);
RunRecord make_run_record(const RunConfig& config, const std::string& sweep,
                          const std::string& config_hash);

// Installs SIGINT/SIGTERM handlers that ask the training loop to stop at the next step.
void install_interrupt_handlers();

}  // namespace moelab
