// Sweeps: expansion and validation, identity, skip/retry, concurrent workers, a worker killed
// with SIGKILL and the sweep resumed, Ctrl-C, report statistics.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness/core/cpus.h"
#include "harness/report/plots.h"
#include "harness/report/report.h"
#include "harness/report/stats.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep.h"
#include "harness/sweep/progress.h"
#include "harness/sweep/sweep_runner.h"
#include "test_util.h"
#include "tiny_sweep.h"

namespace moelab {
namespace {

using testing::write_sweep;

std::vector<std::string> labels(const SweepPlan& plan) {
  std::vector<std::string> out;
  for (const auto& run : plan.runs) out.push_back(run.label());
  return out;
}

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Two runs (topk, loss_free) of `steps` steps that checkpoint every 20 steps and log every 10.
std::string write_resumable_sweep(const testing::TempDir& dir, const std::string& name,
                                  int steps) {
  return write_sweep(dir, fmt::format("name: {}\nbase: {{train: {{steps: {}, checkpoint_every: "
                                      "20, log_every: 10}}}}\ngrid:\n  router.name: [topk, "
                                      "loss_free]\n",
                                      name, steps));
}

// `moelab sweep PATH --workers N` started in `dir` as a child process in its own process
// group (as a terminal's foreground job); returns its pid.
pid_t start_sweep(const testing::TempDir& dir, const std::string& path, int workers) {
  const std::string moelab = MOELAB_BINARY, count = std::to_string(workers);
  const pid_t supervisor = fork();
  if (supervisor == 0) {
    setpgid(0, 0);
    if (chdir(dir.file("").c_str()) != 0) _exit(127);
    execl(moelab.c_str(), moelab.c_str(), "sweep", path.c_str(), "--workers", count.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(supervisor, supervisor);
  return supervisor;
}

// Polls `dir`'s s.db every 50 ms (for up to 30 s) until `sql` returns a row; its first cell
// as text, or "" if none came.
std::string first_cell_when_ready(const testing::TempDir& dir, const std::string& sql) {
  for (int i = 0; i < 600; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      Store store(dir.file("s.db"));
      auto rows = store.query(sql);
      if (!rows.rows.empty()) return rows.rows[0][0].to_string();
    } catch (const std::exception&) {
      // the database may not exist yet
    }
  }
  return "";
}

}  // namespace

TEST_CASE("sweep expansion: grid, zip, seeds, exclude and command-line axes", "[sweep]") {
  testing::TempDir dir;
  const std::string path = write_sweep(dir, R"(name: demo
grid:
  router: [{name: topk, k: 2}, {name: base}]
  train.lr: [0.001, 0.002]
zip:
  model.dim: [16, 32]
  model.heads: [2, 4]
seeds: 2
exclude:
  - {router.name: base, train.lr: 1e-3}
)");
  const SweepPlan plan = expand_sweep(path);
  CHECK(plan.name == "demo");
  // 2 routers x 2 lr x 2 zip rows x 2 seeds = 16, minus base with lr 0.001 (4) = 12.
  REQUIRE(plan.runs.size() == 12);
  CHECK(plan.runs[0].label() == "router={name: topk, k: 2} train.lr=0.001 model.dim=16 model.heads=2 seed=0");
  CHECK(plan.runs[1].label() == "router={name: topk, k: 2} train.lr=0.001 model.dim=16 model.heads=2 seed=1");
  CHECK(plan.runs[2].config.model.dim == 32);
  CHECK(plan.runs[2].config.model.heads == 4);
  CHECK(plan.runs.back().config.router.name == "base");
  CHECK(plan.runs.back().config.train.lr == 0.002);
  CHECK(plan.runs.back().config.seed == 1);
  CHECK(plan.runs[0].config.train.steps == 4);  // from the extended base

  // Hash stability: the same file expands to the same identities.
  const SweepPlan again = expand_sweep(path);
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    CHECK(config_hash(plan.runs[i].config) == config_hash(again.runs[i].config));
  }
  // A command-line list adds an axis, a single value overrides every run.
  const SweepPlan wider = expand_sweep(path, {"train.batch_size=8,16", "train.steps=3"});
  CHECK(wider.runs.size() == 24);
  CHECK(wider.runs[0].config.train.steps == 3);
  CHECK(labels(wider)[0].find("train.batch_size=8") != std::string::npos);
  // A command-line value for a key the file sweeps replaces that axis.
  const SweepPlan fixed_lr = expand_sweep(path, {"train.lr=0.005"});
  CHECK(fixed_lr.runs.size() == 8);  // 2 routers x 2 zip rows x 2 seeds; the exclude matches none
  for (const auto& run : fixed_lr.runs) CHECK(run.config.train.lr == 0.005);
  CHECK(expand_sweep(path, {"train.lr=0.1,0.2,0.3"}).runs.size() == 24);
  const SweepPlan heads = expand_sweep(path, {"model.heads=8"});  // one column of the zip
  REQUIRE(heads.runs.size() == 12);
  CHECK(heads.runs[0].config.model.heads == 8);
  CHECK(heads.runs[2].config.model.dim == 32);
  CHECK(heads.runs[2].config.model.heads == 8);
  CHECK_THROWS_WITH(expand_sweep(path, {"model.heads=2,4"}),
                    Catch::Matchers::Contains("model.heads is swept together with model.dim"));
  // seeds= on the command line replaces the file's seeds: a count, or a list.
  CHECK(expand_sweep(path, {"seeds=3"}).runs.size() == 18);
  const SweepPlan listed = expand_sweep(path, {"seeds=7,42"});
  REQUIRE(listed.runs.size() == 12);
  CHECK(listed.runs[0].config.seed == 7);
  CHECK(listed.runs[1].config.seed == 42);
  for (const std::string bad : {"seeds=0", "seeds=two", "seeds=1,x", "seeds=-1,2"}) {
    CHECK_THROWS_WITH(expand_sweep(path, {bad}),
                      Catch::Matchers::Contains("override '" + bad + "': seeds takes a count"));
  }
}

TEST_CASE("sweep errors: unknown keys with position, invalid combinations with their values",
          "[sweep]") {
  testing::TempDir dir;
  const std::string typo = write_sweep(dir, "gird:\n  train.lr: [0.1]\n");
  CHECK_THROWS_WITH(expand_sweep(typo), Catch::Matchers::Contains("sweep.yaml:2:1") &&
                                            Catch::Matchers::Contains("did you mean 'grid'"));
  const std::string bad = write_sweep(dir, "grid:\n  router.k: [2, 9]\n  train.lr: [0.1, -1]\n");
  try {
    expand_sweep(bad);
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Matchers::Contains("3 invalid combination(s)"));
    CHECK_THAT(message, Catch::Matchers::Contains("[router.k=9 train.lr=0.1]"));
    CHECK_THAT(message, Catch::Matchers::Contains("[router.k=2 train.lr=-1]"));
  }
  // An error every combination shares (a bad command-line override) is stated once.
  CHECK_THROWS_WITH(expand_sweep(bad, {"train.batch_size=0"}),
                    Catch::Matchers::StartsWith(bad + ": all 4 combinations are invalid: ") &&
                        Catch::Matchers::Contains("train.batch_size"));
  const std::string zip = write_sweep(dir, "zip:\n  model.dim: [16, 32]\n  model.heads: [2]\n");
  CHECK_THROWS_WITH(expand_sweep(zip), Catch::Matchers::Contains("zip.model.heads has 1 values"));
  // One sweep, one queue: runs in two databases are a planning error, not a failed sweep.
  const std::string split = write_sweep(dir, "zip:\n  db: [a.db, b.db]\n  seed: [1, 2]\n");
  CHECK_THROWS_WITH(expand_sweep(split),
                    Catch::Matchers::Contains("every run of a sweep uses one database") &&
                        Catch::Matchers::Contains("[db=b.db seed=2] has 'b.db'"));
}

