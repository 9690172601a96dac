// `moelab claims` end to end: a claims file tested on a results database through the binary,
// the verdict rules on runs built to give each verdict, the Holm adjustment over the file's
// claims against SciPy, missing runs, and the configuration errors a claims file can have.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "comparison_runs.h"
#include "scipy_reference.h"
#include "test_util.h"

namespace moelab {
namespace {

using nlohmann::json;
using namespace testing::comparison_runs;

// A claim in the file's YAML form.
std::string claim(const std::string& id, const std::string& treatment, const std::string& direction,
                  const std::string& extra = "") {
  return fmt::format(
      "  - id: {}\n    paper: arXiv 0000.00000 (test)\n    quote: \"{} is {}\"\n    sweep: s\n"
      "    metric: test/accuracy\n    treatment: {}\n    baseline: topk\n    direction: {}\n"
      "    margin: 0.005\n{}",
      id, treatment, direction, treatment, direction, extra);
}

struct Claims {
  testing::TempDir dir;
  std::string db, file;
  explicit Claims(const std::string& body) {
    db = standard_database(dir);
    file = dir.file("claims.yaml");
    std::ofstream(file) << "claims:\n" << body;
  }
  testing::Command run(const std::string& options = "") const {
    return testing::run_moelab(fmt::format("claims {} --db {} {}", file, db, options));
  }
};

const json& by_id(const json& rows, const std::string& id) {
  for (const auto& row : rows) {
    if (row["id"] == id) return row;
  }
  FAIL("no claim " << id);
  return rows[0];
}

}  // namespace

TEST_CASE("claims get the verdict their runs support, p adjusted over the file", "[claims]") {
  const Claims claims(claim("ssr-better", "ssr", "higher") + claim("ssr-worse", "ssr", "lower") +
                      claim("noisy-same", "noisy_topk", "equivalent") +
                      claim("noisy-better", "noisy_topk", "higher") +
                      claim("hash-better", "hash", "higher"));
  const auto out = claims.dir.file("claims.json");
  const auto result = claims.run("--format json -o " + out);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const json rows = json::parse(testing::read_text(out));
  REQUIRE(rows.size() == 5);
  CHECK(by_id(rows, "ssr-better")["verdict"] == "supported");
  CHECK(by_id(rows, "ssr-worse")["verdict"] == "contradicted");
  CHECK(by_id(rows, "noisy-same")["verdict"] == "supported");  // within ±0.005, shown by TOST
  CHECK(by_id(rows, "noisy-better")["verdict"] == "not supported");
  // hash has runs, but on seeds 7..9 only: Welch, unpaired, and too few to show anything.
  const json& hash = by_id(rows, "hash-better");
  CHECK(hash["paired"] == false);
  CHECK(hash["verdict"] == "inconclusive");
  CHECK(by_id(rows, "ssr-better")["n"] == 6);

  // Holm over the file's five claims, against SciPy's t tests and the Holm arithmetic.
  const auto ssr = plus(kBaseline, kSsrGain), noisy = plus(kBaseline, kNoisyGain);
  const json t = testing::scipy_reference(json::array({
      {{"op", "paired_t"}, {"treatment", ssr}, {"baseline", kBaseline}, {"confidence", 0.95}},
      {{"op", "paired_t"}, {"treatment", noisy}, {"baseline", kBaseline}, {"confidence", 0.95}},
      {{"op", "welch"}, {"a", kLonely}, {"b", kBaseline}, {"confidence", 0.95}},
  }));
  const json holm = testing::scipy_reference(json::array({{{"op", "holm"},
      {"p", {t[0]["p"], t[0]["p"], t[1]["p"], t[1]["p"], t[2]["p"]}}}}))[0];
  const char* ids[] = {"ssr-better", "ssr-worse", "noisy-same", "noisy-better", "hash-better"};
  for (size_t i = 0; i < 5; ++i) {
    INFO(ids[i]);
    testing::check_close(testing::number(by_id(rows, ids[i])["p_adjusted"]), holm[i], 1e-9);
  }
  testing::check_close(testing::number(by_id(rows, "ssr-better")["effect"]), t[0]["mean_diff"], 1e-9);
  testing::check_close(testing::number(by_id(rows, "ssr-better")["ci_low"]), t[0]["ci_low"], 1e-9);
  for (const char* field : {"id", "verdict", "n", "effect", "ci_low", "ci_high", "p_adjusted", "mde"}) {
    CHECK(by_id(rows, "ssr-better").contains(field));
  }
}

TEST_CASE("a claim without runs names them and the command that makes them", "[claims]") {
  const Claims claims(claim("expert-choice", "expert_choice", "higher"));
  const auto result = claims.run();
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Matchers::Contains("verdict: missing runs: no done run of router "
                                                      "'expert_choice' in sweep 's'"));
  CHECK_THAT(result.output, Catch::Matchers::Contains("moelab sweep"));
}

TEST_CASE("the text names the scale, so that a check is not read as a replication", "[claims]") {
  const Claims claims(claim("ssr-better", "ssr", "higher"));
  const auto result = claims.run();
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Matchers::Contains("not a replication"));
  CHECK_THAT(result.output, Catch::Matchers::Contains("n = 6 pairs"));
  CHECK_THAT(result.output, Catch::Matchers::Contains("verdict: supported"));
  for (const char* format : {"md", "html"}) {
    const auto rendered = claims.run(std::string("--format ") + format);
    CHECK(rendered.exit_code == 0);
    CHECK_THAT(rendered.output, Catch::Matchers::Contains("ssr-better"));
  }
}

TEST_CASE("the shipped claims files are valid and name the sweeps their runs come from",
          "[claims]") {
  const testing::TempDir dir;
  const std::string db = dir.file("empty.db");
  { Store create(db); }
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(MOELAB_SOURCE_DIR) + "/experiments/claims")) {
    INFO(entry.path());
    const auto result = testing::run_moelab("claims " + entry.path().string() + " --db " + db);
    INFO(result.output);
    CHECK(result.exit_code == 0);
    CHECK_THAT(result.output, Catch::Matchers::Contains("verdict: missing runs"));
    CHECK_THAT(result.output, Catch::Matchers::Contains("moelab sweep "));
    CHECK_THAT(result.output, !Catch::Matchers::Contains("verdict: supported"));
  }
}

TEST_CASE("a claims file's unknown group, metric, sweep or key is an error at its line",
          "[claims][bad_input]") {
  struct Case {
    std::string body, expected;
  };
  const std::vector<Case> cases = {
      {claim("a", "topkk", "lower"), "claims.yaml:7:16: claim 'a': unknown router group 'topkk'"},
      {claim("a", "ssr", "higher").replace(claim("a", "ssr", "higher").find("test/accuracy"), 13,
                                           "test/acuracy"),
       "claims.yaml:6:13: claim 'a': metric 'test/acuracy'"},
      {claim("a", "ssr", "higher").replace(claim("a", "ssr", "higher").find("sweep: s"), 8,
                                           "sweep: nowhere"),
       "claims.yaml:5:12: claim 'a': unknown sweep 'nowhere'"},
      {claim("a", "ssr", "sideways"), "claims.yaml:9:16"},
      {claim("a", "ssr", "higher", "    treatmnt: x\n"), "unknown key 'treatmnt'"},
      {claim("a", "ssr", "higher") + claim("a", "ssr", "lower"), "claim id 'a' appears twice"},
  };
  for (const auto& c : cases) {
    const Claims claims(c.body);
    const auto result = claims.run();
    INFO(c.body);
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output, Catch::Matchers::Contains(c.expected));
  }
}

}  // namespace moelab
