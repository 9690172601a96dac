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
};

const std::vector<TaskEntry>& task_registry();
const TaskEntry& find_task(const std::string& name);  // ConfigError listing known names

std::unique_ptr<Task> make_task(const RunConfig& config);

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