TEST_CASE("sweep typos are errors at their line: exclude, grid and zip keys and values, base, "
          "structure", "[sweep]") {
  testing::TempDir dir;
  const std::string axes = "grid:\n  router.name: [topk, ssr]\n  train.lr: [0.1, 0.2]\n";
  auto error_of = [&](const std::string& body) {
    try {
      expand_sweep(write_sweep(dir, body));
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    FAIL("expected a ConfigError for:\n" << body);
    return std::string();
  };
  using Catch::Matchers::Contains;
  // The sweep file is "extends: base.yaml\n" + body: body line 1 is line 2.
  CHECK_THAT(error_of(axes + "exclude:\n  - {router.nmae: ssr}\n"),
             Contains("sweep.yaml:6:6: exclude: 'router.nmae' is not a config key") &&
                 Contains("did you mean 'router.name'"));
  CHECK_THAT(error_of(axes + "exclude:\n  - {router.name: sssr}\n"),
             Contains("sweep.yaml:6:19: exclude: router.name = sssr is not a value this sweep "
                      "gives it (did you mean 'ssr'?); its values: topk, ssr"));
  CHECK_THAT(error_of(axes + "exclude:\n  - {train.lr: 0.3}\n"),
             Contains("train.lr = 0.3 is not a value") && Contains("its values: 0.1, 0.2"));
  CHECK_THAT(error_of(axes + "exclude:\n  - {train.steps: 4}\n"),
             Contains("sweep.yaml:6:6: exclude: 'train.steps' is not swept by this sweep") &&
                 Contains("swept keys: router.name, train.lr"));
  CHECK_THAT(error_of(axes + "exclude: {router.name: ssr}\n"),
             Contains("sweep.yaml:5:10: exclude must be a list of mappings"));
  CHECK_THAT(error_of("grid:\n  router.nmae: [topk, ssr]\n"),
             Contains("sweep.yaml:3:3: grid: 'router.nmae' is not a config key"));
  CHECK_THAT(error_of("zip:\n  router.name: [topk, sssr]\n  seed: [1, 2]\n"),
             Contains("[router.name=sssr seed=2] ") &&
                 Contains("sweep.yaml:3:23: router.name: unknown router 'sssr' (did you mean 'ssr'?)"));
  CHECK_THAT(error_of("grid: [a, b]\n"), Contains("sweep.yaml:2:7: grid must be a mapping"));
  CHECK_THAT(error_of("name: [a, b]\n"), Contains("sweep.yaml:2:7: name must be a single value"));
  // base: the sweep file's line (base.yaml is 7 lines long, so a line 8 would be wrong anyway).
  CHECK_THAT(error_of("name: b\nbase:\n  train: {stpes: 3}\n" + axes),
             Contains("sweep.yaml:4:11: unknown key 'train.stpes'") && Contains("did you mean 'steps'"));
  CHECK_THAT(error_of("base:\n  model: {heads: 3}\n"),
             Contains("sweep.yaml:3:11: model.heads = 3: must divide model.dim = 16"));
  // extends: relative to the sweep file, or an absolute path.
  std::ofstream(dir.file("absolute.yaml")) << "extends: " << dir.file("base.yaml") << "\n" << axes;
  CHECK(expand_sweep(dir.file("absolute.yaml")).runs.size() == 4);
  std::ofstream(dir.file("missing.yaml")) << "extends: /nonexistent/base.yaml\n" << axes;
  CHECK_THROWS_WITH(expand_sweep(dir.file("missing.yaml")),
                    Contains("missing.yaml:1:10: extends: '/nonexistent/base.yaml' is not a run config file"));
  // A section as the axis: exclude looks inside its values.
  const std::string sections = "grid:\n  router: [{name: topk}, {name: ssr, p: 0.5}]\n";
  CHECK_THAT(error_of(sections + "exclude:\n  - {router.name: sbase}\n"),
             Contains("router.name = sbase is not a value") && Contains("its values: topk, ssr"));
  const SweepPlan plan = expand_sweep(write_sweep(dir, sections + "exclude:\n  - {router.name: ssr}\n"));
  REQUIRE(plan.runs.size() == 1);
  CHECK(plan.runs[0].config.router.name == "topk");
  // The command line narrows the sweep the exclusions were written for: they keep or drop all.
  const std::string narrowed = write_sweep(dir, axes + "exclude:\n  - {router.name: ssr}\n");
  CHECK(expand_sweep(narrowed, {"router.name=topk"}).runs.size() == 2);
  CHECK_THROWS_WITH(expand_sweep(narrowed, {"router.name=ssr"}),
                    Contains("every combination is excluded"));
}

TEST_CASE("moelab sweep plan validates and lists the distinct runs, running nothing", "[sweep]") {
  testing::TempDir dir;
  const std::string path = write_sweep(dir, "name: p\ngrid:\n  train.lr: [0.1, 0.1, 0.2]\n");
  const std::string moelab = MOELAB_BINARY;
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep plan " + path +
                " > out.txt 2>&1") == 0);
  std::ifstream in(dir.file("out.txt"));
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(out, Catch::Matchers::StartsWith("sweep 'p': 3 runs (2 distinct), all valid"));
  CHECK_THAT(out, Catch::Matchers::Contains("train.lr=0.2"));
  CHECK_FALSE(std::filesystem::exists(dir.file("s.db")));  // nothing ran, nothing written
  CHECK(shell("cd " + dir.file("") + " && " + moelab + " sweep plan " + path +
              " train.batch_size=0 > out.txt 2>&1") == 2);  // an invalid plan: a usage error
}

