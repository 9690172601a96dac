// The `moelab` command line: run | list | query | route | bench. Exit codes: 0 ok, 1 a run failed,
// 2 usage or configuration error.
#include <CLI/CLI.hpp>
#include <malloc.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "harness/cli/bench.h"
#include "harness/core/build_info.h"
#include "harness/config/config.h"
#include "harness/report/plots.h"
#include "harness/report/presets.h"
#include "harness/train/provenance.h"
#include "harness/cli/route_command.h"
#include "harness/report/report.h"
#include "harness/report/robustness.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep_runner.h"
#include "harness/report/table.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRunFailed = 1;
constexpr int kExitUsage = 2;

std::string version_text() {
  return fmt::format("moelab {} (git {}{}, LibTorch {})", kVersion, kGitCommit,
                     kGitDirty ? ", dirty" : "", torch_version());
}

QueryResult summary_table(const RunOutcome& outcome) {
  QueryResult table;
  table.columns = {"metric", "value"};
  for (const auto& [name, value] : outcome.summaries) {
    Cell metric{Cell::Type::Text, 0, 0.0, name};
    Cell number{Cell::Type::Real, 0, value, ""};
    table.rows.push_back({metric, number});
  }
  return table;
}

int command_run(const std::string& path, const std::vector<std::string>& overrides,
                bool dump_config, bool resume) {
  RunConfig config = load_run_config(path, overrides);
  if (dump_config) {
    std::cout << canonical_yaml(config);
    return kExitOk;
  }
  install_interrupt_handlers();
  fmt::print(stderr, "moelab: run '{}' (config {}), task {}, router {}, results -> {}\n",
             config.name, config_hash(config).substr(0, 12), config.task.name,
             config.router.name, config.db);
  RunOutcome outcome = execute_run(config, "", resume);
  if (outcome.status != "done") {
    fmt::print(stderr, "moelab: run {} {}: {}\n", outcome.run_id, outcome.status, outcome.error);
    return kExitRunFailed;
  }
  fmt::print("run {} done\n{}", outcome.run_id, format_aligned(summary_table(outcome)));
  return kExitOk;
}

template <class Entry>
void print_plugins(const std::vector<Entry>& entries, bool verbose) {
  for (const auto& entry : entries) {
    fmt::print("{:<16} {}\n", entry.name, entry.summary);
    if (!verbose) continue;
    auto options = entry.make_options();
    for (const auto& row : list_fields(*options)) {
      fmt::print("    {:<16} {:<8} default {:<10} {}{}\n", row.path, row.type,
                 row.value.empty() ? "\"\"" : row.value, row.help,
                 row.rule.empty() ? "" : fmt::format(" [{}]", row.rule));
    }
  }
}

int command_list(const std::string& what, bool verbose) {
  if (what == "routers") {
    print_plugins(router_registry(), verbose);
  } else if (what == "tasks") {
    print_plugins(task_registry(), verbose);
  } else {
    RunConfig defaults;
    for (const auto& row : list_fields(defaults)) {
      fmt::print("{:<28} {:<8} default {:<12} {}{}\n", row.path, row.type,
                 row.value.empty() ? "\"\"" : row.value, row.help,
                 row.rule.empty() ? "" : fmt::format(" [{}]", row.rule));
    }
  }
  return kExitOk;
}

int command_query(const std::string& db, const std::string& sql, bool csv, bool json) {
  if (!std::filesystem::exists(db)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", db));
  }
  Store store(db);
  QueryResult result;
  try {
    result = store.query(sql);
  } catch (const SQLite::Exception& e) {
    throw ConfigError(fmt::format("query failed on '{}': {}", db, e.what()));
  }
  std::cout << (csv ? format_csv(result) : json ? format_json(result) : format_aligned(result));
  return kExitOk;
}

// Runs of the database that have results on `suite`, in id order.
std::vector<int64_t> runs_with_suite(Store& store, const std::string& suite) {
  SQLite::Statement select(store.database(),
                           "SELECT DISTINCT run_id FROM summaries WHERE name LIKE ? ORDER BY run_id");
  select.bind(1, suite + ":%/" + find_suite(suite).suite->metric);
  std::vector<int64_t> runs;
  while (select.executeStep()) runs.push_back(select.getColumn(0).getInt64());
  return runs;
}

int command_report(const std::string& db, ReportRequest request, const std::string& format,
                   const std::string& output) {
  if (!std::filesystem::exists(db)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", db));
  }
  Store store(db);
  const std::string text =
      render_report(report_table(collect_groups(store, request), request), request, format);
  if (output.empty()) {
    std::cout << text;
  } else {
    std::ofstream(output) << text;
    fmt::print(stderr, "report written to {}\n", output);
  }
  return kExitOk;
}

