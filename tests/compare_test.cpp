// `moelab compare` end to end: runs written to a results database, compared through the binary,
// every statistic checked against SciPy (tests/reference/stats_reference.py) applied to the
// same values, and the pairing rules (which runs pair, which may not) by hand.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#include "harness/store/store.h"
#include "comparison_runs.h"
#include "scipy_reference.h"
#include "test_util.h"

namespace moelab {
namespace {

using nlohmann::json;
using testing::check_close;
using testing::number;
using testing::scipy_reference;
using namespace testing::comparison_runs;

constexpr double kClosedForm = 1e-9;
constexpr double kSolved = 1e-6;

json compare_json(const std::string& db, const std::string& options) {
  const testing::TempDir out;
  const std::string file = out.path() + "/compare.json";
  const auto result =
      testing::run_moelab(fmt::format("compare {} --sweep s --baseline topk --format json -o {} {}",
                                      db, file, options));
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  return json::parse(testing::read_text(file));
}

const json& row_of(const json& rows, const std::string& group) {
  for (const auto& row : rows) {
    if (row["group"] == group) return row;
  }
  FAIL("no row for group " << group);
  return rows[0];
}

TEST_CASE("compare pairs runs by seed and matches SciPy on every statistic", "[compare]") {
  const testing::TempDir dir;
  const std::string db = standard_database(dir);
  const json rows = compare_json(db, "--margin 0.005");
  REQUIRE(rows.size() == 3);

  const auto ssr = plus(kBaseline, kSsrGain), noisy = plus(kBaseline, kNoisyGain);
  std::vector<double> ssr_d, noisy_d;
  for (size_t i = 0; i < kBaseline.size(); ++i) {
    ssr_d.push_back(ssr[i] - kBaseline[i]);
    noisy_d.push_back(noisy[i] - kBaseline[i]);
  }
  const json reference = scipy_reference(json::array({
      {{"op", "paired_t"}, {"treatment", ssr}, {"baseline", kBaseline}, {"confidence", 0.95}},
      {{"op", "paired_t"}, {"treatment", noisy}, {"baseline", kBaseline}, {"confidence", 0.95}},
      {{"op", "welch"}, {"a", kLonely}, {"b", kBaseline}, {"confidence", 0.95}},
      {{"op", "wilcoxon"}, {"d", ssr_d}, {"method", "exact"}},
      {{"op", "wilcoxon"}, {"d", noisy_d}, {"method", "exact"}},
      {{"op", "tost"}, {"d", noisy_d}, {"margin", 0.005}, {"alpha", 0.05}},
  }));
  const json& ssr_t = reference[0];
  const json& noisy_t = reference[1];
  const json& welch = reference[2];
  const json mde = scipy_reference(json::array({
      {{"op", "mde"}, {"n", 6}, {"sd", ssr_t["sd"]}, {"alpha", 0.05}, {"power", 0.8}},
      {{"op", "mde"}, {"n", 6}, {"sd", noisy_t["sd"]}, {"alpha", 0.05}, {"power", 0.8}},
      {{"op", "holm"}, {"p", {ssr_t["p"], noisy_t["p"], welch["p"]}}},
  }));

  const json& ssr_row = row_of(rows, "ssr");
  CHECK(ssr_row["paired"] == true);
  CHECK(ssr_row["n_pairs"] == 6);
  check_close(number(ssr_row["mean_diff"]), ssr_t["mean_diff"], kClosedForm);
  check_close(number(ssr_row["ci_low"]), ssr_t["ci_low"], kClosedForm);
  check_close(number(ssr_row["ci_high"]), ssr_t["ci_high"], kClosedForm);
  check_close(number(ssr_row["p"]), ssr_t["p"], kClosedForm);
  check_close(number(ssr_row["p_wilcoxon"]), reference[3], kClosedForm);
  check_close(number(ssr_row["mde"]), mde[0], kSolved);
  check_close(number(ssr_row["p_holm"]), mde[2][0], kClosedForm);
  CHECK(ssr_row["verdict"] == "higher");

  const json& noisy_row = row_of(rows, "noisy_topk");
  CHECK(noisy_row["paired"] == true);
  check_close(number(noisy_row["p"]), noisy_t["p"], kClosedForm);
  check_close(number(noisy_row["p_wilcoxon"]), reference[4], kClosedForm);
  check_close(number(noisy_row["mde"]), mde[1], kSolved);
  check_close(number(noisy_row["p_holm"]), mde[2][1], kClosedForm);
  check_close(number(noisy_row["p_equivalence"]), reference[5]["p"], kClosedForm);
  CHECK(noisy_row["verdict"] == "equivalent within ±0.005");

  // No partner on seeds 7..9: Welch's unpaired test on all runs, said so.
  const json& hash_row = row_of(rows, "hash");
  CHECK(hash_row["paired"] == false);
  CHECK(hash_row["n_pairs"] == 0);
  check_close(number(hash_row["p"]), welch["p"], kClosedForm);
  check_close(number(hash_row["ci_low"]), welch["ci_low"], kClosedForm);
  check_close(number(hash_row["p_holm"]), mde[2][2], kClosedForm);
  CHECK(hash_row["p_wilcoxon"].is_null());
  CHECK(hash_row["corrected_for"] == 3);

  // The same pairs unpaired would not show ssr's gain (seed-to-seed spread is larger): the
  // reason pairing exists.
  const json unpaired = scipy_reference(json::array(
      {{{"op", "welch"}, {"a", ssr}, {"b", kBaseline}, {"confidence", 0.95}}}));
  CHECK(number(unpaired[0]["p"]) > 0.05);
  CHECK(number(ssr_row["p"]) < 0.001);
}

TEST_CASE("compare's text names n, the interval, the correction, pairing and power",
          "[compare]") {
  const testing::TempDir dir;
  const std::string db = standard_database(dir);
  const auto result = testing::run_moelab("compare " + db + " --sweep s --baseline topk");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  for (const char* expected : {"test/accuracy (higher is better)", "Paired by seed",
                               "95% t interval", "Holm-Bonferroni over the 3 comparison(s)",
                               "80% power", "no (Welch)", "No equivalence margin given",
                               "inconclusive"}) {
    CHECK_THAT(result.output, Catch::Matchers::Contains(expected));
  }
  CHECK_THAT(result.output, !Catch::Matchers::Contains("no difference"));
  // Without a margin nothing is called equivalent.
  CHECK_THAT(result.output, !Catch::Matchers::Contains("equivalent within"));
}

TEST_CASE("compare refuses runs that pair up but differ in a key it does not compare",
          "[compare]") {
  const testing::TempDir dir;
  const std::string db = dir.path() + "/results.db";
  {
    Store store(db);
    add_done_run(store, {"topk", 1, 0.8, {}}, 0);
    add_done_run(store, {"topk", 2, 0.81, {}}, 1);
    add_done_run(store, {"ssr", 1, 0.82, {{"train.lr", "0.002"}}}, 2);
    add_done_run(store, {"ssr", 2, 0.83, {{"train.lr", "0.002"}}}, 3);
  }
  auto result = testing::run_moelab("compare " + db + " --baseline topk");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output,
             Catch::Matchers::Contains("run 3 (ssr) and run 1 (topk) pair up on seed=1 but differ "
                                       "in train.lr (0.002 vs 0.001)"));
  // Compared as a group key, the same runs are a valid comparison.
  result = testing::run_moelab("compare " + db + " --group-by router,train.lr --baseline "
                               "'topk, 0.001'");
  INFO(result.output);
  CHECK(result.exit_code == 0);
}

TEST_CASE("compare refuses two runs of a group on one seed, and an unknown baseline",
          "[compare]") {
  const testing::TempDir dir;
  const std::string db = dir.path() + "/results.db";
  {
    Store store(db);
    add_done_run(store, {"topk", 1, 0.8, {}}, 0);
    add_done_run(store, {"ssr", 1, 0.82, {}}, 1);
    add_done_run(store, {"ssr", 1, 0.83, {{"train.steps", "200"}}}, 2);
  }
  auto result = testing::run_moelab("compare " + db + " --baseline topk");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Catch::Matchers::Contains("group 'ssr' has two runs with seed=1"));
  result = testing::run_moelab("compare " + db + " --baseline top_k");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Catch::Matchers::Contains("--baseline 'top_k' is not a group"));
  result = testing::run_moelab("compare " + db + " --baseline topk --margin -1");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Catch::Matchers::Contains("--margin must be positive"));
}

