// Small statistics for reports over seeds: mean, sample standard deviation, Student-t
// confidence intervals and Welch's unequal-variance t-test (two-sided); the t distribution
// is Boost.Math's.
#pragma once

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

struct WelchTest {
  double t = 0.0, df = 0.0, p = 1.0;  // p: two-sided; NaN when undefined (n < 2 or no spread)
};
WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace moelab
