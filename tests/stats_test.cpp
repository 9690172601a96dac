// The paired-comparison statistics (harness/report/stats.h) against SciPy 1.10, computed at test
// time by tests/reference/stats_reference.py under /usr/bin/python3, plus cases worked by hand.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/subprocess.h"
#include "harness/report/stats.h"
#include "scipy_reference.h"

using namespace moelab;
using namespace moelab::testing;
using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kClosedForm = 1e-9;  // relative tolerance of closed forms
constexpr double kSolved = 1e-6;      // relative tolerance of root-found values (MDE)
// SciPy 1.10's own t intervals: its t.ppf (cdflib) is good to a few 1e-9 relative only; the
// script's intervals use a polished quantile and are checked at kClosedForm.
constexpr double kScipyQuantile = 1e-8;

// An interval against the script's (a polished t quantile, at kClosedForm) and SciPy's own.
void check_interval(double low, double high, const json& r) {
  check_close(low, r["ci_low"], kClosedForm);
  check_close(high, r["ci_high"], kClosedForm);
  check_close(low, r["scipy_ci_low"], kScipyQuantile);
  check_close(high, r["scipy_ci_high"], kScipyQuantile);
}

std::vector<double> normal_sample(size_t n, double mean, double sd, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::normal_distribution<double> draw(mean, sd);
  std::vector<double> values(n);
  for (double& v : values) v = draw(generator);
  return values;
}

}  // namespace

TEST_CASE("the paired t test matches scipy.stats.ttest_rel and its interval", "[stats]") {
  struct Case {
    std::vector<double> treatment, baseline;
    double confidence;
  };
  std::vector<Case> cases = {
      {{1, 2, 3, 5}, {0, 2, 1, 1}, 0.95},  // by hand: d = {1, 0, 2, 4}, mean 1.75, s² = 8.75/3
      {normal_sample(2, 1.0, 1.0, 1), normal_sample(2, 0.0, 1.0, 2), 0.95},
      {normal_sample(5, 0.3, 1.0, 3), normal_sample(5, 0.0, 1.0, 4), 0.90},
      {normal_sample(30, 0.2, 0.5, 5), normal_sample(30, 0.0, 0.5, 6), 0.99},
  };
  json requests = json::array();
  for (const Case& c : cases) {
    requests.push_back({{"op", "paired_t"}, {"treatment", c.treatment}, {"baseline", c.baseline},
                        {"confidence", c.confidence}});
  }
  const json reference = scipy_reference(requests);
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ", n = " << cases[i].treatment.size());
    const PairedTest test =
        paired_t_test(cases[i].treatment, cases[i].baseline, cases[i].confidence);
    const json& r = reference[i];
    CHECK(test.n == static_cast<int64_t>(cases[i].treatment.size()));
    check_close(test.mean_diff, r["mean_diff"], kClosedForm);
    check_close(test.sd, r["sd"], kClosedForm);
    check_close(test.t, r["t"], kClosedForm);
    check_close(test.df, r["df"], kClosedForm);
    check_close(test.p, r["p"], kClosedForm);
    check_interval(test.ci_low, test.ci_high, r);
  }
  CHECK(paired_t_test({1, 2, 3, 5}, {0, 2, 1, 1}).mean_diff == 1.75);
}

TEST_CASE("the paired t test is degenerate when every difference is the same", "[stats]") {
  // 0.1 three times: a computed mean would leave a spread of ~1e-17 and a huge t.
  const PairedTest same = paired_t_test({0.1, 0.1, 0.1}, {0.0, 0.0, 0.0});
  CHECK(same.sd == 0.0);
  CHECK(same.p == 0.0);
  CHECK(same.t == std::numeric_limits<double>::infinity());
  CHECK(same.ci_low == 0.1);
  CHECK(same.ci_high == 0.1);
  const PairedTest none = paired_t_test({4, 5}, {4, 5});
  CHECK(none.p == 1.0);
  CHECK(none.t == 0.0);
  CHECK((none.ci_low == 0.0 && none.ci_high == 0.0));
  CHECK(none.df == 1.0);
}