TEST_CASE("moelab sweep plan counts one experiment once, however its values are spelled",
          "[sweep][canonical]") {
  testing::TempDir dir;
  const std::string moelab = MOELAB_BINARY;
  const auto distinct = [&](const std::string& name, const std::string& axes) {
    const std::string path = write_sweep(dir, "name: " + name + "\ngrid:\n" + axes);
    REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep plan " + path +
                  " > out.txt 2>&1") == 0);
    return testing::read_text(dir.file("out.txt"));
  };
  // At depth 2: three spellings of block {1}, three of both blocks.
  CHECK_THAT(distinct("layers", "  model.moe.layers: [\"1\", \" 1 \", every_other, all, \"0,1\", "
                                "\"1, 0\"]\n"),
             Catch::Matchers::StartsWith("sweep 'layers': 6 runs (2 distinct), all valid"));
  // One radius as a fraction and as the decimal of the same double.
  CHECK_THAT(distinct("eps", fmt::format("  task.attacks: [\"fgsm:eps=8/255\", \"fgsm:eps={}\"]\n",
                                         8.0 / 255.0)),
             Catch::Matchers::StartsWith("sweep 'eps': 2 runs (1 distinct), all valid"));
}

TEST_CASE("statistics: t distribution and Welch's test on hand-computed values", "[report]") {
  CHECK(student_t_cdf(1.0, 1) == Approx(0.5 + std::atan(1.0) / M_PI));  // Cauchy
  CHECK(student_t_cdf(-2.0, 2) == Approx(0.5 - 2.0 / (2 * std::sqrt(6.0))));
  CHECK(student_t_quantile(0.975, 2) == Approx(4.302653).epsilon(1e-5));
  CHECK(student_t_quantile(0.975, 4) == Approx(2.776445).epsilon(1e-5));
  CHECK(student_t_quantile(0.995, 30) == Approx(2.749996).epsilon(1e-6));  // printed tables
  CHECK(student_t_quantile(0.95, 10) == Approx(1.812461).epsilon(1e-6));
  // Far tail, df = 2: P(T <= -t) = 1 / (s (s + t)) with s = sqrt(2 + t^2), free of cancellation.
  const double far = 1000.0, s2 = std::sqrt(2.0 + far * far);
  CHECK(student_t_cdf(-far, 2) == Approx(1.0 / (s2 * (s2 + far))).epsilon(1e-9));
  const Summary s = summarise({1, 2, 3, 4, 5});
  CHECK(s.mean == Approx(3.0));
  CHECK(s.std == Approx(std::sqrt(2.5)));
  CHECK(s.ci_half == Approx(2.776445 * std::sqrt(2.5) / std::sqrt(5.0)).epsilon(1e-5));
  // Equal variances and n = 2: Welch df = 2, t = -3/sqrt(2), p = 1 - t/sqrt(2 + t^2).
  const WelchTest test = welch_test({0, 2}, {3, 5});
  CHECK(test.t == Approx(-3.0 / std::sqrt(2.0)));
  CHECK(test.df == Approx(2.0));
  CHECK(test.p == Approx(1.0 - (3.0 / std::sqrt(2.0)) / std::sqrt(2.0 + 4.5)));
  CHECK(std::isnan(welch_test({1}, {2, 3}).p));
}

