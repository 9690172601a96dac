// `moelab compare`: each group of runs against a baseline group on one metric (its final
// summary, or with at_flops its value at a training-FLOP budget), paired by seed
// where the runs allow it. Per group: the number of pairs, the mean paired difference (group −
// baseline) with its 95 % t interval, the paired t and Wilcoxon signed-rank p-values, the
// Holm–Bonferroni adjusted p over every comparison of the table, the minimum detectable effect
// at α = 0.05 and 80 % power, and, given a margin δ, the TOST equivalence test; Welch's
// unpaired test where runs have no partner, said so in the row. The verdict never reads "no
// difference" without the margin and power behind it (docs/methods.md#paired-comparisons).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct CompareRequest {
  std::string sweep;                                    // "" = every done run
  std::vector<std::string> group_by = {"router.name"};  // "router" = router.name
  std::string baseline;                                 // a group label (required)
  std::string metric;                                   // "" = the runs' main test metric
  std::vector<std::string> pair_by = {"seed"};          // runs with equal values pair up
  std::optional<double> margin;                         // δ > 0 for the equivalence test
  // Compute-matched: each run's metric at this many training FLOPs, read from its logged
  // curve (SPLIT/METRIC at the logged steps, linear in FLOPs between them) instead of its
  // final summary; runs that stopped short of it are left out and named.
  std::optional<double> at_flops;
  double alpha = 0.05;
  double power = 0.8;
};

// One group against the baseline.
struct Comparison {
  std::string group;
  bool paired = false;      // paired tests on n_pairs pairs; false: Welch on all runs
  int64_t n_pairs = 0;      // runs of the group with a baseline partner
  int64_t n_group = 0, n_baseline = 0;  // runs with the metric
  double mean_group = 0, mean_baseline = 0;
  double mean_diff = 0;     // group − baseline: mean of the pair differences, or of the means
  double ci_low = 0, ci_high = 0;  // 1 − alpha interval of mean_diff
  double p = 0;             // paired t (or Welch), two-sided
  double p_holm = 0;        // Holm–Bonferroni over the table's comparisons
  double p_wilcoxon = 0;    // signed-rank, two-sided; NaN unpaired or with no nonzero difference
  double mde = 0;           // minimum detectable |mean_diff| at alpha and power; NaN: no spread
  double p_equivalence = 0;  // TOST against ±margin; NaN without a margin
  bool equivalent = false;   // p_equivalence < alpha
  std::string verdict;       // "higher", "lower", "equivalent within ±δ", "inconclusive"
};

struct ComparisonTable {
  CompareRequest request;  // with the metric resolved
  std::optional<bool> higher_is_better;  // the metric's direction, where the task declares one
  std::vector<Comparison> rows;
  int64_t corrected_for = 0;  // comparisons in the Holm family
  std::vector<std::string> short_of_budget;  // with at_flops: "run 7 (topp): 1.2e12 FLOPs"
};

// Reads the done runs (of request.sweep) and compares every group with the baseline.
// ConfigError for an unknown baseline group, group key or metric, and for runs that pair on
// request.pair_by but differ in another config key outside the compared ones (naming both
// runs and the key), or for a group with two runs on one pair key.
ComparisonTable compare_groups(Store& store, CompareRequest request);

// format: text | md | csv | latex | json. JSON: a list of rows with group, n_pairs, mean_diff,
// ci_low, ci_high, p, p_holm, p_wilcoxon, mde, paired, and the rest of Comparison.
std::string render_comparison(const ComparisonTable& table, const std::string& format);

}  // namespace moelab
