// Reports over seeds.
#include "harness/report/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "harness/config/config.h"
#include "harness/report/presets.h"
#include "harness/core/error.h"
#include "harness/report/stats.h"
#include "harness/report/table.h"

namespace moelab {
namespace {

Cell text(const std::string& value) { return Cell{Cell::Type::Text, 0, 0.0, value}; }
Cell integer(int64_t value) { return Cell{Cell::Type::Integer, value, 0.0, ""}; }
Cell real(double value) {
  return std::isfinite(value) ? Cell{Cell::Type::Real, 0, value, ""} : Cell{};
}

// What a run recorded before `key` existed had for it: the key's default, for keys outside the
// plugin sections (whose keys depend on the plugin chosen); "?" otherwise.
std::string value_before_key_existed(const std::string& key) {
  static const std::map<std::string, std::string> defaults = [] {
    std::map<std::string, std::string> out;
    RunConfig config;
    for (const auto& row : list_fields(config)) out[row.path] = row.value;
    return out;
  }();
  for (const char* plugin : {"router.", "task.", "eval.router_override."}) {
    if (key.rfind(plugin, 0) == 0) return "?";
  }
  auto found = defaults.find(key);
  return found == defaults.end() ? "?" : found->second;
}

// A --group-by key no run recorded and no config has is a typo: name it and the nearest key.
void check_group_keys(Store& store, const std::vector<std::string>& keys) {
  std::vector<std::string> known;
  for (const auto& row : store.query("SELECT DISTINCT key FROM params ORDER BY key").rows) {
    known.push_back(row[0].text);
  }
  RunConfig defaults;
  for (const auto& row : list_fields(defaults)) known.push_back(row.path);
  for (const auto& key : keys) {
    const std::string path = param_key(key);
    if (std::find(known.begin(), known.end(), path) != known.end()) continue;
    const std::string hint = nearest_name(path, known);
    throw ConfigError(fmt::format("--group-by: no run has the config key '{}'{}", key,
                                  hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
  }
}

std::string html(const QueryResult& table, const ReportRequest& request) {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moelab report: {0}</title>\n"
      "<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}"
      "td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}"
      "td:first-child,th:first-child{{text-align:left}}th{{background:#f0f0f0}}</style>\n"
      "</head><body>\n<h1>{0}</h1>\n<p>sweep: {1}; grouped by {2}; baseline: {3}; mean &plusmn; "
      "95% t-interval over seeds, Welch's t-test p-value against the baseline.</p>\n<table>\n<tr>",
      escape_html(request.metric), escape_html(request.sweep.empty() ? "(all runs)" : request.sweep),
      escape_html(fmt::format("{}", fmt::join(request.group_by, ", "))),
      escape_html(request.baseline.empty() ? "(none)" : request.baseline));
  for (const auto& column : table.columns) out += "<th>" + escape_html(column) + "</th>";
  out += "</tr>\n";
  for (const auto& row : table.rows) {
    out += "<tr>";
    for (const auto& cell : row) out += "<td>" + escape_html(cell.type == Cell::Type::Null ? "" : cell.to_string()) + "</td>";
    out += "</tr>\n";
  }
  return out + "</table>\n</body></html>\n";
}

}  // namespace

std::string param_key(const std::string& key) {
  if (key == "router") return "router.name";
  if (key == "task") return "task.name";
  return key;
}

std::vector<std::string> split_keys(const std::string& keys) {
  std::vector<std::string> out;
  std::stringstream stream(keys);
  for (std::string key; std::getline(stream, key, ',');) {
    if (!key.empty()) out.push_back(key);
  }
  return out;
}

std::vector<RunGroup> group_done_runs(Store& store, const std::string& sweep,
                                      const std::vector<std::string>& keys) {
  if (keys.empty()) throw ConfigError("--group-by needs at least one key");
  check_group_keys(store, keys);
  std::string sql = "SELECT r.id";
  for (size_t i = 0; i < keys.size(); ++i) {
    sql += fmt::format(", (SELECT value FROM params p WHERE p.run_id = r.id AND p.key = ?{})", i + 2);
  }
  sql += " FROM runs r WHERE r.status = 'done' AND " MOELAB_RUN_IN_SWEEP_SQL " ORDER BY r.id";
  std::vector<SqlParam> params = {sweep};
  for (const auto& key : keys) params.emplace_back(param_key(key));
  std::vector<RunGroup> groups;
  std::map<std::string, size_t> index;
  for (const auto& row : store.query(sql, params).rows) {
    std::vector<std::string> values;
    for (size_t i = 0; i < keys.size(); ++i) {
      const Cell& cell = row[i + 1];
      values.push_back(cell.type == Cell::Type::Null ? value_before_key_existed(param_key(keys[i]))
                                                     : cell.to_string());
    }
    const std::string label = fmt::format("{}", fmt::join(values, ", "));
    auto found = index.find(label);
    if (found == index.end()) {
      found = index.emplace(label, groups.size()).first;
      groups.push_back({label, {}});
    }
    groups[found->second].run_ids.push_back(row[0].integer);
  }
  return groups;
}

std::vector<ReportGroup> collect_groups(Store& store, ReportRequest& request) {
  const auto run_groups = group_done_runs(store, request.sweep, request.group_by);
  if (request.metric.empty()) request.metric = main_summary(store, request.sweep, "test");
  std::vector<ReportGroup> groups;
  for (const auto& runs : run_groups) {
    ReportGroup group{runs.label, {}};
    for (int64_t run : runs.run_ids) {
      const auto value = store.query("SELECT value FROM summaries WHERE run_id = ? AND name = ? AND "
                                     "value IS NOT NULL",
                                     {run, request.metric});
      if (!value.rows.empty()) group.values.push_back(value.rows[0][0].number());
    }
    if (!group.values.empty()) groups.push_back(std::move(group));
  }
  if (groups.empty()) {
    throw ConfigError(fmt::format("report: no done run{} has the summary '{}' (moelab query DB \"SELECT "
                            "DISTINCT name FROM summaries\" lists them)",
                            request.sweep.empty() ? "" : " of sweep '" + request.sweep + "'",
                            request.metric));
  }
  return groups;
}

QueryResult report_table(const std::vector<ReportGroup>& groups, const ReportRequest& request) {
  const ReportGroup* baseline = nullptr;
  for (const auto& group : groups) {
    if (group.label == request.baseline) baseline = &group;
  }
  if (!request.baseline.empty() && !baseline) {
    std::vector<std::string> labels;
    for (const auto& group : groups) labels.push_back(group.label);
    throw ConfigError(fmt::format("report: --baseline '{}' is not a group (groups: {})",
                                  request.baseline, fmt::join(labels, "; ")));
  }
  QueryResult table;
  table.columns = {fmt::format("{}", fmt::join(request.group_by, ", ")), "n", "mean", "std",
                   "ci95", "delta", "p_welch", "p_holm", "mde"};
  const Summary base = baseline ? summarise(baseline->values) : Summary{};
  std::vector<double> p;  // NaN for the baseline and for groups with no test
  for (const auto& group : groups) {
    const Summary s = summarise(group.values);
    const bool compare = baseline && baseline != &group;
    const WelchTest test = compare ? welch_test(group.values, baseline->values) : WelchTest{};
    p.push_back(compare ? test.p : std::nan(""));
    const bool has_spread = s.n >= 2 && base.n >= 2 && (s.std > 0 || base.std > 0);
    const double mde = compare && has_spread
                           ? minimum_detectable_effect_two_sample(s.n, base.n, s.std, base.std)
                           : std::nan("");
    table.rows.push_back({text(group.label), integer(s.n), real(s.mean), real(s.std),
                          real(s.ci_half), compare ? real(s.mean - base.mean) : Cell{},
                          compare ? real(test.p) : Cell{}, Cell{}, real(mde)});
  }
  const auto adjusted = holm_adjust(p);
  for (size_t i = 0; i < table.rows.size(); ++i) table.rows[i][7] = real(adjusted[i]);
  return table;
}

std::string render_report(const QueryResult& table, const ReportRequest& request,
                          const std::string& format) {
  if (format == "text") {
    return fmt::format("{} by {}{}:\n{}{}", request.metric, fmt::join(request.group_by, ", "),
                       request.baseline.empty() ? "" : " (baseline " + request.baseline + ")",
                       format_aligned(table),
                       request.baseline.empty()
                           ? ""
                           : "Unpaired: ci95 the 95% t half-width; p_welch Welch's test against the "
                             "baseline, p_holm Holm-adjusted over the rows; mde the smallest "
                             "difference Welch's test detects with 80% power at alpha 0.05. For "
                             "runs paired by seed: moelab compare.\n");
  }
  if (format == "md") return format_markdown(table);
  if (format == "csv") return format_csv(table);
  if (format == "latex") return format_latex(table, request.metric);
  if (format == "json") return format_json(table);
  if (format == "html") return html(table, request);
  throw ConfigError(fmt::format("report: unknown format '{}' (text, md, csv, latex, json, html)", format));
}

}  // namespace moelab
