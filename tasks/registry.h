// The explicit list of tasks (tasks/registry.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tasks/task.h"
#include "tasks/task_metrics.h"

namespace moelab {

struct TaskEntry {
  const char* name;
  const char* summary;
  std::unique_ptr<AnyOptions> (*make_options)();
  std::unique_ptr<Task> (*make)(const AnyOptions& options, const RunConfig& config);
  const TaskMetrics& (*metrics)();  // what its numbers mean (tasks/task_metrics.h)
  // What can be known before a run starts, without loading the data: the data files are
  // there, options agree with the files' headers. ConfigError naming the option and file.
  void (*check)(const AnyOptions& options, const RunConfig& config) = nullptr;
};

const std::vector<TaskEntry>& task_registry();
const TaskEntry& find_task(const std::string& name);  // ConfigError listing known names

std::unique_ptr<Task> make_task(const RunConfig& config);
// The task's check (TaskEntry::check) of this config.
void check_task(const RunConfig& config);
// The config layer's catalog entry (installed by harness/run/plugins.h).
std::unique_ptr<AnyOptions> task_options_by_name(const std::string& name);

// Adds an entry to the list for this object's lifetime: a test's fake task.
class ScopedTaskRegistration {
 public:
  explicit ScopedTaskRegistration(TaskEntry entry);
  ~ScopedTaskRegistration();
  ScopedTaskRegistration(const ScopedTaskRegistration&) = delete;
  ScopedTaskRegistration& operator=(const ScopedTaskRegistration&) = delete;

 private:
  std::string name_;
};

}  // namespace moelab
