// Corruption-robustness metrics of Hendrycks & Dietterich (2019), with a baseline run in the
// AlexNet role: for corruption c, CE_c = sum_s E_{s,c} / sum_s E^base_{s,c};
// relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean);
// mCE and relative mCE are their means over the corruptions. Also read back from a results
// database (`moelab robustness`).
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

// A table: one row per run of `runs` with mean error, mCE and relative mCE against
// `baseline_run` on `suite`.
QueryResult robustness_table(Store& store, const std::string& suite, int64_t baseline_run,
                             const std::vector<int64_t>& runs);

}  // namespace moelab
