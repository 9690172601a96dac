// Statistics for reports: summaries, Welch's test and the paired comparisons (paired t,
// Wilcoxon signed-rank, Holm, TOST, minimum detectable effect); the t and noncentral t
// distributions and the root finder are Boost.Math's.
#include "harness/report/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/math/distributions/non_central_t.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/tools/toms748_solve.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <numeric>
#include <tuple>
#include <utility>

#include "harness/core/error.h"

namespace moelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

void require_finite(const std::vector<double>& values, const char* function, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(fmt::format("{}: {}[{}] = {} is not a finite number", function, what, i,
                              values[i]));
    }
  }
}

// 0 < value < 1, for confidence levels, alpha and power.
void require_open_unit(double value, const char* function, const char* name) {
  if (!(value > 0.0 && value < 1.0)) {
    throw Error(
        fmt::format("{}: {} = {} must lie strictly between 0 and 1", function, name, value));
  }
}

// P(T_df > t), as a complement (exact for small tails).
double t_upper_tail(double t, double df) {
  const boost::math::students_t_distribution<double> t_distribution(df);
  return boost::math::cdf(boost::math::complement(t_distribution, t));
}

double two_sided_t_p(double t, double df) { return 2.0 * t_upper_tail(std::fabs(t), df); }

// The t interval estimate ± t_{q, df} · se, as {low, high}.
std::pair<double, double> t_interval(double estimate, double se, double df, double q) {
  const double half = student_t_quantile(q, df) * se;
  return {estimate - half, estimate + half};
}

// Welch–Satterthwaite degrees of freedom of two variances of means va = s_a²/n_a, vb = s_b²/n_b.
double welch_df(double va, double vb, int64_t n_a, int64_t n_b) {
  return (va + vb) * (va + vb) /
         (va * va / static_cast<double>(n_a - 1) + vb * vb / static_cast<double>(n_b - 1));
}

// The sample mean, sample standard deviation and standard error of n >= 2 finite values.
struct MeanError {
  int64_t n = 0;
  double mean = 0.0, sd = 0.0, se = 0.0;
  bool constant = false;  // every value the same: sd = se = 0 exactly, mean = that value
};

MeanError mean_error(const std::vector<double>& values, const char* function) {
  if (values.size() < 2) {
    throw Error(fmt::format("{}: needs at least 2 differences, got {}", function, values.size()));
  }
  require_finite(values, function, "differences");
  MeanError m;
  m.n = static_cast<int64_t>(values.size());
  // Tested directly: a rounded mean would leave a spurious spread of ~1e-17 in identical values.
  m.constant = std::all_of(values.begin(), values.end(), [&](double v) { return v == values[0]; });
  if (m.constant) {
    m.mean = values[0];
    return m;
  }
  const Summary s = summarise(values);
  m.mean = s.mean;
  m.sd = s.std;
  m.se = s.std / std::sqrt(static_cast<double>(m.n));
  return m;
}

// The exact two-sided p of the signed-rank statistic R+ = r (an integer) over n nonzero
// differences without ties: the number of sign patterns with each rank sum counted exactly
// (at most 2^50 < 2^53 for n <= 50), p = min(1, 2 min(P(R+ <= r), P(R+ >= r))).
double wilcoxon_exact_p(int64_t n, int64_t r) {
  const int64_t total = n * (n + 1) / 2;
  std::vector<uint64_t> count(static_cast<size_t>(total + 1), 0);
  count[0] = 1;
  for (int64_t rank = 1; rank <= n; ++rank) {
    for (int64_t sum = rank * (rank + 1) / 2; sum >= rank; --sum) count[sum] += count[sum - rank];
  }
  const uint64_t at_most = std::accumulate(count.begin(), count.begin() + r + 1, uint64_t{0});
  const uint64_t at_least = std::accumulate(count.begin() + r, count.end(), uint64_t{0});
  // 2 · min / 2^n, exact: the count is an integer below 2^53.
  const auto tail = static_cast<double>(std::min(at_most, at_least));
  return std::min(1.0, std::ldexp(tail, 1 - static_cast<int>(n)));
}

// The noncentrality λ at which the two-sided level-alpha t test on df degrees of freedom has
// the given power, P(T' > c) + P(T' < -c) with c = t_{1-alpha/2, df}: increasing in λ >= 0 from
// alpha, bracketed by doubling and solved by TOMS 748 to about machine precision.
double noncentrality_for_power(double df, double alpha, double power) {
  const double critical = student_t_quantile(1.0 - alpha / 2.0, df);
  const auto shortfall = [&](double lambda) {
    const boost::math::non_central_t_distribution<double> t_prime(df, lambda);
    return boost::math::cdf(boost::math::complement(t_prime, critical)) +
           boost::math::cdf(t_prime, -critical) - power;
  };
  double high = 1.0;
  while (shortfall(high) < 0.0) {
    high *= 2.0;
    if (high > 1e6) {
      throw Error(fmt::format("minimum detectable effect: power {} at alpha {} on {} df needs a "
                              "noncentrality above 1e6", power, alpha, df));
    }
  }
  std::uintmax_t iterations = 200;
  const boost::math::tools::eps_tolerance<double> tolerance(std::numeric_limits<double>::digits - 4);
  const auto bracket = boost::math::tools::toms748_solve(shortfall, 0.0, high, alpha - power,
                                                         shortfall(high), tolerance, iterations);
  return (bracket.first + bracket.second) / 2.0;
}

