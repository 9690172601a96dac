// The explicit list of tasks (tasks/registry.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace moelab {

struct TaskEntry {
  const char* name;
  const char* summary;
  std::unique_ptr<AnyOptions> (*make_options)();
  std::unique_ptr<Task> (*make)(const AnyOptions& options, const RunConfig& config);
};

const std::vector<TaskEntry>& task_registry();
const TaskEntry& find_task(const std::string& name);  // ConfigError listing known names

std::unique_ptr<Task> make_task(const RunConfig& config);

}  // namespace moelab