TEST_CASE("the sweep's ETA comes from the running runs' step rates and the run length",
          "[sweep]") {
  // Two workers. Run A: 50 of 100 steps in 25 s (25 s left); run B: 10 of 100 in 10 s (90 s
  // left). Two pending runs of 50 s, each to the earliest free worker: A's at 25 s (ends at
  // 75 s), then A's again at 75 s, before B's at 90 s (ends at 125 s).
  const std::vector<RunProgress> running = {{50, 100, 25}, {10, 100, 10}};
  CHECK(estimate_eta(running, 2, 50.0, 2) == Approx(125.0));
  CHECK(estimate_eta(running, 0, 50.0, 2) == Approx(90.0));       // the slower running run
  CHECK(estimate_eta({}, 3, 40.0, 2) == Approx(80.0));             // 40 + 40 | 40
  CHECK(estimate_eta({{0, 100, 5}}, 0, 30.0, 1) == Approx(25.0));  // no step yet: run length
  CHECK(estimate_eta({{0, 100, 5}}, 1, 0.0, 1) < 0);               // nothing measured: no ETA
}

TEST_CASE("moelab sweep: two workers run every run exactly once, re-running skips done ones",
          "[sweep][smoke][.slow]") {
  testing::TempDir dir;
  const std::string path = write_sweep(dir, "name: pair\ngrid:\n  router.name: [topk, ssr, hash]\nseeds: 2\n");
  const std::string moelab = MOELAB_BINARY;
  // An empty file cache: both workers inflate and hash the data files at the same time.
  REQUIRE(shell("cd " + dir.file("") + " && MOELAB_CACHE_DIR=" + dir.file("cache") + " " +
                moelab + " sweep " + path + " --workers 2 > out.txt 2>&1") == 0);
  std::vector<std::string> cached;
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("cache"))) {
    cached.push_back(entry.path().extension().string());
  }
  std::sort(cached.begin(), cached.end());
  // The two image files (the label files are under the cache's 1 MiB floor), no temporary.
  CHECK(cached == std::vector<std::string>{".raw", ".raw", ".sha256", ".sha256"});
  // The workers' logs, in the supervisor's own folder (results/logs/<sweep>/<host>-<pid>).
  std::vector<std::string> logs;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.file("results/logs/pair"))) {
    if (entry.is_regular_file()) logs.push_back(entry.path().parent_path().filename().string() + "/" +
                                                entry.path().filename().string());
  }
  std::sort(logs.begin(), logs.end());
  REQUIRE(logs.size() == 2);
  CHECK_THAT(logs[0], Catch::Matchers::Matches(".+-[0-9]+/worker-0\\.log"));
  CHECK_THAT(logs[1], Catch::Matchers::Matches(".+-[0-9]+/worker-1\\.log"));
  Store store(dir.file("s.db"));
  auto runs = store.query("SELECT COUNT(*), COUNT(DISTINCT config_hash), SUM(status = 'done'), "
                          "COUNT(DISTINCT worker) FROM runs WHERE sweep = 'pair'");
  CHECK(runs.rows[0][0].integer == 6);
  CHECK(runs.rows[0][1].integer == 6);
  CHECK(runs.rows[0][2].integer == 6);
  CHECK(runs.rows[0][3].integer == 2);  // both workers took runs (released together at the gate)
  auto files = store.query("SELECT COUNT(*) FROM run_files WHERE run_id = 1");
  CHECK(files.rows[0][0].integer == 4);  // the four Fashion-MNIST files, hashed
  // Plots: data, script and rendered files, non-empty.
  PlotRequest plot;
  plot.sweep = "pair";
  plot.metric = "train/loss";
  plot.output_dir = dir.file("plots");
  for (const char* kind : {"curves", "load", "shares"}) {
    plot.kind = kind;
    if (plot.kind != "curves") plot.metric = "";  // load: its default layer metric
    for (const auto& file : make_plot(store, plot)) {
      INFO(file);
      CHECK(std::filesystem::file_size(file) > 100);
    }
  }
  // A second sweep whose plan overlaps runs nothing, and reports the runs it reused.
  std::ofstream(dir.file("other.yaml")) << "extends: base.yaml\nname: other\ngrid:\n  router.name: [topk]\nseeds: 2\n";
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep other.yaml > out.txt 2>&1") == 0);
  CHECK(store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 6);
  ReportRequest reused;
  reused.sweep = "other";
  reused.metric = "test/accuracy";
  auto reused_groups = collect_groups(store, reused);
  REQUIRE(reused_groups.size() == 1);
  CHECK(reused_groups[0].label == "topk");
  CHECK(reused_groups[0].values.size() == 2);
  // Again: nothing to do. With --force: six new runs.
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path + " > out.txt 2>&1") == 0);
  CHECK(store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 6);
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path + " --force > out.txt 2>&1") == 0);
  CHECK(store.query("SELECT COUNT(*) FROM runs WHERE status = 'done'").rows[0][0].integer == 12);
}