TEST_CASE("compare at a FLOP budget reads each run's curve at equal compute", "[compare][flops]") {
  const testing::TempDir dir;
  const std::string db = dir.path() + "/results.db";
  {
    Store store(db);
    // topk spends 10 training FLOPs a step, topp 20; val/accuracy logged at steps 10, 20, 30.
    // A third router stopped at 100 FLOPs. Per seed offsets give the differences a spread.
    const std::vector<double> topk_offset = {0.0, 0.01, 0.02}, topp_offset = {0.005, 0.0, 0.03};
    int64_t index = 0;
    for (int64_t seed = 1; seed <= 3; ++seed) {
      const auto i = static_cast<size_t>(seed - 1);
      for (const auto& [router, per_step, offset] :
           {std::tuple{"topk", 10.0, topk_offset[i]}, std::tuple{"topp", 20.0, topp_offset[i]}}) {
        RunRecord record;
        record.config_hash = fmt::format("hash-{}", index++);
        record.task = "image";
        record.router = router;
        record.params = {{"router.name", router}, {"seed", std::to_string(seed)}, {"task.name", "image"}};
        const int64_t id = store.create_run(record);
        std::vector<MetricRow> rows;
        for (int64_t step : {10, 20, 30}) {
          rows.push_back({step, "train", "flops", per_step * static_cast<double>(step)});
          rows.push_back({step, "val", "accuracy", 0.4 + 0.01 * static_cast<double>(step) + offset});
        }
        store.log_metrics(id, rows);
        store.finish_run(id, RunStatus::Done, {{"test/accuracy", 0.9}, {"val/accuracy", 0.7}});
      }
    }
    RunRecord short_run;
    short_run.config_hash = "short";
    short_run.task = "image";
    short_run.router = "hash";
    short_run.params = {{"router.name", "hash"}, {"seed", "1"}, {"task.name", "image"}};
    const int64_t id = store.create_run(short_run);
    store.log_metrics(id, {{10, "train", "flops", 100.0}, {10, "val", "accuracy", 0.5}});
    store.finish_run(id, RunStatus::Done, {{"test/accuracy", 0.9}, {"val/accuracy", 0.5}});
  }
  // At 300 FLOPs: topk at step 30 (0.7 + offset), topp between steps 10 (200 FLOPs, 0.5) and
  // 20 (400 FLOPs, 0.6): 0.55 + offset. Differences -0.145, -0.16, -0.14.
  const json rows = [&] {
    const testing::TempDir out;
    const auto result = testing::run_moelab(fmt::format(
        "compare {} --baseline topk --at-flops 300 --format json -o {}", db, out.file("c.json")));
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    return json::parse(testing::read_text(out.file("c.json")));
  }();
  const json& topp = row_of(rows, "topp");
  CHECK(topp["metric"] == "val/accuracy");
  CHECK(topp["n_pairs"] == 3);
  CHECK(number(topp["mean_diff"]) == Approx((-0.145 - 0.16 - 0.14) / 3).epsilon(1e-12));
  CHECK(number(topp["at_flops"]) == 300);
  // The router that stopped at 100 FLOPs has no value there: left out, and said so.
  const auto text = testing::run_moelab("compare " + db + " --baseline topk --at-flops 300");
  CHECK_THAT(text.output, Catch::Matchers::Contains("Left out, short of that budget: run 7 (hash)"));
}

}  // namespace
}  // namespace moelab
