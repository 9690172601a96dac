// Tasks declare what their numbers mean (tasks/task_metrics.h); the leaderboard, the default
// report metric, retention and the query presets follow the declarations, checked here with
// a fake task registered only in this file.
#include "tasks/task_metrics.h"

#include "harness/convert/conversion.h"
#include "harness/report/presets.h"
#include "harness/report/report.h"
#include "tasks/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

// "fake": F1 (higher is better) as its main metric, and a loss.
const TaskMetrics& fake_metrics() {
  static const TaskMetrics declared{"fake",
                                    {{"f1", Better::Higher, "F1 score"},
                                     {"loss", Better::Lower, "cross-entropy"}},
                                    {"f1"},
                                    {}};
  return declared;
}

TaskEntry fake_entry() {
  return TaskEntry{"fake", "a test's task with a higher-is-better metric",
                   []() -> std::unique_ptr<AnyOptions> { throw Error("fake: no options"); },
                   [](const AnyOptions&, const RunConfig&) -> std::unique_ptr<Task> {
                     throw Error("fake: not runnable");
                   },
                   &fake_metrics};
}

int64_t add_run(Store& store, const std::string& task, const std::string& sweep,
                RunStatus status, const MetricValues& summaries) {
  RunRecord record;
  record.config_hash = fmt::format("{}-{}-{}", task, sweep, store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer);
  record.sweep = sweep;
  record.task = task;
  record.router = "topk";
  const int64_t id = store.create_run(record);
  store.finish_run(id, status, summaries);
  return id;
}

}  // namespace

TEST_CASE("every task declares its metrics, main metric and suites consistently", "[tasks]") {
  for (const auto& entry : task_registry()) {
    DYNAMIC_SECTION("task " << entry.name) {
      const TaskMetrics& metrics = entry.metrics();
      CHECK(metrics.task == entry.name);
      REQUIRE_FALSE(metrics.main.empty());
      for (const auto& main : metrics.main) CHECK_NOTHROW(metrics.find(main));
      for (const auto& suite : metrics.suites) {
        CHECK_NOTHROW(metrics.find(suite.metric));
        CHECK(suite.splits().size() == suite.corruptions.size() * static_cast<size_t>(suite.severities));
      }
    }
  }
  // The image suites as published: MNIST-C's 15 corruptions at one severity, CIFAR-10-C's 15 at
  // five; accuracy errors are 1 - accuracy, losses are errors themselves.
  const TaskMetrics image = task_metrics("image");  // a copy: g++ 14 warns on the reference
  CHECK(image.suite("fmnist_c").splits().size() == 15);
  CHECK(image.suite("cifar_c").splits().size() == 75);
  CHECK(image.suite("cifar_c").splits().front() == "cifar_c:" + image.suite("cifar_c").corruptions[0] + ":1");
  CHECK(image.error(image.suite("fmnist_c"), 0.875) == Approx(0.125));
  CHECK(image.higher_is_better("accuracy"));
  CHECK_FALSE(task_metrics("lm").higher_is_better("bpc"));
  CHECK_THROWS_WITH(image.find("bleu"), Catch::Matchers::Contains("image") && Catch::Matchers::Contains("bleu") &&
                                            Catch::Matchers::Contains("accuracy"));
  CHECK_THROWS_WITH(find_suite("imagenet_c"), Catch::Matchers::Contains("fmnist_c, cifar_c"));
  CHECK(metric_of("test/accuracy") == "accuracy");
  CHECK(metric_of("cifar_c:fog:3/accuracy@topk") == "accuracy");
  CHECK(metric_of("fmnist_c/mean_error") == "mean_error");
}