TEST_CASE("a run gives the same numbers in a forked sweep worker as in moelab run", "[sweep][smoke]") {
  testing::TempDir dir;
  const std::string path = write_sweep(
      dir, "name: same\nbase: {router: {name: ssr, k: 2, p: 0.5}, train: {steps: 8}}\n"
           "seeds: [3]\n");
  const std::string moelab = MOELAB_BINARY;
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path +
                " --workers 2 > out.txt 2>&1") == 0);  // forked workers, one thread each
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " run base.yaml router.name=ssr " +
                "router.p=0.5 train.steps=8 seed=3 threads=1 db=" + dir.file("alone.db") +
                " checkpoint_dir=" + dir.file("alone") + " > out.txt 2>&1") == 0);
  const std::string values =
      "SELECT r.config_hash, s.name, printf('%.17g', s.value) FROM runs r JOIN summaries s ON "
      "s.run_id = r.id WHERE s.name NOT LIKE '%seconds%' AND s.name NOT LIKE '%per_second' "
      "AND s.name NOT LIKE '%_ms' ORDER BY s.name";
  const QueryResult swept = Store(dir.file("s.db")).query(values);
  const QueryResult alone = Store(dir.file("alone.db")).query(values);
  REQUIRE(swept.rows.size() > 5);
  REQUIRE(swept.rows.size() == alone.rows.size());
  for (size_t i = 0; i < swept.rows.size(); ++i) {
    INFO(swept.rows[i][1].text);
    CHECK(swept.rows[i][0].text == alone.rows[i][0].text);  // the same identity
    CHECK(swept.rows[i][2].text == alone.rows[i][2].text);  // the same value, every digit
  }
}

