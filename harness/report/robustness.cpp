// CE / mCE / relative mCE.
#include "harness/report/robustness.h"

#include <fmt/format.h>

#include "harness/core/error.h"
#include "harness/report/report.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

double sum(const std::vector<double>& values) {
  double total = 0.0;
  for (double v : values) total += v;
  return total;
}

}  // namespace

RobustnessScores robustness_scores(const CorruptionErrors& model, const CorruptionErrors& baseline) {
  MOELAB_CHECK(!model.errors.empty(), "no corruption errors to score");
  RobustnessScores scores;
  int64_t cells = 0;
  for (const auto& [name, errors] : model.errors) {
    auto found = baseline.errors.find(name);
    if (found == baseline.errors.end() || found->second.size() != errors.size()) {
      throw Error(fmt::format("the baseline run has no matching '{}' results ({} severities)",
                              name, errors.size()));
    }
    const auto& base = found->second;
    scores.ce[name] = sum(errors) / sum(base);
    const double n = static_cast<double>(errors.size());
    scores.relative_ce[name] = (sum(errors) - n * model.clean_error) /
                               (sum(base) - n * baseline.clean_error);
    scores.mean_error += sum(errors);
    cells += static_cast<int64_t>(errors.size());
  }
  for (const auto& [name, value] : scores.ce) scores.mce += value;
  for (const auto& [name, value] : scores.relative_ce) scores.relative_mce += value;
  const double corruptions = static_cast<double>(scores.ce.size());
  scores.mce /= corruptions;
  scores.relative_mce /= corruptions;
  scores.mean_error /= static_cast<double>(cells);
  return scores;
}

CorruptionErrors corruption_errors(Store& store, int64_t run_id, const std::string& suite_name) {
  const auto [task, suite] = find_suite(suite_name);
  const std::string clean_name = "test/" + suite->metric;
  const auto rows = store.query(
      "SELECT name, value FROM summaries WHERE run_id = ? AND value IS NOT NULL AND (name = ? OR "
      "(name LIKE ? AND name NOT LIKE '%@%' AND name LIKE ?)) ORDER BY name",
      {run_id, clean_name, suite_name + ":%", "%/" + suite->metric});
  CorruptionErrors result;
  bool clean = false;
  // Names sort as SUITE:NAME:1 ... SUITE:NAME:5, so severities arrive in order.
  for (const auto& row : rows.rows) {
    const std::string& name = row[0].text;
    const double error = task->error(*suite, row[1].number());
    if (name == clean_name) {
      result.clean_error = error;
      clean = true;
      continue;
    }
    result.errors[SplitId::parse(name.substr(0, name.rfind('/'))).corruption].push_back(error);
  }
  if (!clean || result.errors.empty()) {
    throw ConfigError(fmt::format("run {} has no {} and {} corruption results (run it with "
                            "task.corruptions including {})",
                            run_id, clean_name, suite_name, suite_name));
  }
  return result;
}

bool has_suite_results(Store& store, int64_t run_id, const std::string& suite_name) {
  return !store.query("SELECT 1 FROM summaries WHERE run_id = ? AND name LIKE ? LIMIT 1",
                      {run_id, suite_name + ":%/" + find_suite(suite_name).suite->metric})
              .rows.empty();
}

std::string scored_suite(Store& store, const std::vector<int64_t>& runs, bool with_severities) {
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& suite : task->suites) {
      if (with_severities && suite.severities < 2) continue;
      for (int64_t run : runs) {
        if (has_suite_results(store, run, suite.name)) return suite.name;
      }
    }
  }
  return "";
}

namespace {

// The run's task's main metric (what an attack split reports) and whether higher is better.
const MetricInfo& main_metric(Store& store, int64_t run_id) {
  const auto task = store.query("SELECT task FROM runs WHERE id = ?", {run_id});
  MOELAB_CHECK(!task.rows.empty(), "run {} does not exist", run_id);
  const TaskMetrics& metrics = task_metrics(task.rows[0][0].text);
  return metrics.find(metrics.main.at(0));
}

}  // namespace

