// Random search in sweep files (harness/sweep/search.h): the same file gives the same trials,
// values stay in their ranges and follow their distributions, a trial's value of one key does
// not move when the space grows, sampled values are canonical, and errors name their line.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "harness/config/config.h"
#include "harness/sweep/sweep.h"
#include "routers/topk.h"
#include "test_util.h"
#include "tiny_sweep.h"

namespace moelab {
namespace {

// The plan of the tiny sweep "extends: base.yaml\n" + body, in `dir`.
SweepPlan plan_of(const testing::TempDir& dir, const std::string& body) {
  return expand_sweep(testing::write_sweep(dir, body));
}

// A random search of train.lr alone, log-uniform on [1e-4, 1e-2], with `trials` trials.
std::string lr_search(int trials) {
  return fmt::format(R"(search:
  method: random
  trials: {}
  space:
    train.lr: {{log_uniform: [1.0e-4, 1.0e-2]}}
)",
                     trials);
}

std::string error_of(const testing::TempDir& dir, const std::string& body) {
  try {
    plan_of(dir, body);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError for:\n" << body);
  return "";
}

}  // namespace

TEST_CASE("random search: seeded trials, in range, one more axis of the sweep", "[sweep][search]") {
  testing::TempDir dir;
  const std::string space = R"(search:
  method: random
  trials: 400
  space:
    train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
    train.beta1: {uniform: [0.8, 0.95]}
    train.warmup_steps: {int: [1, 3]}
    router.k: {choice: [1, 2]}
)";
  const SweepPlan plan = plan_of(dir, space);
  REQUIRE(plan.runs.size() == 400);
  CHECK(plan.runs[7].label().rfind("trial=7 train.lr=", 0) == 0);
  std::vector<double> log_lr, beta1;
  std::map<int64_t, int> warmups, ks;
  std::set<std::string> hashes;
  for (const auto& run : plan.runs) {
    const TrainConfig& train = run.config.train;
    CHECK(train.lr >= 1e-4);
    CHECK(train.lr <= 1e-2);
    CHECK(train.beta1 >= 0.8);
    CHECK(train.beta1 <= 0.95);
    log_lr.push_back(std::log10(train.lr));
    beta1.push_back(train.beta1);
    ++warmups[train.warmup_steps];
    ++ks[options_as<TopKOptions>(*run.config.router.options).k];
    hashes.insert(config_hash(run.config));
  }
  CHECK(hashes.size() == 400);  // distinct trials
  // The distributions (400 draws): log10 lr uniform on [-4, -2] has mean -3 and sd 2/sqrt(12);
  // the mean of 400 is within 4 standard errors (0.115) of it. beta1 likewise around 0.875.
  const auto mean = [](const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return sum / static_cast<double>(v.size());
  };
  CHECK(std::abs(mean(log_lr) - (-3.0)) < 4 * (2 / std::sqrt(12.0)) / 20);
  CHECK(std::abs(mean(beta1) - 0.875) < 4 * (0.15 / std::sqrt(12.0)) / 20);
  // Every integer and every choice is drawn, each about equally (binomial sd < 10 here).
  CHECK(warmups.size() == 3);
  for (const auto& [value, count] : warmups) CHECK(std::abs(count - 400.0 / 3) < 40);
  CHECK(ks.size() == 2);
  for (const auto& [value, count] : ks) CHECK(std::abs(count - 200.0) < 40);