TEST_CASE("failed runs are recorded, the sweep goes on, --retry-failed reruns them", "[sweep][smoke][.slow]") {
  testing::TempDir dir;
  // stablemoe with vocab > 0 needs token ids: it fails on images, the others succeed.
  const std::string path = write_sweep(
      dir, "name: mixed\ngrid:\n  router: [{name: topk, k: 2}, {name: stablemoe, vocab: 10}]\n");
  const std::string moelab = MOELAB_BINARY;
  CHECK(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path + " > out.txt 2>&1") == 1);
  Store store(dir.file("s.db"));
  auto rows = store.query("SELECT router, status, error FROM runs ORDER BY id");
  REQUIRE(rows.rows.size() == 2);
  CHECK(rows.rows[0][1].text == "done");
  CHECK(rows.rows[1][1].text == "failed");
  CHECK_THAT(rows.rows[1][2].text, Catch::Matchers::Contains("token ids"));
  CHECK(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path + " --retry-failed > out.txt 2>&1") == 1);
  CHECK(store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 2);  // the same row again
  const std::string preset = "cd " + dir.file("") + " && " + moelab + " query " + dir.file("s.db") +
                             " --preset failures --csv > failures.csv";
  REQUIRE(shell(preset) == 0);
  std::ifstream in(dir.file("failures.csv"));
  std::string csv((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(csv, Catch::Matchers::Contains("stablemoe"));
}

TEST_CASE("a sweep whose queue cannot be written runs nothing: its waiting workers leave",
          "[sweep][smoke][.slow]") {
  testing::TempDir dir;
  const std::string path = write_sweep(dir, "name: blocked\nseeds: 2\n");
  const std::string in_dir = "cd " + dir.file("") + " && ", moelab = MOELAB_BINARY;
  // Seed 1 alone first, then put back in the queue: any worker that went on would claim it.
  REQUIRE(shell(in_dir + moelab + " sweep " + path + " seeds=1 > out.txt 2>&1") == 0);
  Store store(dir.file("s.db"));
  store.query("UPDATE runs SET status = 'pending'");
  const auto before = store.query("SELECT id, status, worker, started_at FROM runs");
  const auto log_bytes = [&] {  // every worker log of every supervisor of the sweep
    uintmax_t bytes = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.file("results/logs/blocked"))) {
      if (entry.is_regular_file()) bytes += entry.file_size();
    }
    return bytes;
  };
  const auto first_logs = log_bytes();
  REQUIRE(first_logs > 0);
  store.query("CREATE TRIGGER no_new_runs BEFORE INSERT ON runs "
              "BEGIN SELECT RAISE(ABORT, 'no new runs here'); END");
  // Queuing seed 2 fails, so the queue transaction rolls back, and the two workers forked
  // before it leave without claiming anything.
  CHECK(shell(in_dir + "timeout 60 " + moelab + " sweep " + path +
              " --workers 2 > out.txt 2>&1") == 1);
  std::ifstream out(dir.file("out.txt"));
  CHECK_THAT(std::string(std::istreambuf_iterator<char>(out), {}),
             Catch::Matchers::Contains("no new runs here"));
  const auto after = store.query("SELECT id, status, worker, started_at FROM runs");
  REQUIRE(after.rows.size() == 1);
  for (size_t column = 0; column < after.columns.size(); ++column) {
    CHECK(after.rows[0][column].to_string() == before.rows[0][column].to_string());
  }
  CHECK(log_bytes() == first_logs);  // the second supervisor's workers wrote nothing
}

