// Every registered task, in one explicit list.
#include "tasks/registry.h"

#include <algorithm>

#include "harness/core/registry.h"
#include "routers/registry.h"
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
      },
      &T::metrics,
      [](const AnyOptions& options, const RunConfig& config) {
        T::check(options_as<Options>(options), config);
      }};
}

std::vector<TaskEntry>& entries() {
  static std::vector<TaskEntry> list = {
      task_entry<ImageTask>("image", "image classification with a vision transformer"),
      task_entry<LmTask>("lm", "language modelling (bytes or words) with a causal transformer"),
  };
  return list;
}

}  // namespace

const std::vector<TaskEntry>& task_registry() { return entries(); }

const TaskEntry& find_task(const std::string& name) {
  return find_entry(task_registry(), name, "task");
}

Transformer backbone_for(const RunConfig& config, bool causal) {
  const auto moe_blocks = moe_layer_indices(config.model);
  const bool pruned = conversion_kind(config.convert.method) == ConversionKind::Prune;
  const BlockFfnFactory ffns = [&](int64_t block) -> BlockFfn {
    const bool listed = std::find(moe_blocks.begin(), moe_blocks.end(), block) != moe_blocks.end();
    if (!listed) return {nullptr, config.model.ffn_hidden};
    if (pruned) return {nullptr, pruned_ffn_hidden(config)};
    return {make_router(config.router, router_shape(config.model, config.seed, block)), 0};
  };
  return Transformer(config.model, ffns, causal);
}

std::unique_ptr<Task> make_task(const RunConfig& config) {
  return find_task(config.task.name).make(*config.task.options, config);
}

void check_task(const RunConfig& config) {
  const TaskEntry& entry = find_task(config.task.name);
  if (entry.check) entry.check(*config.task.options, config);
}

std::unique_ptr<AnyOptions> task_options_by_name(const std::string& name) {
  return find_task(name).make_options();
}

const TaskMetrics& task_metrics(const std::string& task) { return find_task(task).metrics(); }

std::vector<const TaskMetrics*> all_task_metrics() {
  std::vector<const TaskMetrics*> list;
  for (const auto& entry : task_registry()) list.push_back(&entry.metrics());
  return list;
}

ScopedTaskRegistration::ScopedTaskRegistration(TaskEntry entry) : name_(entry.name) {
  MOELAB_CHECK(std::none_of(entries().begin(), entries().end(),
                            [&](const TaskEntry& known) { return name_ == known.name; }),
               "task '{}' is registered already", name_);
  entries().push_back(entry);
}

ScopedTaskRegistration::~ScopedTaskRegistration() {
  auto& list = entries();
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const TaskEntry& entry) { return name_ == entry.name; }),
             list.end());
}

}  // namespace moelab