int command_sweep(const std::string& path, const std::vector<std::string>& overrides,
                  bool plan_only, SweepOptions options) {
  const SweepPlan plan = expand_sweep(path, overrides);
  if (plan_only) {
    QueryResult table;
    table.columns = {"#", "config", "axes"};
    const auto runs = queue_order(plan);
    for (size_t i = 0; i < runs.size(); ++i) {
      table.rows.push_back({Cell{Cell::Type::Integer, static_cast<int64_t>(i + 1), 0.0, ""},
                            Cell{Cell::Type::Text, 0, 0.0, runs[i].hash.substr(0, 12)},
                            Cell{Cell::Type::Text, 0, 0.0, runs[i].label}});
    }
    const auto parents = static_cast<size_t>(
        std::count_if(runs.begin(), runs.end(),
                      [](const QueuedRun& run) { return run.label == kDenseParentLabel; }));
    const size_t distinct = runs.size() - parents;
    fmt::print("sweep '{}': {} runs{}{}, all valid\n{}", plan.name, plan.runs.size(),
               distinct != plan.runs.size() ? fmt::format(" ({} distinct)", distinct) : "",
               parents > 0 ? fmt::format(" and {} dense parent(s) they share", parents) : "",
               format_aligned(table));
    return kExitOk;
  }
  options.executable = std::filesystem::read_symlink("/proc/self/exe").string();
  const int code = run_sweep(plan, options);
  ReportRequest request;
  request.sweep = plan.name;
  Store store(plan.runs.front().config.db);
  SQLite::Statement done(store.database(),
                         "SELECT COUNT(*) FROM runs r WHERE r.status = 'done' AND " MOELAB_RUN_IN_SWEEP_SQL);
  done.bind(1, plan.name);
  if (done.executeStep() && done.getColumn(0).getInt64() > 0) {
    const auto groups = collect_groups(store, request);  // the task's main test metric
    std::cout << render_report(report_table(groups, request), request, "text");
  }
  return code == 0 ? kExitOk : kExitRunFailed;
}

int command_robustness(const std::string& db, const std::string& suite, int64_t baseline,
                       std::vector<int64_t> runs, bool csv, bool json) {
  Store store(db);
  if (runs.empty()) runs = runs_with_suite(store, suite);
  QueryResult table = robustness_table(store, suite, baseline, runs);
  std::cout << (csv ? format_csv(table) : json ? format_json(table) : format_aligned(table));
  return kExitOk;
}