AttackResults attack_results(Store& store, int64_t run_id) {
  AttackResults result{main_metric(store, run_id).name, {}};
  const std::string& metric = result.metric;
  const auto rows = store.query("SELECT name, value FROM summaries WHERE run_id = ? AND name LIKE ? "
                                "AND name LIKE ? AND value IS NOT NULL",
                                {run_id, SplitId::test_variant("").text() + "%", "%/" + metric});
  for (const auto& row : rows.rows) {
    const std::string& name = row[0].text;
    const SplitId split = SplitId::parse(name.substr(0, name.rfind('/')));
    if (split.kind != SplitId::Kind::TestVariant) continue;
    // The attack's label, with "@ROUTER" when it was evaluated under a routing swap.
    result.values[split.text().substr(split.base.size() + 1)] = row[1].number();
  }
  return result;
}

namespace {

double mean_of(const std::vector<double>& values) { return sum(values) / static_cast<double>(values.size()); }

// The baseline group's errors per corruption and severity, averaged over its runs.
CorruptionErrors mean_errors(const std::vector<CorruptionErrors>& runs) {
  CorruptionErrors mean = runs.front();
  for (auto& [name, errors] : mean.errors) {
    for (size_t s = 0; s < errors.size(); ++s) {
      double total = 0.0;
      for (const auto& run : runs) {
        const auto found = run.errors.find(name);
        if (found == run.errors.end() || found->second.size() != errors.size()) {
          throw Error(fmt::format("the baseline group's runs do not share the '{}' results", name));
        }
        total += found->second[s];
      }
      errors[s] = total / static_cast<double>(runs.size());
    }
  }
  double clean = 0.0;
  for (const auto& run : runs) clean += run.clean_error;
  mean.clean_error = clean / static_cast<double>(runs.size());
  return mean;
}

// One run's measures, in display order.
using Measures = std::vector<std::pair<std::string, double>>;

Measures corruption_measures(const CorruptionErrors& errors, const CorruptionErrors& baseline,
                             const std::string& by) {
  const RobustnessScores scores = robustness_scores(errors, baseline);
  Measures measures = {{"clean_error", errors.clean_error}};
  if (by.empty()) {
    measures.push_back({"mean_corruption_error", scores.mean_error});
    measures.push_back({"mCE", scores.mce});
    measures.push_back({"relative_mCE", scores.relative_mce});
  } else if (by == "corruption") {
    for (const auto& [name, values] : errors.errors) measures.push_back({"error[" + name + "]", mean_of(values)});
    for (const auto& [name, ce] : scores.ce) measures.push_back({"CE[" + name + "]", ce});
  } else {
    const size_t severities = errors.errors.begin()->second.size();
    for (size_t s = 0; s < severities; ++s) {
      double total = 0.0;
      for (const auto& [name, values] : errors.errors) total += values[s];
      measures.push_back({fmt::format("error[s={}]", s + 1), total / static_cast<double>(errors.errors.size())});
    }
  }
  return measures;
}

// A run's routing-replay summaries of the suite, where it has them: the mean error with the
// clean images' routes and the mean routing flip (docs/methods.md, Routing replay and flips).
Measures routing_replay_measures(Store& store, int64_t run, const std::string& suite) {
  Measures measures;
  const std::pair<const char*, std::string> names[] = {
      {"clean_routes_error", suite + "@clean_routes/mean_error"},
      {"routing_flip", suite + "/moe/routing_flip"}};
  for (const auto& [measure, summary] : names) {
    const auto rows = store.query("SELECT value FROM summaries WHERE run_id = ? AND name = ? AND value IS NOT NULL",
                                  {run, summary});
    if (!rows.rows.empty()) measures.push_back({measure, rows.rows[0][0].number()});
  }
  return measures;
}

// measure -> group label -> values over the group's runs, measures in first-seen order.
struct MeasureTable {
  std::vector<std::string> order;
  std::map<std::string, std::map<std::string, std::vector<double>>> values;