void require_power(double alpha, double power, const char* function) {
  require_open_unit(alpha, function, "alpha");
  require_open_unit(power, function, "power");
  if (!(power > alpha)) {
    throw Error(fmt::format("{}: power = {} must exceed alpha = {} (the power at no effect)",
                            function, power, alpha));
  }
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

double student_t_cdf(double t, double df) {
  return boost::math::cdf(boost::math::students_t_distribution<double>(df), t);
}

double student_t_quantile(double q, double df) {
  return boost::math::quantile(boost::math::students_t_distribution<double>(df), q);
}

WelchTest welch_test(const std::vector<double>& a, const std::vector<double>& b,
                     double confidence) {
  require_open_unit(confidence, "welch_test", "confidence");
  const Summary sa = summarise(a), sb = summarise(b);
  WelchTest test{kNaN, kNaN, kNaN, kNaN, kNaN, kNaN};
  if (sa.n >= 1 && sb.n >= 1) test.mean_diff = sa.mean - sb.mean;
  if (sa.n < 2 || sb.n < 2) return test;
  const double va = sa.std * sa.std / static_cast<double>(sa.n);
  const double vb = sb.std * sb.std / static_cast<double>(sb.n);
  if (va + vb == 0.0) return test;
  const double se = std::sqrt(va + vb);
  test.t = test.mean_diff / se;
  test.df = welch_df(va, vb, sa.n, sb.n);
  test.p = two_sided_t_p(test.t, test.df);
  std::tie(test.ci_low, test.ci_high) =
      t_interval(test.mean_diff, se, test.df, (1.0 + confidence) / 2.0);
  return test;
}

PairedTest paired_t_test(const std::vector<double>& treatment, const std::vector<double>& baseline,
                         double confidence) {
  if (treatment.size() != baseline.size()) {
    throw Error(fmt::format("paired_t_test: {} treatment values but {} baseline values",
                            treatment.size(), baseline.size()));
  }
  require_open_unit(confidence, "paired_t_test", "confidence");
  require_finite(treatment, "paired_t_test", "treatment");
  require_finite(baseline, "paired_t_test", "baseline");
  std::vector<double> differences(treatment.size());
  std::transform(treatment.begin(), treatment.end(), baseline.begin(), differences.begin(),
                 std::minus<>());
  const MeanError m = mean_error(differences, "paired_t_test");
  PairedTest test;
  test.n = m.n;
  test.mean_diff = m.mean;
  test.sd = m.sd;
  test.df = static_cast<double>(m.n - 1);
  if (m.constant) {
    test.t = m.mean == 0.0 ? 0.0 : std::copysign(kInf, m.mean);
    test.p = m.mean == 0.0 ? 1.0 : 0.0;
    test.ci_low = test.ci_high = m.mean;
    return test;
  }
  test.t = m.mean / m.se;
  test.p = two_sided_t_p(test.t, test.df);
  std::tie(test.ci_low, test.ci_high) =
      t_interval(m.mean, m.se, test.df, (1.0 + confidence) / 2.0);
  return test;
}

double wilcoxon_signed_rank_p(const std::vector<double>& differences) {
  require_finite(differences, "wilcoxon_signed_rank_p", "differences");
  std::vector<double> nonzero;
  std::copy_if(differences.begin(), differences.end(), std::back_inserter(nonzero),
               [](double d) { return d != 0.0; });
  const bool had_zero = nonzero.size() < differences.size();
  const auto n = static_cast<int64_t>(nonzero.size());
  if (n == 0) return kNaN;
  std::sort(nonzero.begin(), nonzero.end(),
            [](double x, double y) { return std::fabs(x) < std::fabs(y); });
  // Average ranks over runs of equal |d| (1-based), the tie correction Σ t(t²-1) alongside.
  double r_plus = 0.0, r_minus = 0.0, tie_term = 0.0;
  for (int64_t start = 0, end = 0; start < n; start = end) {
    end = start + 1;
    while (end < n && std::fabs(nonzero[end]) == std::fabs(nonzero[start])) ++end;
    const double rank = static_cast<double>(start + 1 + end) / 2.0;
    for (int64_t i = start; i < end; ++i) (nonzero[i] > 0.0 ? r_plus : r_minus) += rank;
    const auto tied = static_cast<double>(end - start);
    tie_term += tied * (tied * tied - 1.0);
  }
  const auto count = static_cast<double>(n);
  if (!had_zero && tie_term == 0.0 && n <= 50) {
    return wilcoxon_exact_p(n, static_cast<int64_t>(r_plus));
  }
  const double mean = count * (count + 1.0) / 4.0;
  const double variance =
      (count * (count + 1.0) * (2.0 * count + 1.0) - 0.5 * tie_term) / 24.0;
  const double z = (std::min(r_plus, r_minus) - mean) / std::sqrt(variance);
  return std::erfc(std::fabs(z) / std::sqrt(2.0));  // 2 (1 - Φ(|z|))
}

std::vector<double> holm_adjust(const std::vector<double>& p) {
  std::vector<size_t> order;  // the indices of the non-NaN p-values, ascending by p
  for (size_t i = 0; i < p.size(); ++i) {
    if (std::isnan(p[i])) continue;
    if (!(p[i] >= 0.0 && p[i] <= 1.0)) {
      throw Error(fmt::format("holm_adjust: p[{}] = {} is not a probability in [0, 1]", i, p[i]));
    }
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] < p[y]; });
  std::vector<double> adjusted = p;  // NaN entries stay
  const double m = static_cast<double>(order.size());
  double running = 0.0;  // the step-down maximum keeps the adjusted values monotone
  for (size_t j = 0; j < order.size(); ++j) {
    running = std::max(running, (m - static_cast<double>(j)) * p[order[j]]);
    adjusted[order[j]] = std::min(1.0, running);
  }
  return adjusted;
}