TEST_CASE("Ctrl-C stops a sweep's forked workers cleanly: runs interrupted, then resumed",
          "[sweep][smoke][.slow]") {
  testing::TempDir dir;
  const std::string path = write_resumable_sweep(dir, "ctrlc", 400);
  const std::string moelab = MOELAB_BINARY;
  const pid_t supervisor = start_sweep(dir, path, /*workers=*/2);
  // Both runs running (forked workers of one thread each), past a checkpoint.
  const bool both_running = !first_cell_when_ready(
      dir, "SELECT 1 WHERE (SELECT COUNT(*) FROM runs r WHERE status = 'running' AND EXISTS "
           "(SELECT 1 FROM metrics m WHERE m.run_id = r.id AND m.step >= 20)) = 2").empty();
  REQUIRE(both_running);
  kill(-supervisor, SIGINT);  // Ctrl-C: the whole process group
  int status = 0;
  waitpid(supervisor, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);  // not every run is done
  {
    Store store(dir.file("s.db"));
    auto runs = store.query("SELECT status, error FROM runs ORDER BY id");
    REQUIRE(runs.rows.size() == 2);
    for (const auto& row : runs.rows) {
      CHECK(row[0].text == "interrupted");
      CHECK_THAT(row[1].text, Catch::Matchers::Contains("checkpoint saved"));
    }
  }
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path +
                " --workers 2 > out.txt 2>&1") == 0);
  Store store(dir.file("s.db"));
  CHECK(store.query("PRAGMA integrity_check").rows[0][0].text == "ok");
  CHECK(store.query("SELECT COUNT(*) FROM runs WHERE status = 'done'").rows[0][0].integer == 2);
  auto steps = store.query("SELECT COUNT(*), COUNT(DISTINCT run_id || ':' || step) FROM metrics "
                           "WHERE split = 'train' AND name = 'loss'");
  CHECK(steps.rows[0][0].integer == steps.rows[0][1].integer);  // each step logged once
  CHECK(steps.rows[0][0].integer == 2 * 40);
}

