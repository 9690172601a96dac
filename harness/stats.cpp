// Statistics for reports.
#include "harness/stats.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace moelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Continued fraction of the incomplete beta function (modified Lentz).
double beta_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300, kEpsilon = 1e-15;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 500; ++m) {
    const double m2 = 2.0 * m;
    double numerator = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    for (int half = 0; half < 2; ++half) {
      d = 1.0 + numerator * d;
      if (std::fabs(d) < kTiny) d = kTiny;
      c = 1.0 + numerator / c;
      if (std::fabs(c) < kTiny) c = kTiny;
      d = 1.0 / d;
      const double delta = c * d;
      h *= delta;
      if (half == 1 && std::fabs(delta - 1.0) < kEpsilon) return h;
      numerator = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    }
  }
  return h;
}

}  // namespace

Summary summarise(const std::vector<double>& values) {
  Summary s;
  s.n = static_cast<int64_t>(values.size());
  if (s.n == 0) return s;
  for (double v : values) s.mean += v;
  s.mean /= static_cast<double>(s.n);
  if (s.n < 2) {
    s.std = kNaN;
    s.ci_half = kNaN;
    return s;
  }
  double squares = 0.0;
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(squares / static_cast<double>(s.n - 1));
  s.ci_half = student_t_quantile(0.975, static_cast<double>(s.n - 1)) * s.std /
              std::sqrt(static_cast<double>(s.n));
  return s;
}

double incomplete_beta(double x, double a, double b) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                           a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * beta_fraction(x, a, b) / a;
  return 1.0 - std::exp(log_front) * beta_fraction(1.0 - x, b, a) / b;
}

double student_t_cdf(double t, double df) {
  const double tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
  return t >= 0 ? 1.0 - tail : tail;
}

double student_t_quantile(double q, double df) {
  double low = -1e3, high = 1e3;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (low + high);
    (student_t_cdf(mid, df) < q ? low : high) = mid;
  }
  return 0.5 * (low + high);
}

WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b) {
  const Summary sa = summarise(a), sb = summarise(b);
  WelchTest test;
  if (sa.n < 2 || sb.n < 2) return {kNaN, kNaN, kNaN};
  const double va = sa.std * sa.std / static_cast<double>(sa.n);
  const double vb = sb.std * sb.std / static_cast<double>(sb.n);
  if (va + vb == 0.0) return {kNaN, kNaN, kNaN};
  test.t = (sa.mean - sb.mean) / std::sqrt(va + vb);
  test.df = (va + vb) * (va + vb) /
            (va * va / static_cast<double>(sa.n - 1) + vb * vb / static_cast<double>(sb.n - 1));
  test.p = 2.0 * (1.0 - student_t_cdf(std::fabs(test.t), test.df));
  return test;
}

}  // namespace moelab