TEST_CASE("the paired t test rejects unequal lengths, one pair and non-finite values", "[stats]") {
  CHECK_THROWS_AS(paired_t_test({1, 2, 3}, {1, 2, 3, 4}), Error);
  CHECK_THROWS_WITH(paired_t_test({1, 2, 3}, {1, 2, 3, 4}),
                    Catch::Contains("3 treatment values but 4 baseline values"));
  CHECK_THROWS_WITH(paired_t_test({1}, {2}), Catch::Contains("at least 2 differences, got 1"));
  CHECK_THROWS_WITH(paired_t_test({1, kNaN}, {2, 3}), Catch::Contains("treatment[1]"));
  CHECK_THROWS_WITH(paired_t_test({1, 2}, {2, 3}, 1.0), Catch::Contains("confidence"));
}

TEST_CASE("the Wilcoxon signed-rank p matches scipy.stats.wilcoxon", "[stats]") {
  struct Case {
    std::string what;
    std::vector<double> d;
    // What SciPy is asked: the method SciPy 1.10's "auto" (scipy.stats.wilcoxon(d)) takes for
    // these differences, named, so that the reference is the same under later SciPy versions,
    // whose "auto" rule changed (Debian 13's, in check_libtorch2.sh).
    std::string method;
  };
  std::vector<Case> cases = {
      {"exact, n = 6", {0.4, -1.3, 2.2, 0.9, 3.1, 1.7}, "exact"},
      {"exact, n = 10", normal_sample(10, 0.5, 1.0, 11), "exact"},
      {"exact, n = 50 (the largest exact n)", normal_sample(50, 0.2, 1.0, 12), "exact"},
      {"normal, n = 51", normal_sample(51, 0.2, 1.0, 13), "approx"},
      {"normal, n = 60", normal_sample(60, 0.3, 1.0, 14), "approx"},
      {"zeros: dropped, then normal", {0, 1.5, -0.5, 2.5, 0, 3.5, 4.5, -5.5, 6.5, 7.5}, "approx"},
      {"zeros and ties, n = 60", {}, "approx"},
      // Ties without zeros at n <= 50: SciPy 1.10's auto reads its exact table at R+ rounded
      // down (R+ = 28.5 here); the tie-corrected normal approximation is what is implemented.
      {"ties, n = 8: normal with tie correction", {1, -2, 2, 3, 3, 3, 4, -5}, "approx"},
  };
  for (int i = 0; i < 60; ++i) cases[6].d.push_back(static_cast<double>(i % 7 - 2));  // 0 to 4
  json requests = json::array();
  for (const Case& c : cases) {
    requests.push_back({{"op", "wilcoxon"}, {"d", c.d}, {"method", c.method}});
  }
  const json reference = scipy_reference(requests);
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO(cases[i].what);
    check_close(wilcoxon_signed_rank_p(cases[i].d), number(reference[i]), kClosedForm);
  }
}

TEST_CASE("the Wilcoxon signed-rank p, worked by hand", "[stats]") {
  // All 6 signs alike: 2 of the 2^6 sign patterns are as extreme, p = 2/64.
  CHECK(wilcoxon_signed_rank_p({1, 2, 3, 4, 5, 6}) == 0.03125);
  CHECK(wilcoxon_signed_rank_p({-1, -2, -3, -4, -5, -6}) == 0.03125);
  // n = 5 cannot go below 2/32 = 0.0625 however large the effect.
  CHECK(wilcoxon_signed_rank_p({10, 20, 30, 40, 50}) == 0.0625);
  // n = 6, R+ = 20 (ranks 2..6), R- = 1: P(R+ >= 20) = P(R- <= 1) = 2/64, p = 4/64.
  CHECK(wilcoxon_signed_rank_p({-1, 2, 3, 4, 5, 6}) == 0.0625);
  CHECK(std::isnan(wilcoxon_signed_rank_p({0, 0, 0})));
  CHECK(std::isnan(wilcoxon_signed_rank_p({})));
  CHECK(wilcoxon_signed_rank_p({3}) == 1.0);
  CHECK_THROWS_WITH(wilcoxon_signed_rank_p({1, std::numeric_limits<double>::infinity()}),
                    Catch::Contains("differences[1]"));
}