TEST_CASE("a sweep killed with SIGKILL mid-run resumes: every run done exactly once",
          "[sweep][smoke][.slow]") {
  testing::TempDir dir;
  const std::string path = write_resumable_sweep(dir, "killed", 200);
  const std::string moelab = MOELAB_BINARY;
  const pid_t supervisor = start_sweep(dir, path, /*workers=*/1);
  // Wait until the first run has passed a checkpoint, then kill the worker and the supervisor.
  const std::string worker = first_cell_when_ready(
      dir, "SELECT worker FROM runs r WHERE status = 'running' AND EXISTS "
           "(SELECT 1 FROM metrics m WHERE m.run_id = r.id AND m.step >= 20)");
  REQUIRE_FALSE(worker.empty());
  const pid_t worker_pid = static_cast<pid_t>(std::stol(worker.substr(worker.find(':') + 1)));
  kill(supervisor, SIGKILL);
  kill(worker_pid, SIGKILL);
  int status = 0;
  waitpid(supervisor, &status, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    Store store(dir.file("s.db"));
    CHECK(store.query("SELECT COUNT(*) FROM runs WHERE status = 'running'").rows[0][0].integer == 1);
  }
  REQUIRE(shell("cd " + dir.file("") + " && " + moelab + " sweep " + path + " > out.txt 2>&1") == 0);
  Store store(dir.file("s.db"));
  CHECK(store.query("PRAGMA integrity_check").rows[0][0].text == "ok");
  auto runs = store.query("SELECT COUNT(*), SUM(status = 'done') FROM runs");
  CHECK(runs.rows[0][0].integer == 2);
  CHECK(runs.rows[0][1].integer == 2);
  // The resumed run's loss history has each logged step exactly once.
  auto duplicates = store.query("SELECT COUNT(*) FROM (SELECT run_id, step FROM metrics WHERE "
                                "split = 'train' AND name = 'loss' GROUP BY run_id, step "
                                "HAVING COUNT(*) > 1)");
  CHECK(duplicates.rows[0][0].integer == 0);
  CHECK(store.query("SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss'")
            .rows[0][0].integer == 2 * 20);
}

}  // namespace moelab

namespace moelab {

TEST_CASE("the CPU budget: affinity bounded by a cgroup quota, and the sweep's default workers",
          "[sweep][cpus]") {
  CHECK_FALSE(parse_cpu_max("max 100000").has_value());
  CHECK(*parse_cpu_max("150000 100000") == Approx(1.5));
  CHECK(*parse_cpu_max("400000 100000\n") == Approx(4.0));
  CHECK_FALSE(parse_cpu_max("").has_value());
  CHECK_FALSE(parse_cpu_max("lots 100000").has_value());
  CHECK(CpuBudget{8, std::nullopt}.usable() == 8);
  CHECK(CpuBudget{8, 1.5}.usable() == 1);    // a fractional quota rounds down
  CHECK(CpuBudget{2, 4.0}.usable() == 2);    // the quota does not add CPUs
  CHECK(CpuBudget{4, 0.5}.usable() == 1);    // at least one
  CHECK(CpuBudget{2, 4.0}.describe() == "2 CPUs (affinity 2, cgroup quota 4 CPUs)");

  // A sweep without --workers, pinned to one CPU: one worker, and it says so.
  testing::TempDir dir;
  const std::string path = write_sweep(dir, "name: pinned\nbase: {train: {steps: 2}}\nseeds: [0, 1]\n");
  REQUIRE(shell("cd " + dir.file("") + " && taskset -c 0 " + std::string(MOELAB_BINARY) + " sweep " +
                path + " > out.txt 2>&1") == 0);
  const std::string out = testing::read_text(dir.file("out.txt"));
  INFO(out);
  CHECK_THAT(out, Catch::Matchers::Contains("1 worker(s) x 1 thread(s) for 1 CPU (affinity 1"));
}

}  // namespace moelab
