// Corruption-robustness metrics of Hendrycks & Dietterich (2019), with a baseline in the
// AlexNet role: for corruption c, CE_c = sum_s E_{s,c} / sum_s E^base_{s,c};
// relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean);
// mCE and relative mCE are their means over the corruptions. Read back from a results
// database per group of runs (`moelab robustness`), with robust accuracy under attack.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct CorruptionErrors {
  double clean_error = 0.0;
  std::map<std::string, std::vector<double>> errors;  // corruption -> error per severity
};

struct RobustnessScores {
  std::map<std::string, double> ce, relative_ce;
  double mean_error = 0.0;  // unnormalised mean over every corruption and severity
  double mce = 0.0, relative_mce = 0.0;
};

// Throws Error when the two runs do not cover the same corruptions and severities.
RobustnessScores robustness_scores(const CorruptionErrors& model, const CorruptionErrors& baseline);

// From a run's summaries: the clean test/METRIC and SUITE:NAME[:SEVERITY]/METRIC, METRIC the
// suite's declared metric, turned into errors (tasks/task_metrics.h).
CorruptionErrors corruption_errors(Store& store, int64_t run_id, const std::string& suite);

bool has_suite_results(Store& store, int64_t run_id, const std::string& suite);
// The suite the runs were scored on: the first declared suite (with severities when asked)
// any of them has results for; "" when none has.
std::string scored_suite(Store& store, const std::vector<int64_t>& runs, bool with_severities);

// A run's results under attack: the metric its attack splits report (its task's main metric)
// and its value per attack label ("pgd:eps255=5:...").
struct AttackResults {
  std::string metric;
  std::map<std::string, double> values;
};
AttackResults attack_results(Store& store, int64_t run_id);

// `moelab robustness`: done runs grouped by config keys (as `moelab report`), the baseline a
// group whose per-split errors, averaged over its seeds, play AlexNet's role.
struct RobustnessRequest {
  std::string sweep;                                    // "" = every done run
  std::vector<std::string> group_by = {"router.name"};  // config keys
  std::string suite;     // "" = the suite the runs were scored on (none: attacks only)
  std::string baseline;  // group label; "" = the first group
  std::string by;        // "" (summary) | corruption | severity
};

// Long format, one row per (group, measure): n, mean, std, ci95 over seeds, delta and Welch p
// against the baseline group. Measures: clean_error, mean_corruption_error, mCE, relative_mCE,
// with task.routing_replay clean_routes_error (the suite's mean error under the clean images'
// routes) and routing_flip (its mean flip), robust_accuracy[ATTACK] per attack; with by = corruption: error[NAME] (mean over
// severities) and CE[NAME]; with by = severity: error[s=S] (mean over corruptions).
// Fills in request.suite and request.baseline when empty. ConfigError when the runs have
// neither corruption nor attack results, or the baseline is not a group.
QueryResult robustness_report(Store& store, RobustnessRequest& request);

}  // namespace moelab