TEST_CASE("Holm's adjustment matches the statsmodels arithmetic, NaN passed through", "[stats]") {
  const std::vector<double> p = {0.01, kNaN, 0.04, 0.03, 0.04, 0.5, kNaN, 0.002, 0.0, 1.0};
  const json reference = scipy_reference(json::array({{{"op", "holm"}, {"p", p}}}));
  const std::vector<double> adjusted = holm_adjust(p);
  REQUIRE(adjusted.size() == p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    INFO("p[" << i << "] = " << p[i]);
    const double expected = number(reference[0][i]);
    if (std::isnan(expected)) {
      CHECK(std::isnan(adjusted[i]));
    } else {
      check_close(adjusted[i], expected, kClosedForm);
    }
  }
  // By hand: sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.06.
  const std::vector<double> small = holm_adjust({0.01, 0.04, 0.03});
  CHECK(small[0] == Approx(0.03).epsilon(kClosedForm));
  CHECK(small[1] == Approx(0.06).epsilon(kClosedForm));
  CHECK(small[2] == Approx(0.06).epsilon(kClosedForm));
  // NaN does not count in m: the same as the two real p-values alone; capped at 1.
  const std::vector<double> capped = holm_adjust({0.6, kNaN, 0.5});
  CHECK(capped[0] == 1.0);
  CHECK(std::isnan(capped[1]));
  CHECK(capped[2] == 1.0);
  CHECK(holm_adjust({kNaN, 0.02})[1] == 0.02);
  CHECK(holm_adjust({}).empty());
  CHECK_THROWS_WITH(holm_adjust({0.1, 1.5}), Catch::Contains("p[1] = 1.5"));
  CHECK_THROWS_AS(holm_adjust({-0.1}), Error);
}

TEST_CASE("TOST equivalence of paired differences matches two one-sided t tests", "[stats]") {
  const std::vector<double> close = normal_sample(20, 0.02, 0.1, 21);   // inside ±0.15
  const std::vector<double> far = normal_sample(8, 0.12, 0.2, 22);      // not shown inside ±0.1
  const json reference = scipy_reference(json::array({
      {{"op", "tost"}, {"d", close}, {"margin", 0.15}, {"alpha", 0.05}},
      {{"op", "tost"}, {"d", far}, {"margin", 0.1}, {"alpha", 0.05}},
  }));
  const EquivalenceTest equivalent = tost_paired(close, 0.15);
  const EquivalenceTest not_shown = tost_paired(far, 0.1);
  for (const auto& [test, r] :
       {std::pair{equivalent, reference[0]}, std::pair{not_shown, reference[1]}}) {
    check_close(test.p_lower, r["p_lower"], kClosedForm);
    check_close(test.p_upper, r["p_upper"], kClosedForm);
    check_close(test.p, r["p"], kClosedForm);
    check_interval(test.ci_low, test.ci_high, r);
    CHECK(test.equivalent == (number(r["p"]) < 0.05));
    CHECK(test.ci_inside == test.equivalent);  // the two readings of one test
  }
  CHECK(equivalent.equivalent);
  CHECK(!not_shown.equivalent);
  CHECK(equivalent.n == 20);
  CHECK(equivalent.alpha == 0.05);
  // Identical differences: each one-sided null is rejected outright when false at that value.
  const EquivalenceTest point = tost_paired({0.05, 0.05, 0.05}, 0.1);
  CHECK((point.p == 0.0 && point.equivalent && point.ci_inside));
  const EquivalenceTest outside = tost_paired({0.2, 0.2}, 0.1);
  CHECK((outside.p_lower == 0.0 && outside.p_upper == 1.0 && !outside.equivalent));
  CHECK_THROWS_WITH(tost_paired({0.1, 0.2}, 0.0), Catch::Contains("margin"));
  CHECK_THROWS_WITH(tost_paired({0.1, 0.2}, 0.1, 0.5), Catch::Contains("alpha"));
  CHECK_THROWS_WITH(tost_paired({0.1}, 0.1), Catch::Contains("got 1"));
}