  void add(const std::string& measure, const std::string& group, double value) {
    if (values.find(measure) == values.end()) order.push_back(measure);
    values[measure][group].push_back(value);
  }
};

}  // namespace

QueryResult robustness_report(Store& store, RobustnessRequest& request) {
  if (!request.by.empty() && request.by != "corruption" && request.by != "severity") {
    throw ConfigError(fmt::format("robustness: --by '{}' is not corruption or severity", request.by));
  }
  const auto groups = group_done_runs(store, request.sweep, request.group_by);
  std::vector<int64_t> all_runs;
  for (const auto& group : groups) all_runs.insert(all_runs.end(), group.run_ids.begin(), group.run_ids.end());
  if (request.suite.empty()) request.suite = scored_suite(store, all_runs, request.by == "severity");
  if (request.baseline.empty() && !groups.empty()) request.baseline = groups.front().label;
  const RunGroup* baseline = nullptr;
  for (const auto& group : groups) {
    if (group.label == request.baseline) baseline = &group;
  }
  if (baseline == nullptr) {
    std::vector<std::string> labels;
    for (const auto& group : groups) labels.push_back(group.label);
    throw ConfigError(fmt::format("robustness: --baseline '{}' is not a group (groups: {})",
                                  request.baseline, fmt::join(labels, "; ")));
  }
  if (!request.by.empty() && request.suite.empty()) {
    throw ConfigError(fmt::format("robustness: --by {} needs corruption results, and no run has them",
                                  request.by));
  }

  MeasureTable table;
  if (!request.suite.empty()) {
    std::vector<CorruptionErrors> base_runs;
    for (int64_t run : baseline->run_ids) base_runs.push_back(corruption_errors(store, run, request.suite));
    const CorruptionErrors base = mean_errors(base_runs);
    for (const auto& group : groups) {
      for (int64_t run : group.run_ids) {
        for (const auto& [measure, value] :
             corruption_measures(corruption_errors(store, run, request.suite), base, request.by)) {
          table.add(measure, group.label, value);
        }
      }
    }
  }
  if (!request.suite.empty() && request.by.empty()) {  // routing replay (task.routing_replay)
    for (const auto& group : groups) {
      for (int64_t run : group.run_ids) {
        for (const auto& [measure, value] : routing_replay_measures(store, run, request.suite)) {
          table.add(measure, group.label, value);
        }
      }
    }
  }
  if (request.by.empty()) {
    for (const auto& group : groups) {
      for (int64_t run : group.run_ids) {
        const AttackResults attacks = attack_results(store, run);
        for (const auto& [attack, value] : attacks.values) {
          table.add(fmt::format("robust_{}[{}]", attacks.metric, attack), group.label, value);
        }
      }
    }
  }
  if (table.order.empty()) {
    throw ConfigError(fmt::format("robustness: no done run{} has corruption or attack results "
                                  "(task.corruptions, task.attacks)",
                                  request.sweep.empty() ? "" : " of sweep '" + request.sweep + "'"));
  }

  QueryResult result;
  for (const auto& measure : table.order) {
    std::vector<ReportGroup> report_groups;
    for (const auto& group : groups) {
      const auto found = table.values[measure].find(group.label);
      if (found != table.values[measure].end()) report_groups.push_back({group.label, found->second});
    }
    ReportRequest per_measure;
    per_measure.group_by = request.group_by;
    per_measure.baseline = table.values[measure].count(request.baseline) ? request.baseline : "";
    QueryResult part = report_table(report_groups, per_measure);
    if (result.columns.empty()) {
      result.columns = part.columns;
      result.columns.insert(result.columns.begin() + 1, "measure");
    }
    for (auto& row : part.rows) {
      row.insert(row.begin() + 1, Cell{Cell::Type::Text, 0, 0.0, measure});
      result.rows.push_back(std::move(row));
    }
  }
  return result;
}

}  // namespace moelab
