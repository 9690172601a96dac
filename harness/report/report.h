// `moelab report`: a metric per group of runs (router, or any config key) over seeds — mean,
// standard deviation, n, 95% confidence interval and Welch's t-test against a baseline group —
// as aligned text, Markdown, CSV, LaTeX, JSON or a self-contained HTML page.
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct ReportRequest {
  std::string sweep;                     // "" = every done run of the database
  std::vector<std::string> group_by = {"router.name"};  // config keys (params); "router" = router.name
  std::string metric;                    // a summary name; "" = the runs' main test metric
  std::string baseline;                  // group label to test against; "" = none
};

// A --group-by key as the config key it stands for: "router" -> "router.name", "task" ->
// "task.name", any other as it is.
std::string param_key(const std::string& key);

// "a,b,c" -> {"a", "b", "c"} (the --group-by option).
std::vector<std::string> split_keys(const std::string& keys);

// Done runs (of `sweep`, or of the whole database when it is "") grouped by the values of
// config keys, groups in order of their first run; "router" stands for router.name and
// "task" for task.name; a run without a key gets "?". Shared by reports and plots.
struct RunGroup {
  std::string label;  // the key values joined by ", "
  std::vector<int64_t> run_ids;
};
std::vector<RunGroup> group_done_runs(Store& store, const std::string& sweep,
                                      const std::vector<std::string>& keys);

struct ReportGroup {
  std::string label;  // the group's key values joined by ", "
  std::vector<double> values;
};

// The done runs' metric values per group, in order of first run id (an empty request.metric
// is first set to the runs' main test metric). Throws Error naming the metric when no run has it.
std::vector<ReportGroup> collect_groups(Store& store, ReportRequest& request);

// One row per group: group, n, mean, std, ci95, delta (vs baseline), p (Welch).
QueryResult report_table(const std::vector<ReportGroup>& groups, const ReportRequest& request);

// format: text | md | csv | latex | json | html.
std::string render_report(const QueryResult& table, const ReportRequest& request,
                          const std::string& format);

}  // namespace moelab
