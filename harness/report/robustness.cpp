// CE / mCE / relative mCE.
#include "harness/report/robustness.h"

#include <fmt/format.h>

#include "harness/core/error.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

double sum(const std::vector<double>& values) {
  double total = 0.0;
  for (double v : values) total += v;
  return total;
}

Cell real(double value) { return Cell{Cell::Type::Real, 0, value, ""}; }

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
  SQLite::Statement select(store.database(),
                           "SELECT name, value FROM summaries WHERE run_id = ? AND value IS NOT NULL "
                           "AND (name = ? OR (name LIKE ? AND name NOT LIKE '%@%' AND name LIKE ?)) "
                           "ORDER BY name");
  select.bind(1, static_cast<int64_t>(run_id));
  select.bind(2, clean_name);
  select.bind(3, suite_name + ":%");
  select.bind(4, "%/" + suite->metric);
  CorruptionErrors result;
  bool clean = false;
  // Names sort as SUITE:NAME:1 ... SUITE:NAME:5, so severities arrive in order.
  while (select.executeStep()) {
    const std::string name = select.getColumn(0).getString();
    const double error = task->error(*suite, select.getColumn(1).getDouble());
    if (name == clean_name) {
      result.clean_error = error;
      clean = true;
      continue;
    }
    const std::string split = name.substr(0, name.rfind('/'));
    const auto first = split.find(':'), second = split.find(':', first + 1);
    result.errors[split.substr(first + 1, second == std::string::npos ? std::string::npos
                                                                       : second - first - 1)]
        .push_back(error);
  }
  if (!clean || result.errors.empty()) {
    throw ConfigError(fmt::format("run {} has no {} and {} corruption results (run it with "
                            "task.corruptions including {})",
                            run_id, clean_name, suite_name, suite_name));
  }
  return result;
}

QueryResult robustness_table(Store& store, const std::string& suite, int64_t baseline_run,
                             const std::vector<int64_t>& runs) {
  const CorruptionErrors baseline = corruption_errors(store, baseline_run, suite);
  QueryResult table;
  table.columns = {"run", "router", "clean_error", "mean_corruption_error", "mCE",
                   "relative_mCE"};
  for (int64_t run : runs) {
    const CorruptionErrors errors = corruption_errors(store, run, suite);
    const RobustnessScores scores = robustness_scores(errors, baseline);
    auto router = store.query(fmt::format("SELECT router FROM runs WHERE id = {}", run));
    table.rows.push_back({Cell{Cell::Type::Integer, run, 0.0, ""},
                          router.rows.empty() ? Cell{} : router.rows[0][0],
                          real(errors.clean_error), real(scores.mean_error), real(scores.mce),
                          real(scores.relative_mce)});
  }
  return table;
}

}  // namespace moelab
