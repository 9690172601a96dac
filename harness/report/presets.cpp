// Query presets and default metrics, derived from the task registry.
#include "harness/report/presets.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "harness/core/error.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

std::string quoted(const std::string& text) { return "'" + text + "'"; }

// A CASE over r.task: the name of the run's main test summary (the first declared one it has).
std::string main_name_sql() {
  std::string sql = "CASE r.task";
  for (const TaskMetrics* task : all_task_metrics()) {
    std::vector<std::string> names, order;
    for (size_t i = 0; i < task->main.size(); ++i) {
      names.push_back(quoted("test/" + task->main[i]));
      order.push_back(fmt::format("WHEN {} THEN {}", names.back(), i));
    }
    sql += fmt::format(
        " WHEN {} THEN (SELECT name FROM summaries WHERE run_id = r.id AND name IN ({}) "
        "ORDER BY CASE name {} END LIMIT 1)",
        quoted(task->task), fmt::join(names, ", "), fmt::join(order, " "));
  }
  return sql + " END";
}

// "task|test/metric" of every declared higher-is-better main metric: sorted descending.
std::string higher_better_keys() {
  std::vector<std::string> keys;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& metric : task->main) {
      if (task->higher_is_better(metric)) keys.push_back(quoted(task->task + "|test/" + metric));
    }
  }
  return keys.empty() ? "''" : fmt::format("{}", fmt::join(keys, ", "));
}

std::string leaderboard_sql() {
  std::string suites;
  std::set<std::string> seen;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& suite : task->suites) {
      if (!seen.insert(suite.name).second) continue;
      suites += fmt::format(
          ", (SELECT value FROM summaries WHERE run_id = r.id AND name = '{0}/mean_error') AS "
          "{0}_mean_error",
          suite.name);
    }
  }
  return fmt::format(
      "WITH main AS (SELECT r.id AS run_id, {} AS name FROM runs r WHERE r.status = 'done') "
      "SELECT r.id, r.sweep, r.task, r.router, r.seed, r.axes, m.name AS metric, s.value AS "
      "value{}, ROUND(CAST(r.wall_seconds AS NUMERIC), 1) AS seconds FROM runs r JOIN main m ON m.run_id = r.id "
      "LEFT JOIN summaries s ON s.run_id = r.id AND s.name = m.name "
      "ORDER BY r.task, s.value IS NULL, m.name, CASE WHEN r.task || '|' || m.name IN ({}) THEN -s.value "
      "ELSE s.value END, r.id",
      main_name_sql(), suites, higher_better_keys());
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"leaderboard", "failures", "progress"};
  return names;
}

std::string preset_sql(const std::string& preset) {
  if (preset == "leaderboard") return leaderboard_sql();
  if (preset == "failures") {
    return "SELECT id, sweep, status, router, seed, axes, finished_at, error FROM runs "
           "WHERE status IN ('failed', 'diverged', 'interrupted') ORDER BY id";
  }
  if (preset == "progress") {
    // SQL that SQLite and PostgreSQL both accept (no boolean sums, ROUND on NUMERIC).
    const auto count = [](const char* condition) {
      return fmt::format("SUM(CASE WHEN {} THEN 1 ELSE 0 END)", condition);
    };
    return fmt::format("SELECT sweep, COUNT(*) AS runs, {} AS done, {} AS running, {} AS pending, "
                       "{} AS failed, {} AS interrupted, ROUND(CAST(SUM(wall_seconds) AS NUMERIC), "
                       "1) AS seconds, MAX(heartbeat_at) AS last_heartbeat FROM runs GROUP BY "
                       "sweep ORDER BY sweep",
                       count("status = 'done'"), count("status = 'running'"),
                       count("status = 'pending'"), count("status IN ('failed', 'diverged')"),
                       count("status = 'interrupted'"));
  }
  throw ConfigError(fmt::format("query: unknown preset '{}' (known: {})", preset,
                                fmt::join(preset_names(), ", ")));
}

std::string main_summary(Store& store, const std::string& sweep, const std::string& split) {
  const QueryResult tasks = store.query(
      "SELECT r.task, MIN(r.id) FROM runs r WHERE r.status = 'done' AND " MOELAB_RUN_IN_SWEEP_SQL
      " GROUP BY r.task ORDER BY MIN(r.id)",
      {sweep});
  std::set<std::string> chosen;
  std::vector<std::string> tasks_seen;
  for (const auto& row : tasks.rows) {
    const std::string& task = row[0].text;
    tasks_seen.push_back(task);
    for (const auto& metric : task_metrics(task).main) {
      const bool found = !store.query("SELECT 1 FROM summaries s JOIN runs r ON r.id = s.run_id "
                                      "WHERE r.task = ?2 AND s.name = ?3 AND r.status = 'done' "
                                      "AND " MOELAB_RUN_IN_SWEEP_SQL " LIMIT 1",
                                      {sweep, task, split + "/" + metric})
                              .rows.empty();
      if (found) {
        chosen.insert(split + "/" + metric);
        break;
      }
    }
  }
  const std::string where = sweep.empty() ? "" : fmt::format(" of sweep '{}'", sweep);
  if (chosen.size() > 1) {
    throw ConfigError(fmt::format("the done runs{} are of tasks with different main metrics ({}): "
                                  "name one with --metric",
                                  where, fmt::join(chosen, ", ")));
  }
  if (chosen.empty()) {
    throw ConfigError(fmt::format("no done run{} reports its task's main metric under '{}' (tasks: {}); "
                                  "name one with --metric",
                            where, split, tasks_seen.empty() ? "none" : fmt::format("{}", fmt::join(tasks_seen, ", "))));
  }
  return *chosen.begin();
}

}  // namespace moelab