TEST_CASE("a fake task with a higher-is-better metric gets the right retention", "[tasks]") {
  ScopedTaskRegistration fake(fake_entry());
  CHECK_THROWS_WITH(ScopedTaskRegistration(fake_entry()), Catch::Matchers::Contains("already"));
  const std::map<std::string, double> dense = {
      {"test/f1", 0.8}, {"test/loss", 0.5}, {"val/f1", 0.5}, {"train/loss", 0.1}};
  const MetricValues converted = {
      {"test/f1", 0.6}, {"test/loss", 1.0}, {"val/f1", 0.6}, {"train/loss", 0.2}, {"test/extra", 3.0}};
  const MetricValues kept = retention(task_metrics("fake"), dense, converted);
  const std::map<std::string, double> by_name(kept.begin(), kept.end());
  REQUIRE(by_name.size() == 3);  // train is not a quality split; test/extra has no dense value
  CHECK(by_name.at("retention/test/f1") == Approx(0.75));   // 0.6 / 0.8: F1 kept
  CHECK(by_name.at("retention/val/f1") == Approx(1.2));     // 0.6 / 0.5: better than the parent
  CHECK(by_name.at("retention/test/loss") == Approx(0.5));  // 0.5 / 1.0: loss doubled
  // The image task's corruption mean error is lower-is-better too.
  const MetricValues image = retention(task_metrics("image"), {{"fmnist_c/mean_error", 0.2}},
                                       {{"fmnist_c/mean_error", 0.25}});
  REQUIRE(image.size() == 1);
  CHECK(image[0].second == Approx(0.8));
}

TEST_CASE("the leaderboard orders each task's runs by its own main metric", "[tasks][query]") {
  ScopedTaskRegistration fake(fake_entry());
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  const int64_t f_low = add_run(store, "fake", "a", RunStatus::Done, {{"test/f1", 0.2}});
  const int64_t f_high = add_run(store, "fake", "a", RunStatus::Done, {{"test/f1", 0.9}});
  const int64_t f_none = add_run(store, "fake", "a", RunStatus::Done, {{"test/loss", 0.3}});
  const int64_t f_mid = add_run(store, "fake", "a", RunStatus::Done, {{"test/f1", 0.5}});
  add_run(store, "fake", "a", RunStatus::Failed, {{"test/f1", 1.0}});
  const int64_t i_low = add_run(store, "image", "b", RunStatus::Done,
                                {{"test/accuracy", 0.7}, {"fmnist_c/mean_error", 0.4}});
  const int64_t i_high = add_run(store, "image", "b", RunStatus::Done, {{"test/accuracy", 0.8}});
  const int64_t l_worse = add_run(store, "lm", "c", RunStatus::Done, {{"test/bpc", 2.0}, {"test/loss", 1.0}});
  const int64_t l_better = add_run(store, "lm", "c", RunStatus::Done, {{"test/bpc", 1.5}, {"test/loss", 1.2}});
  const int64_t l_words = add_run(store, "lm", "c", RunStatus::Done, {{"test/ppl", 90.0}});

  const QueryResult board = store.query(preset_sql("leaderboard"));
  std::vector<int64_t> order;
  std::vector<std::string> metrics;
  for (const auto& row : board.rows) {
    order.push_back(row[0].integer);
    metrics.push_back(row[6].text);
  }
  // fake: 0.9, 0.5, 0.2, then the run without F1; image: 0.8, 0.7; lm: bpc 1.5, 2.0 (lower
  // is better), then the word-level run (runs of one metric together).
  CHECK(order == std::vector<int64_t>{f_high, f_mid, f_low, f_none, i_high, i_low, l_better,
                                      l_worse, l_words});
  CHECK(metrics[0] == "test/f1");
  CHECK(metrics[4] == "test/accuracy");
  CHECK(metrics[6] == "test/bpc");
  CHECK(metrics[8] == "test/ppl");
  const auto column = std::find(board.columns.begin(), board.columns.end(), "fmnist_c_mean_error");
  REQUIRE(column != board.columns.end());
  CHECK(board.rows[5][static_cast<size_t>(column - board.columns.begin())].real == Approx(0.4));

  // Report defaults: each sweep's main test metric; runs of tasks with different ones need --metric.
  CHECK(main_summary(store, "a", "test") == "test/f1");
  CHECK(main_summary(store, "c", "test") == "test/bpc");
  CHECK_THROWS_AS(main_summary(store, "", "test"), ConfigError);
  ReportRequest request;
  request.sweep = "b";
  collect_groups(store, request);
  CHECK(request.metric == "test/accuracy");

  const QueryResult failures = store.query(preset_sql("failures"));
  REQUIRE(failures.rows.size() == 1);
  CHECK(failures.rows[0][1].text == "a");
  const QueryResult progress = store.query(preset_sql("progress"));
  REQUIRE(progress.rows.size() == 3);
  CHECK(progress.rows[0][0].text == "a");
  CHECK(progress.rows[0][1].integer == 5);  // runs
  CHECK(progress.rows[0][2].integer == 4);  // done
  CHECK(progress.rows[0][5].integer == 1);  // failed
  CHECK_THROWS_WITH(preset_sql("best"), Catch::Matchers::Contains("leaderboard"));
}

