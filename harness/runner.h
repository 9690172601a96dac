// The run boundary: records a run in the database, trains and evaluates it, and records
// how it ended. The only place that catches errors from a run.
#pragma once

#include <string>

#include "harness/config.h"
#include "tasks/task.h"

namespace moelab {

struct RunOutcome {
  int64_t run_id = 0;
  std::string status;  // done | failed | diverged | interrupted
  std::string error;
  MetricValues summaries;
};

// With `resume`, continues the newest unfinished run of this config from its checkpoint
// (ConfigError when there is none) instead of starting a new run.
RunOutcome execute_run(const RunConfig& config, const std::string& sweep = "",
                       bool resume = false);

// Installs SIGINT/SIGTERM handlers that ask the training loop to stop at the next step.
void install_interrupt_handlers();

}  // namespace moelab