TEST_CASE("the minimum detectable effect solves the noncentral t power exactly", "[stats]") {
  json requests = json::array();
  const std::vector<int64_t> sizes = {3, 5, 10};
  for (int64_t n : sizes) {
    requests.push_back({{"op", "mde"}, {"n", n}, {"sd", 1.3}, {"alpha", 0.05}, {"power", 0.8}});
  }
  requests.push_back({{"op", "mde"}, {"n", 10}, {"sd", 0.5}, {"alpha", 0.01}, {"power", 0.9}});
  // Low power: the lower tail P(T' < -c) still counts.
  requests.push_back({{"op", "mde"}, {"n", 3}, {"sd", 1.0}, {"alpha", 0.2}, {"power", 0.3}});
  requests.push_back({{"op", "mde_two_sample"}, {"n_a", 5}, {"n_b", 8}, {"sd_a", 1.0},
                      {"sd_b", 2.0}, {"alpha", 0.05}, {"power", 0.8}});
  requests.push_back({{"op", "mde_two_sample"}, {"n_a", 3}, {"n_b", 3}, {"sd_a", 0.7},
                      {"sd_b", 0.7}, {"alpha", 0.05}, {"power", 0.8}});
  const json reference = scipy_reference(requests);
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("n = " << sizes[i]);
    check_close(minimum_detectable_effect(sizes[i], 1.3), reference[i], kSolved);
  }
  check_close(minimum_detectable_effect(10, 0.5, 0.01, 0.9), reference[3], kSolved);
  check_close(minimum_detectable_effect(3, 1.0, 0.2, 0.3), reference[4], kSolved);
  check_close(minimum_detectable_effect_two_sample(5, 8, 1.0, 2.0), reference[5], kSolved);
  check_close(minimum_detectable_effect_two_sample(3, 3, 0.7, 0.7), reference[6], kSolved);
  // Large n tends to the normal approximation (z_0.975 + z_0.8) sd / √n.
  CHECK(minimum_detectable_effect(10000, 1.0) ==
        Approx((1.959963984540054 + 0.8416212335729143) / 100.0).epsilon(1e-3));
  CHECK_THROWS_WITH(minimum_detectable_effect(1, 1.0), Catch::Contains("n >= 2"));
  CHECK_THROWS_WITH(minimum_detectable_effect(5, 1.0, 0.05, 0.04), Catch::Contains("exceed alpha"));
  CHECK_THROWS_WITH(minimum_detectable_effect_two_sample(5, 5, 0.0, 0.0),
                    Catch::Contains("not both 0"));
}

TEST_CASE("Welch's test reports the mean difference and its interval", "[stats]") {
  const std::vector<double> a = normal_sample(7, 1.0, 0.5, 31), b = normal_sample(11, 0.6, 1.5, 32);
  const json reference = scipy_reference(json::array({
      {{"op", "welch"}, {"a", a}, {"b", b}, {"confidence", 0.95}},
      {{"op", "welch"}, {"a", a}, {"b", b}, {"confidence", 0.8}},
  }));
  const WelchTest test = welch_test(a, b), narrow = welch_test(a, b, 0.8);
  check_close(test.t, reference[0]["t"], kClosedForm);
  check_close(test.df, reference[0]["df"], kClosedForm);
  check_close(test.p, reference[0]["p"], kClosedForm);
  check_close(test.mean_diff, reference[0]["mean_diff"], kClosedForm);
  check_close(test.ci_low, reference[0]["ci_low"], kClosedForm);
  check_close(test.ci_high, reference[0]["ci_high"], kClosedForm);
  check_close(narrow.ci_low, reference[1]["ci_low"], kClosedForm);
  check_close(narrow.ci_high, reference[1]["ci_high"], kClosedForm);
  // n = 2 each, equal variances: df = 2, half-width t_0.975,2 · √2 = 4.302653 · √2.
  const WelchTest small = welch_test({0, 2}, {3, 5});
  CHECK(small.mean_diff == -3.0);
  CHECK(small.ci_high - small.mean_diff ==
        Approx(4.302652729749464 * std::sqrt(2.0)).epsilon(1e-12));
  const WelchTest single = welch_test({1}, {2, 3});
  CHECK(single.mean_diff == -1.5);
  CHECK((std::isnan(single.p) && std::isnan(single.ci_low) && std::isnan(single.ci_high)));
}