  SECTION("the same file gives the same trials; another sampler seed other ones") {
    const SweepPlan again = plan_of(dir, space);
    for (size_t i = 0; i < plan.runs.size(); ++i) CHECK(config_hash(again.runs[i].config) == config_hash(plan.runs[i].config));
    const SweepPlan other = plan_of(dir, space + "  seed: 1\n");
    CHECK(other.runs[0].config.train.lr != plan.runs[0].config.train.lr);
  }
  SECTION("a trial's value of a key stays when the space grows or trials are added") {
    const SweepPlan fewer = plan_of(dir, lr_search(3));
    REQUIRE(fewer.runs.size() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(fewer.runs[i].config.train.lr == plan.runs[i].config.train.lr);
  }
  SECTION("crossed with the grid and the seeds") {
    const SweepPlan crossed = plan_of(dir, "grid:\n  router.name: [topk, loss_free]\n" + lr_search(3) + "seeds: 2\n");
    CHECK(crossed.runs.size() == 12);
    CHECK(crossed.runs[0].label().rfind("router.name=topk trial=0 train.lr=", 0) == 0);
  }
}

TEST_CASE("a sampled value is written canonically: the trial is the run of that value however "
          "it is spelled", "[sweep][search]") {
  testing::TempDir dir;
  const SweepPlan plan = plan_of(dir, lr_search(1));
  const double lr = plan.runs[0].config.train.lr;
  const RunConfig written = parse_run_config(canonical_yaml(plan.runs[0].config), "x",
                                             {fmt::format("train.lr={:.17g}", lr)});
  CHECK(config_hash(written) == config_hash(plan.runs[0].config));
}

TEST_CASE("the shipped search example plans its twelve trials, the same learning rates for both "
          "routers", "[sweep][search]") {
  const auto plan = testing::run_moelab("sweep plan " + std::string(MOELAB_SOURCE_DIR) +
                                        "/experiments/sweeps/search_lr.yaml");
  INFO(plan.output);
  CHECK(plan.exit_code == 0);
  CHECK_THAT(plan.output, Catch::Matchers::Contains("(12 rows)"));
  const SweepPlan expanded = expand_sweep(std::string(MOELAB_SOURCE_DIR) + "/experiments/sweeps/search_lr.yaml");
  REQUIRE(expanded.runs.size() == 12);
  // Trial t draws from (seed, key, t) only: both routers get the same six rates.
  for (size_t t = 0; t < 6; ++t) CHECK(expanded.runs[t].config.train.lr == expanded.runs[t + 6].config.train.lr);
}

TEST_CASE("search errors name the line and column", "[sweep][search]") {
  testing::TempDir dir;
  using Catch::Matchers::Contains;
  const std::string head = "search:\n  method: random\n  trials: 4\n  space:\n";
  // The file is "extends: base.yaml\n" + body: body line 1 is line 2.
  CHECK_THAT(error_of(dir, head + "    train.lr: {log_uniforn: [1, 2]}\n"),
             Contains("sweep.yaml:6:16") && Contains("unknown distribution 'log_uniforn'") &&
                 Contains("did you mean 'log_uniform'"));
  const std::string far = error_of(dir, head + "    train.lr: {normal: [1, 2]}\n");
  CHECK_THAT(far, Contains("unknown distribution 'normal'; uniform, log_uniform, int or choice"));
  CHECK(far.find("did you mean") == std::string::npos);  // nothing close: no empty suggestion
  CHECK_THAT(error_of(dir, head + "    train.lr: {log_uniform: [0, 0.1]}\n"),
             Contains("sweep.yaml:6:") && Contains("log_uniform needs low > 0"));
  CHECK_THAT(error_of(dir, head + "    train.lr: {uniform: [0.2, 0.1]}\n"),
             Contains("low 0.2 must be below high 0.1"));
  CHECK_THAT(error_of(dir, head + "    train.warmup_steps: {int: [1, 2.5]}\n"),
             Contains("must be a whole number, not '2.5'"));
  CHECK_THAT(error_of(dir, head + "    train.lrr: {uniform: [0.1, 0.2]}\n"),
             Contains("sweep.yaml:6:5: search.space: 'train.lrr' is not a config key") &&
                 Contains("did you mean 'train.lr'"));
  CHECK_THAT(error_of(dir, "search:\n  method: bayes\n  trials: 4\n  space: {train.lr: {uniform: [0.1, 0.2]}}\n"),
             Contains("sweep.yaml:3:11: search.method: 'bayes' is not a search method"));
  CHECK_THAT(error_of(dir, "search:\n  method: random\n  trails: 4\n"),
             Contains("sweep.yaml:4:3: unknown search key 'trails'") && Contains("did you mean 'trials'"));
  CHECK_THAT(error_of(dir, "grid:\n  train.lr: [0.1]\n" + head + "    train.lr: {uniform: [0.1, 0.2]}\n"),
             Contains("train.lr is swept by the grid or the zip too"));
  CHECK_THAT(error_of(dir, head + "    train.lr: {uniform: [0.001, 0.002]}\n  prune: {method: asha}\n"),
             Contains("sweep.yaml:7:10: search.prune: pruning (ASHA) is not implemented yet"));
  // A sampled value the config refuses is an invalid combination, with its trial.
  CHECK_THAT(error_of(dir, head + "    train.lr: {uniform: [-1, -0.5]}\n"),
             Contains("invalid combination") && Contains("trial=0 train.lr=-"));
}

}  // namespace moelab
