// Lookups over the tasks' metric declarations.
#include "tasks/task_metrics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "harness/core/error.h"

namespace moelab {

std::vector<std::string> CorruptionSuite::splits() const {
  std::vector<std::string> names;
  for (const auto& corruption : corruptions) {
    if (severities == 1) {
      names.push_back(fmt::format("{}:{}", name, corruption));
      continue;
    }
    for (int64_t severity = 1; severity <= severities; ++severity) {
      names.push_back(fmt::format("{}:{}:{}", name, corruption, severity));
    }
  }
  return names;
}

const MetricInfo& TaskMetrics::find(const std::string& metric) const {
  std::vector<std::string> names;
  for (const auto& info : metrics) {
    if (info.name == metric) return info;
    names.push_back(info.name);
  }
  throw Error(fmt::format("task '{}' declares no metric '{}' (its metrics: {})", task, metric,
                          fmt::join(names, ", ")));
}

const CorruptionSuite& TaskMetrics::suite(const std::string& name) const {
  std::vector<std::string> names;
  for (const auto& entry : suites) {
    if (entry.name == name) return entry;
    names.push_back(entry.name);
  }
  throw ConfigError(fmt::format("task '{}' has no corruption suite '{}' (its suites: {})", task,
                                name, names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
}

double TaskMetrics::error(const CorruptionSuite& suite, double value) const {
  return higher_is_better(suite.metric) ? 1.0 - value : value;
}

std::string metric_of(const std::string& summary_name) {
  const auto slash = summary_name.rfind('/');
  std::string metric = slash == std::string::npos ? summary_name : summary_name.substr(slash + 1);
  return metric.substr(0, metric.find('@'));
}

SuiteRef find_suite(const std::string& suite) {
  std::vector<std::string> names;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& entry : task->suites) {
      if (entry.name == suite) return {task, &entry};
      names.push_back(entry.name);
    }
  }
  throw ConfigError(fmt::format("unknown corruption suite '{}' (known: {})", suite,
                                fmt::join(names, ", ")));
}

}  // namespace moelab
