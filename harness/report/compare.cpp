// Paired comparisons of groups of runs against a baseline (harness/report/compare.h).
#include "harness/report/compare.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "harness/config/config.h"
#include "harness/core/error.h"
#include "harness/report/presets.h"
#include "harness/report/report.h"
#include "harness/report/stats.h"
#include "harness/report/table.h"
#include "tasks/task_metrics.h"

namespace moelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A done run's config keys and its value of the metric (NaN when it has none).
struct RunValues {
  std::map<std::string, std::string> params;
  double value = kNaN;
};

// (step, value) rows of one run's logged metric, by step.
std::vector<std::pair<double, double>> logged_curve(Store& store, int64_t run,
                                                    const std::string& split,
                                                    const std::string& name) {
  std::vector<std::pair<double, double>> curve;
  for (const auto& row : store.query("SELECT step, value FROM metrics WHERE run_id = ? AND "
                                     "split = ? AND name = ? AND value IS NOT NULL ORDER BY step",
                                     {run, split, name})
                             .rows) {
    curve.emplace_back(row[0].number(), row[1].number());
  }
  return curve;
}

// y at x on the piecewise-linear curve through the points (x ascending); NaN beyond its ends.
double interpolate(const std::vector<std::pair<double, double>>& points, double x) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i].first < x) continue;
    if (points[i].first == x || i == 0) return points[i].first == x ? points[i].second : kNaN;
    const auto& [x0, y0] = points[i - 1];
    const auto& [x1, y1] = points[i];
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
  }
  return kNaN;
}

// A run's metric ("val/accuracy") at `flops` training FLOPs: its cumulative train/flops
// curve gives the FLOPs at each step where the metric was logged (linear between logging
// steps, 0 at step 0), then the metric is linear in FLOPs between those points. NaN when the
// run never reached `flops` or logged the metric on neither side of it.
double metric_at_flops(Store& store, int64_t run, const std::string& metric, double flops) {
  const auto slash = metric.rfind('/');
  if (slash == std::string::npos) throw ConfigError(fmt::format("compare: --metric '{}' is not SPLIT/METRIC", metric));
  auto compute = logged_curve(store, run, "train", "flops");
  compute.insert(compute.begin(), std::make_pair(0.0, 0.0));
  std::vector<std::pair<double, double>> by_flops;  // (FLOPs, metric) at the metric's steps
  for (const auto& [step, value] : logged_curve(store, run, metric.substr(0, slash), metric.substr(slash + 1))) {
    const double at = interpolate(compute, step);
    if (std::isfinite(at)) by_flops.emplace_back(at, value);
  }
  return interpolate(by_flops, flops);
}

std::map<int64_t, RunValues> read_runs(Store& store, const std::string& sweep,
                                       const std::string& metric) {
  std::map<int64_t, RunValues> runs;
  const std::string done = std::string(run_status_text(RunStatus::Done));
  for (const auto& row : store.query("SELECT p.run_id, p.key, p.value FROM params p JOIN runs r ON "
                                     "r.id = p.run_id WHERE r.status = ?2 AND "
                                     MOELAB_RUN_IN_SWEEP_SQL,
                                     {sweep, done})
                             .rows) {
    runs[row[0].integer].params[row[1].text] = row[2].text;
  }
  for (const auto& row : store.query("SELECT s.run_id, s.value FROM summaries s JOIN runs r ON "
                                     "r.id = s.run_id WHERE r.status = ?2 AND s.name = ?3 AND "
                                     "s.value IS NOT NULL AND " MOELAB_RUN_IN_SWEEP_SQL,
                                     {sweep, done, metric})
                             .rows) {
    runs[row[0].integer].value = row[1].number();
  }
  return runs;
}

