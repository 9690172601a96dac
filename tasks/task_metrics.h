// What a task's numbers mean: every metric it logs with its direction (higher or lower is
// better), its main metric, and its corruption suites with their splits. Declared in the task's
// registry entry; the leaderboard, reports, plots, conversion retention and `moelab robustness`
// read them from here, so nothing outside tasks/ names a task's metric. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moelab {

enum class Better { Higher, Lower };

struct MetricInfo {
  std::string name;  // as logged under a split: "accuracy" in "test/accuracy"
  Better better;
  std::string help;
};

// A corruption suite evaluated on the test set: splits "SUITE:CORRUPTION" when it has one
// severity, else "SUITE:CORRUPTION:S" for S = 1..severities, each reporting `metric`. The
// task also logs "SUITE/mean_error" (every split) and, with severities, "SUITE:CORRUPTION/
// mean_error". Error = 1 - value for a higher-is-better metric (accuracy), else the value.
struct CorruptionSuite {
  std::string name;
  std::vector<std::string> corruptions;  // canonical order
  int64_t severities = 1;
  std::string metric;
  std::string help;

  std::vector<std::string> splits() const;
};

struct TaskMetrics {
  std::string task;
  std::vector<MetricInfo> metrics;
  std::vector<std::string> main;  // a run's main metric: the first of these it reports
  std::vector<CorruptionSuite> suites;

  // Error naming the task and the metrics it declares.
  const MetricInfo& find(const std::string& metric) const;
  bool higher_is_better(const std::string& metric) const { return find(metric).better == Better::Higher; }
  const CorruptionSuite& suite(const std::string& name) const;  // Error naming the known ones
  // The suite's error from a value of its metric.
  double error(const CorruptionSuite& suite, double value) const;
};

// A split's name, parsed once and written by one format:
//   "train", "val", "test"                  Kind::Plain
//   "SUITE:NAME", "SUITE:NAME:SEVERITY"     Kind::Corruption (a suite of CorruptionSuite)
//   "test:LABEL"                            Kind::TestVariant (an attack, a text corruption)
//   "SUITE" alone                           Kind::Suite (the suite's mean, a derived summary)
// any of them followed by "@ROUTER" when evaluated under eval.router_override.
struct SplitId {
  enum class Kind { Plain, Corruption, TestVariant, Suite };
  Kind kind = Kind::Plain;
  std::string base;        // Plain: the split; Corruption, Suite: the suite; TestVariant: test
  std::string corruption;  // Corruption: the corruption's name
  int64_t severity = 0;    // Corruption: 1.. in a suite with severities; 0: one fixed severity
  std::string label;       // TestVariant: the attack's or text corruption's label
  std::string router;      // "" or the routing-swap router

  static SplitId parse(const std::string& text);  // Error naming the text when malformed
  static SplitId corrupted(const std::string& suite, const std::string& corruption,
                           int64_t severity);
  static SplitId test_variant(const std::string& label);
  std::string text() const;
  SplitId under_router(const std::string& swap_router) const;  // "" keeps it unswapped
};

// "SPLIT/METRIC[@RULE]" -> "METRIC" (a summary or metric name; RULE: eval.router_override).
std::string metric_of(const std::string& summary_name);

// The registered tasks' declarations (tasks/registry.cpp). ConfigError for an unknown task.
const TaskMetrics& task_metrics(const std::string& task);
std::vector<const TaskMetrics*> all_task_metrics();
// The suite of that name and the task that declares it; ConfigError listing the known ones.
struct SuiteRef {
  const TaskMetrics* task;
  const CorruptionSuite* suite;
};
SuiteRef find_suite(const std::string& suite);

}  // namespace moelab