EquivalenceTest tost_paired(const std::vector<double>& differences, double margin, double alpha) {
  if (!(margin > 0.0 && std::isfinite(margin))) {
    throw Error(fmt::format("tost_paired: the margin {} must be a positive number", margin));
  }
  require_open_unit(alpha, "tost_paired", "alpha");
  if (!(alpha < 0.5)) {
    throw Error(fmt::format(
        "tost_paired: alpha = {} must be below 0.5 (the interval is 1 - 2·alpha)", alpha));
  }
  const MeanError m = mean_error(differences, "tost_paired");
  EquivalenceTest test;
  test.n = m.n;
  test.mean_diff = m.mean;
  test.margin = margin;
  test.alpha = alpha;
  const double df = static_cast<double>(m.n - 1);
  if (m.constant) {
    test.p_lower = m.mean > -margin ? 0.0 : 1.0;
    test.p_upper = m.mean < margin ? 0.0 : 1.0;
    test.ci_low = test.ci_high = m.mean;
  } else {
    test.p_lower = t_upper_tail((m.mean + margin) / m.se, df);
    test.p_upper = student_t_cdf((m.mean - margin) / m.se, df);
    std::tie(test.ci_low, test.ci_high) = t_interval(m.mean, m.se, df, 1.0 - alpha);
  }
  test.p = std::max(test.p_lower, test.p_upper);
  test.equivalent = test.p < alpha;
  test.ci_inside = -margin < test.ci_low && test.ci_high < margin;
  return test;
}

double minimum_detectable_effect(int64_t n, double sd, double alpha, double power) {
  if (n < 2) throw Error(fmt::format("minimum_detectable_effect: needs n >= 2, got {}", n));
  if (!(sd > 0.0 && std::isfinite(sd))) {
    throw Error(fmt::format("minimum_detectable_effect: sd = {} must be a positive number", sd));
  }
  require_power(alpha, power, "minimum_detectable_effect");
  const double lambda = noncentrality_for_power(static_cast<double>(n - 1), alpha, power);
  return lambda * sd / std::sqrt(static_cast<double>(n));
}

double minimum_detectable_effect_two_sample(int64_t n_a, int64_t n_b, double sd_a, double sd_b,
                                            double alpha, double power) {
  const char* function = "minimum_detectable_effect_two_sample";
  if (n_a < 2 || n_b < 2) {
    throw Error(fmt::format("{}: needs n_a, n_b >= 2, got {} and {}", function, n_a, n_b));
  }
  if (!(sd_a >= 0.0 && sd_b >= 0.0 && std::isfinite(sd_a) && std::isfinite(sd_b) &&
        sd_a + sd_b > 0.0)) {
    throw Error(fmt::format("{}: sd_a = {}, sd_b = {} must be >= 0 and not both 0", function,
                            sd_a, sd_b));
  }
  require_power(alpha, power, function);
  const double va = sd_a * sd_a / static_cast<double>(n_a);
  const double vb = sd_b * sd_b / static_cast<double>(n_b);
  return noncentrality_for_power(welch_df(va, vb, n_a, n_b), alpha, power) * std::sqrt(va + vb);
}

}  // namespace moelab