TEST_CASE("split names: one parse, one format, every kind", "[task_metrics][split]") {
  struct Case {
    const char* text;
    SplitId::Kind kind;
    const char* base;
    const char* corruption;
    int64_t severity;
    const char* label;
    const char* router;
  };
  const Case cases[] = {
      {"val", SplitId::Kind::Plain, "val", "", 0, "", ""},
      {"test@expert_choice", SplitId::Kind::Plain, "test", "", 0, "", "expert_choice"},
      {"fmnist_c:shot_noise", SplitId::Kind::Corruption, "fmnist_c", "shot_noise", 0, "", ""},
      {"cifar_c:fog:3", SplitId::Kind::Corruption, "cifar_c", "fog", 3, "", ""},
      {"cifar_c:fog:5@topk", SplitId::Kind::Corruption, "cifar_c", "fog", 5, "", "topk"},
      {"test:pgd:eps255=5:steps=10:step255=1:restarts=1", SplitId::Kind::TestVariant, "test", "",
       0, "pgd:eps255=5:steps=10:step255=1:restarts=1", ""},
      {"test:aaa:0.015@ssr", SplitId::Kind::TestVariant, "test", "", 0, "aaa:0.015", "ssr"},
      {"fmnist_c", SplitId::Kind::Suite, "fmnist_c", "", 0, "", ""},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    const SplitId id = SplitId::parse(c.text);
    CHECK(id.kind == c.kind);
    CHECK(id.base == c.base);
    CHECK(id.corruption == c.corruption);
    CHECK(id.severity == c.severity);
    CHECK(id.label == c.label);
    CHECK(id.router == c.router);
    CHECK(id.text() == c.text);  // round trip
  }
  CHECK(SplitId::parse("val").under_router("ssr").text() == "val@ssr");
  CHECK(SplitId::corrupted("cifar_c", "fog", 2).text() == "cifar_c:fog:2");
  CHECK(SplitId::test_variant("fgsm:eps255=2").text() == "test:fgsm:eps255=2");
  // A declared suite's splits are corruption splits of that suite.
  for (const auto& split : task_metrics("image").suite("cifar_c").splits()) {
    CHECK(SplitId::parse(split).kind == SplitId::Kind::Corruption);
    CHECK(SplitId::parse(split).base == "cifar_c");
  }
  CHECK_THROWS_WITH(SplitId::parse("cifar_c:fog:x"), Catch::Matchers::Contains("severity 'x'"));
  CHECK_THROWS_WITH(SplitId::parse("cifar_c:fog:0"), Catch::Matchers::Contains("'cifar_c:fog:0'"));
  CHECK_THROWS_WITH(SplitId::parse("val@"), Catch::Matchers::Contains("not a split name"));
  CHECK_THROWS_WITH(SplitId::parse(":fog"), Catch::Matchers::Contains("not a split name"));
}

}  // namespace moelab