int run_cli(int argc, char** argv) {
  CLI::App app{"moelab: compare sparse mixture-of-experts routing strategies"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);

  auto* run = app.add_subcommand("run", "train and evaluate one run config");
  std::string config_path;
  std::vector<std::string> overrides;
  bool dump_config = false, resume = false;
  run->add_option("config", config_path, "run config YAML")->required()->check(CLI::ExistingFile);
  run->add_option("overrides", overrides, "key=value overrides with dotted keys (train.lr=3e-4)");
  run->add_flag("--dump-config", dump_config, "print the fully resolved config and exit");
  run->add_flag("--resume", resume,
                "continue this config's newest unfinished run from its checkpoint");

  auto* list = app.add_subcommand("list", "list routers, tasks or config keys");
  std::string what;
  bool verbose = false;
  list->add_option("what", what, "routers | tasks | config")
      ->required()
      ->check(CLI::IsMember({"routers", "tasks", "config"}));
  list->add_flag("-v,--verbose", verbose, "show every plugin's parameters");

  auto* query = app.add_subcommand("query", "run SQL on a results database");
  std::string db, sql;
  bool csv = false, json = false;
  query->add_option("db", db, "results database")->required();
  std::string preset;
  auto* sql_option = query->add_option("sql", sql, "SQL statement");
  query->add_option("--preset", preset, fmt::format("{}", fmt::join(preset_names(), " | ")))
      ->check(CLI::IsMember(preset_names()))
      ->excludes(sql_option);
  auto* csv_flag = query->add_flag("--csv", csv, "CSV output");
  query->add_flag("--json", json, "JSON output")->excludes(csv_flag);

  auto* route = app.add_subcommand(
      "route", "run a router's decision on logits from a .npy file [T, E] and print JSON");
  RouteRequest route_request;
  route->add_option("--router", route_request.router, "registered router name")->required();
  route->add_option("--logits", route_request.logits_path, "float32 .npy file [T, E]")
      ->required()
      ->check(CLI::ExistingFile);
  route->add_option("options", route_request.options, "router options as key=value (k=1 p=0.5)");
  route->add_flag("--training", route_request.training, "decide as in training (default: eval)");
  route->add_option("--seed", route_request.seed, "run seed (random draws)");
  route->add_option("--step", route_request.step, "training step (SSR's draw, schedules)");

  auto* bench = app.add_subcommand(
      "bench", "performance benchmarks: matmul | routers | sweep | moe | sinkhorn | lm");
  std::string bench_what;
  BenchOptions bench_options;
  bench->add_option("what", bench_what, "matmul | routers | sweep | moe | sinkhorn | lm")
      ->required()
      ->check(CLI::IsMember({"matmul", "routers", "sweep", "moe", "sinkhorn", "lm"}));
  bench->add_option("--device", bench_options.device, "moe, sinkhorn, lm: cpu, cuda or cuda:N");
  bench->add_option("--dim", bench_options.dim, "model width d");
  bench->add_option("--hidden", bench_options.hidden, "expert hidden width");
  bench->add_option("--experts", bench_options.experts, "experts E");
  bench->add_option("--k", bench_options.k, "experts per token k");
  bench->add_option("--logit-std", bench_options.logit_std, "sinkhorn: std of the random logits");
  bench->add_option("--batch", bench_options.batch, "lm: sequences per step");
  bench->add_option("--seq-len", bench_options.seq_len, "lm: tokens per sequence");
  bench->add_option("--depth", bench_options.depth, "lm: blocks");
  bench->add_option("--heads", bench_options.heads, "lm: attention heads");
  bench->add_option("--steps", bench_options.steps, "lm: timed training steps");
  bench->add_option("--python", bench_options.python,
                    "the Python (with torch) that runs the eager PyTorch reference");
  bench->add_flag("--json", bench_options.json, "JSON output");
  bench->add_option("--threads", bench_options.threads, "LibTorch threads");
  bench->add_option("--repeats", bench_options.repeats, "repeats per measurement");
  bench->add_option("--tokens", bench_options.tokens, "tokens T");
  bench->add_option("--sweep", bench_options.sweep_file, "bench sweep: the sweep file to run")
      ->check(CLI::ExistingFile);

  auto* sweep = app.add_subcommand("sweep", "run a sweep file with worker processes (or: sweep plan FILE)");
  std::string sweep_path;
  std::vector<std::string> sweep_overrides;
  SweepOptions sweep_options;
  sweep->add_option("file", sweep_path, "sweep YAML")->check(CLI::ExistingFile);
  sweep->add_option("overrides", sweep_overrides,
                    "key=value for every run, key=a,b adds a grid axis (either replaces the file's axis for "
                    "that key), seeds=N or seeds=a,b sets the seeds");
  sweep->add_option("--workers", sweep_options.workers, "worker processes")->check(CLI::Range(1, 256));
  sweep->add_option("--threads-per-worker", sweep_options.threads_per_worker,
                    "LibTorch threads per worker (default: the config's with 1 worker, else 1)");
  sweep->add_flag("--retry-failed", sweep_options.retry_failed, "run failed and diverged runs again");
  sweep->add_flag("--force", sweep_options.force, "run done runs again (as new runs)");
  sweep->add_option("--stale-after", sweep_options.stale_after_seconds,
                    "seconds without a heartbeat before a running run is requeued");
  auto* sweep_plan = sweep->add_subcommand("plan", "expand and validate, print the runs, run nothing");
  sweep_plan->add_option("file", sweep_path, "sweep YAML")->required()->check(CLI::ExistingFile);
  sweep_plan->add_option("overrides", sweep_overrides, "as for sweep");

  auto* worker = app.add_subcommand("sweep-worker", "");  // started by `moelab sweep`
  worker->group("");
  std::string worker_db, worker_sweep;
  int64_t worker_threads = 1;
  worker->add_option("--db", worker_db)->required();
  worker->add_option("--sweep", worker_sweep)->required();
  worker->add_option("--threads", worker_threads);
  double worker_stale_after = kDefaultStaleSeconds;
  worker->add_option("--stale-after", worker_stale_after);

  auto* report = app.add_subcommand("report", "a metric per group over seeds: mean, std, 95% CI, Welch p");
  ReportRequest report_request;
  std::string report_format = "text", report_output;
  std::string group_by = "router", plot_group_by = "router";
  report->add_option("db", db, "results database")->required();
  report->add_option("--sweep", report_request.sweep, "only this sweep's runs");
  report->add_option("--group-by", group_by, "config keys, comma separated (router = router.name)");
  report->add_option("--metric", report_request.metric,
                     "a summary name (SPLIT/METRIC); default: the runs' main test metric");
  report->add_option("--baseline", report_request.baseline, "the group to test the others against");
  report->add_option("--format", report_format, "text | md | csv | latex | json | html")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json", "html"}));
  report->add_option("-o,--output", report_output, "write to this file instead of stdout");

  auto* plot = app.add_subcommand("plot", "figures with gnuplot (PNG, SVG, data and script)");
  PlotRequest plot_request;
  bool plot_data_only = false;
  plot->add_option("db", db, "results database")->required()->check(CLI::ExistingFile);
  plot->add_option("--kind", plot_request.kind, "curves | corruption | load")
      ->check(CLI::IsMember({"curves", "corruption", "load"}));
  plot->add_option("--sweep", plot_request.sweep, "only this sweep's runs");
  plot->add_option("--group-by", plot_group_by, "config keys, comma separated (router = router.name)");
  plot->add_option("--metric", plot_request.metric,
                   "curves: SPLIT/NAME (e.g. train/loss); default: the runs' main val metric");
  plot->add_option("--suite", plot_request.suite,
                   "corruption: a suite with severities; default: the first declared one");
  plot->add_option("-o,--output-dir", plot_request.output_dir, "folder for the files");
  plot->add_flag("--data-only", plot_data_only, "write data and script, do not run gnuplot");

  auto* robustness = app.add_subcommand(
      "robustness", "corruption error, mCE and relative mCE of runs against a baseline run");
  std::vector<std::string> suite_names;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& suite : task->suites) suite_names.push_back(suite.name);
  }
  std::string robustness_suite = suite_names.empty() ? "" : suite_names.front();
  int64_t baseline_run = 0;
  std::vector<int64_t> robustness_runs;
  bool robustness_csv = false, robustness_json = false;
  robustness->add_option("db", db, "results database")->required()->check(CLI::ExistingFile);
  robustness->add_option("--suite", robustness_suite,
                         fmt::format("a corruption suite: {}", fmt::join(suite_names, " | ")))
      ->check(CLI::IsMember(suite_names));
  robustness->add_option("--baseline", baseline_run, "run id in the AlexNet role")->required();
  robustness->add_option("--runs", robustness_runs, "run ids (default: every run with the suite)")
      ->delimiter(',');
  auto* robustness_csv_flag = robustness->add_flag("--csv", robustness_csv, "CSV output");
  robustness->add_flag("--json", robustness_json, "JSON output")->excludes(robustness_csv_flag);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (*run) return command_run(config_path, overrides, dump_config, resume);
  if (*list) return command_list(what, verbose);
  if (*worker) return sweep_worker(worker_db, worker_sweep, worker_threads, worker_stale_after);
  if (*plot) {
    plot_request.render = !plot_data_only;
    plot_request.group_by = split_keys(plot_group_by);
    Store store(db);
    for (const auto& file : make_plot(store, plot_request)) fmt::print("{}\n", file);
    return kExitOk;
  }
  if (*sweep) {
    if (sweep_path.empty()) throw ConfigError("sweep: a sweep file is needed (moelab sweep FILE)");
    return command_sweep(sweep_path, sweep_overrides, static_cast<bool>(*sweep_plan), sweep_options);
  }
  if (*report) {
    report_request.group_by = split_keys(group_by);
    return command_report(db, report_request, report_format, report_output);
  }
  if (*robustness) {
    return command_robustness(db, robustness_suite, baseline_run, robustness_runs, robustness_csv,
                              robustness_json);
  }
  if (*route) {
    std::cout << route_json(route_request);
    return kExitOk;
  }
  if (*bench) {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    if (bench_what == "sweep") std::cout << bench_sweep_report(bench_options, self);
    if (bench_what == "lm") std::cout << bench_lm_report(bench_options, self);
    if (bench_what == "moe") std::cout << bench_moe_report(bench_options);
    if (bench_what == "sinkhorn") std::cout << bench_sinkhorn_report(bench_options);
    if (bench_what == "matmul") std::cout << bench_matmul_report(bench_options);
    if (bench_what == "routers") std::cout << bench_routers_report(bench_options);
    return kExitOk;
  }
  if (sql.empty() && preset.empty()) throw ConfigError("query: give SQL or --preset");
  return command_query(db, preset.empty() ? sql : preset_sql(preset), csv, json);
}

}  // namespace
}  // namespace moelab

int main(int argc, char** argv) {
  // Keep freed tensor memory in the heap instead of returning it to the OS after every
  // step: LibTorch frees and reallocates the same large buffers each step, and glibc's
  // defaults turn that into page faults (quickstart: 8.6 -> 9.2-9.9 steps/s).
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  try {
    return moelab::run_cli(argc, argv);
  } catch (const moelab::ConfigError& e) {
    fmt::print(stderr, "moelab: error: {}\n", e.what());
    return moelab::kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moelab: error: {}\n", e.what());
    return moelab::kExitRunFailed;
  }
}
