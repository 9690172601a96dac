// What the reading commands choose when the user does not say: `moelab query --preset` SQL
// and a set of runs' main metric, both from the tasks' metric declarations
// (tasks/task_metrics.h).
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

// leaderboard: done runs with their task's main test metric, best first per task, and each
// corruption suite's mean error. failures: failed, diverged and interrupted runs.
// progress: runs per sweep and status. ConfigError for another name.
std::string preset_sql(const std::string& preset);
const std::vector<std::string>& preset_names();

// "SPLIT/METRIC": the first of the done runs' (of `sweep`, or of all when "") task's main
// metrics that one of them reports under `split`. Error when none does, or when runs of
// several tasks have different ones (the caller then names a metric).
std::string main_summary(Store& store, const std::string& sweep, const std::string& split);

}  // namespace moelab