// The config keys two paired runs may differ in: the compared keys with their plugin sections
// (router.name: every router.* key), the pairing keys, and the keys outside a run's identity
// (threads, db, data paths: the unhashed fields of each task and router the runs use).
class ComparedKeys {
 public:
  ComparedKeys(const CompareRequest& request, const std::map<int64_t, RunValues>& runs) {
    for (const auto& key : request.group_by) add_compared(param_key(key));
    for (const auto& key : request.pair_by) keys_.insert(param_key(key));
    std::set<std::pair<std::string, std::string>> plugins;
    for (const auto& [id, run] : runs) {
      plugins.emplace(value_of(run, "task.name"), value_of(run, "router.name"));
    }
    for (const auto& [task, router] : plugins) add_unhashed(task, router);
  }
  bool contains(const std::string& key) const {
    if (keys_.count(key)) return true;
    for (const auto& prefix : prefixes_) {
      if (key.rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

 private:
  static std::string value_of(const RunValues& run, const std::string& key) {
    auto found = run.params.find(key);
    return found == run.params.end() ? "" : found->second;
  }
  void add_compared(const std::string& key) {
    keys_.insert(key);
    const auto dot = key.rfind(".name");
    if (dot != std::string::npos && dot + 5 == key.size()) prefixes_.push_back(key.substr(0, dot + 1));
  }
  void add_unhashed(const std::string& task, const std::string& router) {
    std::vector<std::string> overrides;
    if (!task.empty()) overrides.push_back("task.name=" + task);
    if (!router.empty()) overrides.push_back("router.name=" + router);
    RunConfig config;
    try {
      config = parse_run_config("", "compare", overrides);
    } catch (const ConfigError&) {
      return;  // a plugin this build does not know: its keys are compared as recorded
    }
    for (const auto& row : list_fields(config)) {
      if (!row.hashed) keys_.insert(row.path);
    }
  }
  std::set<std::string> keys_;
  std::vector<std::string> prefixes_;
};

// The pair key of a run: "seed=1" (the request's pairing keys and their values).
std::string pair_key(const RunValues& run, const std::vector<std::string>& pair_by) {
  std::vector<std::string> parts;
  for (const auto& key : pair_by) {
    auto found = run.params.find(param_key(key));
    parts.push_back(key + "=" + (found == run.params.end() ? "?" : found->second));
  }
  return fmt::format("{}", fmt::join(parts, " "));
}

// A group's runs that have the metric, by pair key; two on one key is an error.
std::map<std::string, int64_t> runs_by_pair_key(const RunGroup& group,
                                                const std::map<int64_t, RunValues>& runs,
                                                const CompareRequest& request) {
  std::map<std::string, int64_t> by_key;
  for (int64_t id : group.run_ids) {
    const RunValues& run = runs.at(id);
    if (std::isnan(run.value)) continue;
    const std::string key = pair_key(run, request.pair_by);
    const auto [it, inserted] = by_key.emplace(key, id);
    if (!inserted) {
      throw ConfigError(fmt::format(
          "compare: group '{}' has two runs with {} (runs {} and {}): they differ in a key that "
          "is not compared; add it to --group-by or --pair-by, or compare one sweep (--sweep)",
          group.label, key, it->second, id));
    }
  }
  return by_key;
}

// Paired runs (a of group_a, b of group_b, on pair key `key`) must differ only in compared
// keys: names the first other key that differs.
void check_pair(int64_t a, const std::string& group_a, int64_t b, const std::string& group_b,
                const std::string& key, const std::map<int64_t, RunValues>& runs,
                const ComparedKeys& compared) {
  const auto& pa = runs.at(a).params;
  const auto& pb = runs.at(b).params;
  std::set<std::string> keys;
  for (const auto& entry : pa) keys.insert(entry.first);
  for (const auto& entry : pb) keys.insert(entry.first);
  for (const auto& name : keys) {
    if (compared.contains(name)) continue;
    auto va = pa.find(name), vb = pb.find(name);
    const std::string x = va == pa.end() ? "(unset)" : va->second;
    const std::string y = vb == pb.end() ? "(unset)" : vb->second;
    if (x == y) continue;
    throw ConfigError(fmt::format(
        "compare: run {} ({}) and run {} ({}) pair up on {} but differ in {} ({} vs {}), which "
        "is not compared: add it to --group-by, or compare runs that share it",
        a, group_a, b, group_b, key, name, x, y));
  }
}

std::vector<double> values_of(const std::map<std::string, int64_t>& by_key,
                              const std::map<int64_t, RunValues>& runs) {
  std::vector<double> values;
  for (const auto& [key, id] : by_key) values.push_back(runs.at(id).value);
  return values;
}

// The tests on n >= 2 pairs.
void compare_paired(const std::vector<double>& group, const std::vector<double>& baseline,
                    const CompareRequest& request, Comparison& row) {
  const PairedTest test = paired_t_test(group, baseline, 1 - request.alpha);
  std::vector<double> differences;
  for (size_t i = 0; i < group.size(); ++i) differences.push_back(group[i] - baseline[i]);
  row.paired = true;
  row.mean_diff = test.mean_diff;
  row.ci_low = test.ci_low;
  row.ci_high = test.ci_high;
  row.p = test.p;
  row.p_wilcoxon = wilcoxon_signed_rank_p(differences);
  row.mde = test.sd > 0 ? minimum_detectable_effect(test.n, test.sd, request.alpha, request.power)
                        : kNaN;
  if (request.margin) {
    const EquivalenceTest equivalence = tost_paired(differences, *request.margin, request.alpha);
    row.p_equivalence = equivalence.p;
    row.equivalent = equivalence.equivalent;
  }
}

// Welch's test on all runs of both groups (no pairs); equivalence by the 1 − 2α interval.
void compare_unpaired(const std::vector<double>& group, const std::vector<double>& baseline,
                      const CompareRequest& request, Comparison& row) {
  row.paired = false;
  row.mean_diff = summarise(group).mean - summarise(baseline).mean;
  row.p_wilcoxon = kNaN;
  row.p_equivalence = kNaN;
  if (group.size() < 2 || baseline.size() < 2) {
    row.ci_low = row.ci_high = row.p = row.mde = kNaN;
    return;
  }
  const WelchTest test = welch_test(group, baseline, 1 - request.alpha);
  row.ci_low = test.ci_low;
  row.ci_high = test.ci_high;
  row.p = test.p;
  const Summary a = summarise(group), b = summarise(baseline);
  row.mde = a.std > 0 || b.std > 0
                ? minimum_detectable_effect_two_sample(a.n, b.n, a.std, b.std, request.alpha,
                                                       request.power)
                : kNaN;
  if (request.margin && std::isfinite(test.p)) {
    const WelchTest narrow = welch_test(group, baseline, 1 - 2 * request.alpha);
    row.equivalent = -*request.margin < narrow.ci_low && narrow.ci_high < *request.margin;
  }
}

// The metric's direction as the runs' task declares it; nullopt when the runs' tasks do not
// declare the metric (a derived summary) or disagree.
std::optional<bool> higher_is_better(const std::map<int64_t, RunValues>& runs,
                                     const std::string& metric) {
  std::set<bool> directions;
  for (const auto& [id, run] : runs) {
    auto task = run.params.find("task.name");
    if (task == run.params.end() || std::isnan(run.value)) continue;
    try {
      directions.insert(task_metrics(task->second).higher_is_better(metric_of(metric)));
    } catch (const Error&) {
      return std::nullopt;
    }
  }
  if (directions.size() != 1) return std::nullopt;
  return *directions.begin();
}

std::string verdict(const Comparison& row, const CompareRequest& request) {
  if (std::isfinite(row.p_holm) && row.p_holm < request.alpha) {
    return row.mean_diff > 0 ? "higher" : "lower";
  }
  if (row.equivalent) return fmt::format("equivalent within ±{:g}", *request.margin);
  return "inconclusive";
}

}  // namespace

ComparisonTable compare_groups(Store& store, CompareRequest request) {
  if (request.baseline.empty()) throw ConfigError("compare: --baseline names the group to compare with");
  if (request.pair_by.empty()) throw ConfigError("compare: --pair-by needs at least one key");
  if (request.margin && !(*request.margin > 0)) {
    throw ConfigError(fmt::format("compare: --margin must be positive, not {}", *request.margin));
  }
  const auto groups = group_done_runs(store, request.sweep, request.group_by);
  if (request.metric.empty()) {  // at a FLOP budget: the curve of the main validation metric
    request.metric = main_summary(store, request.sweep, request.at_flops ? "val" : "test");
  }
  auto runs = read_runs(store, request.sweep, request.metric);
  ComparisonTable table;
  if (request.at_flops) {
    for (auto& [id, run] : runs) {
      run.value = metric_at_flops(store, id, request.metric, *request.at_flops);
      if (std::isnan(run.value)) {
        table.short_of_budget.push_back(fmt::format("run {} ({})", id, run.params["router.name"]));
      }
    }
  }
  const RunGroup* baseline = nullptr;
  std::vector<std::string> labels;
  for (const auto& group : groups) {
    labels.push_back(group.label);
    if (group.label == request.baseline) baseline = &group;
  }
  if (!baseline) {
    throw ConfigError(fmt::format("compare: --baseline '{}' is not a group (groups: {})",
                                  request.baseline, fmt::join(labels, "; ")));
  }
  const ComparedKeys compared(request, runs);
  const auto baseline_runs = runs_by_pair_key(*baseline, runs, request);
  if (baseline_runs.empty()) {
    throw ConfigError(fmt::format("compare: no run of the baseline '{}' has the summary '{}'",
                                  request.baseline, request.metric));
  }
  for (const auto& group : groups) {
    if (&group == baseline) continue;
    const auto group_runs = runs_by_pair_key(group, runs, request);
    if (group_runs.empty()) continue;
    std::map<std::string, int64_t> paired_group, paired_baseline;
    for (const auto& [key, id] : group_runs) {
      auto partner = baseline_runs.find(key);
      if (partner == baseline_runs.end()) continue;
      check_pair(id, group.label, partner->second, baseline->label, key, runs, compared);
      paired_group[key] = id;
      paired_baseline[key] = partner->second;
    }
    Comparison row;
    row.group = group.label;
    row.n_pairs = static_cast<int64_t>(paired_group.size());
    row.n_group = static_cast<int64_t>(group_runs.size());
    row.n_baseline = static_cast<int64_t>(baseline_runs.size());
    row.mean_group = summarise(values_of(group_runs, runs)).mean;
    row.mean_baseline = summarise(values_of(baseline_runs, runs)).mean;
    row.p_equivalence = kNaN;
    if (row.n_pairs >= 2) {
      compare_paired(values_of(paired_group, runs), values_of(paired_baseline, runs), request, row);
    } else {
      compare_unpaired(values_of(group_runs, runs), values_of(baseline_runs, runs), request, row);
    }
    table.rows.push_back(row);
  }
  std::vector<double> p;
  for (const auto& row : table.rows) p.push_back(row.p);
  const auto adjusted = holm_adjust(p);
  for (size_t i = 0; i < table.rows.size(); ++i) {
    table.rows[i].p_holm = adjusted[i];
    table.corrected_for += std::isfinite(p[i]) ? 1 : 0;
  }
  for (auto& row : table.rows) row.verdict = verdict(row, request);
  table.higher_is_better = higher_is_better(runs, request.metric);
  table.request = std::move(request);
  return table;
}

namespace {

Cell text_cell(const std::string& value) { return Cell{Cell::Type::Text, 0, 0.0, value}; }
Cell integer_cell(int64_t value) { return Cell{Cell::Type::Integer, value, 0.0, ""}; }
Cell real_cell(double value) {
  return std::isfinite(value) ? Cell{Cell::Type::Real, 0, value, ""} : Cell{};
}

QueryResult as_query_result(const ComparisonTable& table) {
  QueryResult result;
  result.columns = {"group", "paired", "n_pairs", "n", "mean_diff", "ci_low", "ci_high", "p",
                    "p_holm", "p_wilcoxon", "mde"};
  if (table.request.margin) result.columns.push_back("p_equivalence");
  result.columns.push_back("verdict");
  for (const auto& row : table.rows) {
    std::vector<Cell> cells = {
        text_cell(row.group), text_cell(row.paired ? "yes" : "no (Welch)"),
        integer_cell(row.n_pairs), integer_cell(row.n_group), real_cell(row.mean_diff),
        real_cell(row.ci_low), real_cell(row.ci_high), real_cell(row.p), real_cell(row.p_holm),
        real_cell(row.p_wilcoxon), real_cell(row.mde)};
    if (table.request.margin) cells.push_back(real_cell(row.p_equivalence));
    cells.push_back(text_cell(row.verdict));
    result.rows.push_back(std::move(cells));
  }
  return result;
}

nlohmann::json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

std::string as_json(const ComparisonTable& table) {
  const CompareRequest& request = table.request;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : table.rows) {
    rows.push_back({{"group", row.group},
                    {"baseline", request.baseline},
                    {"metric", request.metric},
                    {"paired", row.paired},
                    {"n_pairs", row.n_pairs},
                    {"n_group", row.n_group},
                    {"n_baseline", row.n_baseline},
                    {"mean_group", number_or_null(row.mean_group)},
                    {"mean_baseline", number_or_null(row.mean_baseline)},
                    {"mean_diff", number_or_null(row.mean_diff)},
                    {"ci_low", number_or_null(row.ci_low)},
                    {"ci_high", number_or_null(row.ci_high)},
                    {"confidence", 1 - request.alpha},
                    {"p", number_or_null(row.p)},
                    {"p_holm", number_or_null(row.p_holm)},
                    {"corrected_for", table.corrected_for},
                    {"p_wilcoxon", number_or_null(row.p_wilcoxon)},
                    {"mde", number_or_null(row.mde)},
                    {"power", request.power},
                    {"margin", request.margin ? nlohmann::json(*request.margin) : nlohmann::json(nullptr)},
                    {"at_flops", request.at_flops ? nlohmann::json(*request.at_flops) : nlohmann::json(nullptr)},
                    {"p_equivalence", number_or_null(row.p_equivalence)},
                    {"equivalent", row.equivalent},
                    {"verdict", row.verdict}});
  }
  return rows.dump(2) + "\n";
}

// What the numbers are: the header of the text and Markdown forms.
std::string method_note(const ComparisonTable& table) {
  const CompareRequest& request = table.request;
  const auto confidence = static_cast<int>(std::lround(100 * (1 - request.alpha)));
  std::string note = fmt::format(
      "{}{}{}: each group - baseline '{}'.\n"
      "Paired by {} (runs equal in every other config key), paired t test and {}% t interval "
      "of the mean difference; Wilcoxon signed-rank p; rows marked Welch had no partners and "
      "use Welch's unpaired test.\n"
      "p_holm: Holm-Bonferroni over the {} comparison(s) of this table, alpha = {:g}. mde: the "
      "smallest |difference| detected with {:g}% power at alpha = {:g}.\n",
      request.metric,
      table.higher_is_better ? (*table.higher_is_better ? " (higher is better)" : " (lower is better)") : "",
      request.sweep.empty() ? "" : fmt::format(", sweep '{}'", request.sweep), request.baseline,
      fmt::join(request.pair_by, ", "), confidence, table.corrected_for, request.alpha,
      100 * request.power, request.alpha);
  note += request.margin
              ? fmt::format("Equivalence: two one-sided tests against +-{:g} (the {}% interval "
                            "inside the margin), alpha = {:g}.\n",
                            *request.margin, static_cast<int>(std::lround(100 * (1 - 2 * request.alpha))),
                            request.alpha)
              : "No equivalence margin given (--margin): no row can be called equivalent.\n";
  if (request.at_flops) {
    note += fmt::format("Compute-matched: each run's {} at {:.4g} training FLOPs, from its logged "
                        "curve.{}\n",
                        request.metric, *request.at_flops,
                        table.short_of_budget.empty()
                            ? std::string()
                            : fmt::format(" Left out, short of that budget: {}.",
                                          fmt::join(table.short_of_budget, ", ")));
  }
  note += "inconclusive: neither shown different (p_holm >= alpha) nor shown equivalent; a "
          "difference smaller than mde would likely go unseen.\n";
  return note;
}

}  // namespace

std::string render_comparison(const ComparisonTable& table, const std::string& format) {
  if (format == "json") return as_json(table);
  const QueryResult result = as_query_result(table);
  if (format == "text") return method_note(table) + "\n" + format_aligned(result);
  if (format == "md") return method_note(table) + "\n" + format_markdown(result);
  if (format == "csv") return format_csv(result);
  if (format == "latex") return format_latex(result, method_note(table));
  throw ConfigError(fmt::format("compare: unknown format '{}' (text, md, csv, latex, json)", format));
}

}  // namespace moelab
