// Small statistics for reports over seeds: summaries (mean, sample standard deviation,
// Student-t intervals), Welch's unequal-variance t-test, and the paired comparisons of a
// treatment against a baseline measured on the same seeds: the paired t test, the Wilcoxon
// signed-rank test, Holm's step-down adjustment over several comparisons, the TOST equivalence
// test and the minimum detectable effect. The t, noncentral t and normal distributions are
// Boost.Math's (the normal as std::erfc). Every function is pure; input it cannot use (sizes,
// non-finite values, probabilities outside their range) throws moelab::Error naming the
// function and the value. The p-values follow SciPy 1.10 (scipy.stats.ttest_rel, ttest_ind
// with equal_var=False, wilcoxon), checked against it by tests/stats_test.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace moelab {

struct Summary {
  int64_t n = 0;
  double mean = 0.0, std = 0.0;  // std: sample (n - 1); NaN when n < 2
  double ci_half = 0.0;          // half-width of the 95% t interval; NaN when n < 2
};
Summary summarise(const std::vector<double>& values);

// P(T <= t) for Student's t with df degrees of freedom (df > 0, fractional allowed).
double student_t_cdf(double t, double df);
// The q-quantile of Student's t (0 < q < 1).
double student_t_quantile(double q, double df);

// Welch's test of mean(a) = mean(b): t = (mean_a - mean_b) / se, se² = s_a²/n_a + s_b²/n_b,
// on the Welch–Satterthwaite df = se⁴ / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1)), and the
// `confidence` interval of the difference, mean_diff ± t_{(1+confidence)/2, df} · se.
struct WelchTest {
  double t = 0.0, df = 0.0, p = 1.0;  // p: two-sided; NaN when undefined (n < 2 or no spread)
  double mean_diff = 0.0;             // mean(a) - mean(b); NaN when a or b is empty
  double ci_low = 0.0, ci_high = 0.0;  // NaN when p is
};
WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b,
                     double confidence = 0.95);

// The paired t test on d_i = treatment_i - baseline_i (scipy.stats.ttest_rel): with d̄ the mean,
// s the sample standard deviation of d and se = s/√n, t = d̄/se on df = n - 1, two-sided
// p = 2 P(T_df > |t|), interval d̄ ± t_{(1+confidence)/2, df} · se.
struct PairedTest {
  int64_t n = 0;
  double mean_diff = 0.0, sd = 0.0;    // d̄ and s
  double ci_low = 0.0, ci_high = 0.0;  // the `confidence` interval of the mean difference
  double t = 0.0, df = 0.0, p = 1.0;   // p: two-sided
};
// Both vectors of one length n >= 2, finite; 0 < confidence < 1. When every difference is the
// same (s = 0) the test is degenerate: p = 0 and t = ±inf when that difference is nonzero,
// p = 1 and t = 0 when it is zero, and the interval is the single point d̄.
PairedTest paired_t_test(const std::vector<double>& treatment, const std::vector<double>& baseline,
                         double confidence = 0.95);

// The two-sided p-value of the Wilcoxon signed-rank test that the differences are symmetric
// about zero (Wilcoxon 1945), as scipy.stats.wilcoxon(d) computes it in SciPy 1.10 (zero_method
// "wilcox", no continuity correction, method "auto"), with one exception for ties:
// - zero differences are dropped; the n nonzero |d| are ranked, tied values getting their
//   average rank; R+ (R-) is the rank sum of the positive (negative) differences;
// - with no zero and no tie among the differences and n <= 50, the exact null distribution of R+
//   (every sign pattern equally likely): p = min(1, 2 min(P(R+ <= r), P(R+ >= r)));
// - otherwise the normal approximation with T = min(R+, R-), mean n(n+1)/4, variance
//   (n(n+1)(2n+1) - ½ Σ_ties t(t²-1)) / 24 over the groups of t tied |d|, p = 2 (1 - Φ(|z|)).
// SciPy 1.10 switches to the normal approximation for zeros, as here, but not for ties: with ties
// and no zero (n <= 50) it reads its exact table at R+ rounded down, which no longer is the null
// distribution; here ties take the tie-corrected normal approximation (R's wilcox.test rule),
// what scipy.stats.wilcoxon(d, method="approx") returns.
// NaN when no difference is nonzero. The exact two-sided p is at least 2/2^n (all signs alike),
// so p < 0.05 needs n >= 6 nonzero differences.
double wilcoxon_signed_rank_p(const std::vector<double>& differences);

// Holm's step-down adjustment (Holm 1979; statsmodels multipletests(method="holm")): with the m
// p-values sorted, p_(1) <= ... <= p_(m), adjusted p_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)),
// returned in the input's order. NaN entries (a comparison that has no p-value) stay NaN and do
// not count in m. Every other entry must lie in [0, 1].
std::vector<double> holm_adjust(const std::vector<double>& p);

// Two one-sided tests (Schuirmann 1987) that the mean of paired differences lies within
// (-margin, +margin): with d̄, se = s/√n and df = n - 1 as in the paired t test,
// p_lower = P(T_df >= (d̄ + margin)/se) for H0: mean <= -margin,
// p_upper = P(T_df <= (d̄ - margin)/se) for H0: mean >= +margin; p = max of the two, and the
// difference is shown equivalent when p < alpha — the same as the 1 - 2·alpha interval
// d̄ ± t_{1-alpha, df} · se lying inside (-margin, margin).
struct EquivalenceTest {
  int64_t n = 0;
  double mean_diff = 0.0, margin = 0.0, alpha = 0.05;
  double p_lower = 1.0, p_upper = 1.0, p = 1.0;
  bool equivalent = false;             // p < alpha
  double ci_low = 0.0, ci_high = 0.0;  // the 1 - 2·alpha interval of the mean difference
  bool ci_inside = false;              // -margin < ci_low and ci_high < margin
};
// n >= 2 finite differences, margin > 0, 0 < alpha < 0.5. When every difference is the same
// (s = 0) each one-sided p is 0 if its null is false at that value and 1 otherwise, and the
// interval is the single point d̄.
EquivalenceTest tost_paired(const std::vector<double>& differences, double margin,
                            double alpha = 0.05);

// The minimum detectable effect of a two-sided level-alpha one-sample (or paired) t test on n
// observations of standard deviation sd: the smallest |mean| δ that it detects with the given
// power. With df = n - 1, c = t_{1-alpha/2, df} and T' noncentral t on df with noncentrality
// λ = δ√n/sd, the power P(T' > c) + P(T' < -c) rises from alpha at λ = 0 towards 1; δ solves
// power = `power` exactly (TOMS 748 root finding on λ, Boost.Math non_central_t), not the normal
// approximation (z_{1-alpha/2} + z_power)·sd/√n it tends to as n grows.
// n >= 2, sd > 0, 0 < alpha < power < 1.
double minimum_detectable_effect(int64_t n, double sd, double alpha = 0.05, double power = 0.8);
// The same for Welch's two-sample test: λ = δ/se with se² = sd_a²/n_a + sd_b²/n_b, on the
// Welch–Satterthwaite df of those standard deviations. n_a, n_b >= 2, sd_a, sd_b >= 0 and not
// both 0.
double minimum_detectable_effect_two_sample(int64_t n_a, int64_t n_b, double sd_a, double sd_b,
                                            double alpha = 0.05, double power = 0.8);

}  // namespace moelab
