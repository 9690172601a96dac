// Statistics for reports; Student's t distribution from Boost.Math.
#include "harness/report/stats.h"

#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>

namespace moelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

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

double student_t_cdf(double t, double df) {
  return boost::math::cdf(boost::math::students_t_distribution<double>(df), t);
}

double student_t_quantile(double q, double df) {
  return boost::math::quantile(boost::math::students_t_distribution<double>(df), q);
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
  // Two-sided: twice the upper tail, taken as a complement (exact for small p).
  const boost::math::students_t_distribution<double> t_distribution(test.df);
  test.p = 2.0 * boost::math::cdf(boost::math::complement(t_distribution, std::fabs(test.t)));
  return test;
}

}  // namespace moelab
