// Every registered task, in one explicit list.
#include "tasks/registry.h"

#include "harness/core/registry.h"
#include "tasks/image/image_task.h"
#include "tasks/lm/lm_task.h"

namespace moelab {
namespace {

template <class T>
TaskEntry task_entry(const char* name, const char* summary) {
  using Options = typename T::Options;
  return TaskEntry{
      name, summary,
      []() -> std::unique_ptr<AnyOptions> { return std::make_unique<TypedOptions<Options>>(); },
      [](const AnyOptions& options, const RunConfig& config) -> std::unique_ptr<Task> {
        return std::make_unique<T>(options_as<Options>(options), config);
      }};
}

}  // namespace

const std::vector<TaskEntry>& task_registry() {
  static const std::vector<TaskEntry> entries = {
      task_entry<ImageTask>("image", "image classification with a vision transformer"),
      task_entry<LmTask>("lm", "language modelling (bytes or words) with a causal transformer"),
  };
  return entries;
}

const TaskEntry& find_task(const std::string& name) {
  return find_entry(task_registry(), name, "task");
}

std::unique_ptr<Task> make_task(const RunConfig& config) {
  return find_task(config.task.name).make(*config.task.options, config);
}

std::unique_ptr<AnyOptions> make_task_options(const std::string& name) {
  return find_task(name).make_options();
}

}  // namespace moelab
