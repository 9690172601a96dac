// Lookups over the tasks' metric declarations.
#include "tasks/task_metrics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {

std::vector<std::string> CorruptionSuite::splits() const {
  std::vector<std::string> names;
  for (const auto& corruption : corruptions) {
    if (severities == 1) {
      names.push_back(SplitId::corrupted(name, corruption, 0).text());
      continue;
    }
    for (int64_t severity = 1; severity <= severities; ++severity) {
      names.push_back(SplitId::corrupted(name, corruption, severity).text());
    }
  }
  return names;
}

SplitId SplitId::parse(const std::string& text) {
  const auto at = text.find('@');
  const std::string name = text.substr(0, at);
  SplitId id;
  id.router = at == std::string::npos ? "" : text.substr(at + 1);
  const auto colon = name.find(':');
  id.base = name.substr(0, colon);
  if (id.base.empty() || (at != std::string::npos && id.router.empty())) {
    throw Error(fmt::format("'{}' is not a split name (SPLIT[:...][@ROUTER])", text));
  }
  if (colon == std::string::npos) {
    const bool plain = id.base == "train" || id.base == "val" || id.base == "test";
    id.kind = plain ? Kind::Plain : Kind::Suite;
    return id;
  }
  const std::string rest = name.substr(colon + 1);
  if (id.base == "test") {
    id.kind = Kind::TestVariant;
    id.label = rest;
    return id;
  }
  id.kind = Kind::Corruption;
  const auto second = rest.find(':');
  id.corruption = rest.substr(0, second);
  if (second != std::string::npos) {
    const auto severity = parse_int64(rest.substr(second + 1));
    if (!severity || *severity < 1) {
      throw Error(fmt::format("'{}': severity '{}' is not a whole number >= 1", text,
                              rest.substr(second + 1)));
    }
    id.severity = *severity;
  }
  if (id.corruption.empty()) throw Error(fmt::format("'{}': no corruption named", text));
  return id;
}

SplitId SplitId::corrupted(const std::string& suite, const std::string& corruption,
                           int64_t severity) {
  SplitId id;
  id.kind = Kind::Corruption;
  id.base = suite;
  id.corruption = corruption;
  id.severity = severity;
  return id;
}

SplitId SplitId::test_variant(const std::string& label) {
  SplitId id;
  id.kind = Kind::TestVariant;
  id.base = "test";
  id.label = label;
  return id;
}

std::string SplitId::text() const {
  std::string name = base;
  if (kind == Kind::Corruption) {
    name += ":" + corruption;
    if (severity > 0) name += fmt::format(":{}", severity);
  } else if (kind == Kind::TestVariant) {
    name += ":" + label;
  }
  return router.empty() ? name : name + "@" + router;
}

SplitId SplitId::under_router(const std::string& swap_router) const {
  SplitId id = *this;
  id.router = swap_router;
  return id;
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
