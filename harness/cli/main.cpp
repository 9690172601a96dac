// The `moelab` command line: run | list | query | route | bench. Exit codes: 0 ok, 1 a run failed,
// 2 usage or configuration error.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>

#include "harness/cli/bench.h"
#include "harness/core/blas.h"
#include "harness/core/cpu_memory.h"
#include "harness/core/build_info.h"
#include "harness/core/exception_text.h"
#include "harness/config/config.h"
#include "harness/report/plots.h"
#include "harness/report/presets.h"
#include "harness/train/provenance.h"
#include "harness/cli/route_command.h"
#include "harness/report/report.h"
#include "harness/report/robustness.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "harness/store/transfer.h"
#include "harness/sweep/dense_parent.h"
#include "harness/sweep/slurm.h"
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
  return fmt::format("moelab {} (git {}{}, LibTorch {})\nBLAS: {}", kVersion, kGitCommit,
                     kGitDirty ? ", dirty" : "", torch_version(), blas_description());
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
                bool dump_config, bool resume, double stale_after_seconds) {
  RunConfig config = load_run_config(path, overrides);
  if (dump_config) {
    std::cout << canonical_yaml(config);
    return kExitOk;
  }
  try {
    check_runnable(config);  // before any output or row: exit 2 for what the config got wrong
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", path, e.what()));
  }
  install_interrupt_handlers();
  fmt::print(stderr, "moelab: run '{}' (config {}), task {}, router {}, results -> {}\n",
             config.name, config_hash(config).substr(0, 12), config.task.name,
             config.router.name, config.db);
  RunOutcome outcome = run_alone(config, resume, stale_after_seconds);
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

int command_query(const std::string& db, const std::string& sql, bool write, bool csv, bool json) {
  if (!is_postgres_uri(db) && !std::filesystem::exists(db)) {
    throw ConfigError(fmt::format("results database '{}' does not exist", db));
  }
  const QueryResult result = query_database(db, sql, write);
  std::cout << (csv ? format_csv(result) : json ? format_json(result) : format_aligned(result));
  return kExitOk;
}

// Runs of the database that have results on `suite`, in id order.
// Writes a rendered table to `output`, or to stdout when it is "".
void emit(const std::string& text, const std::string& output) {
  if (output.empty()) {
    std::cout << text;
    return;
  }
  std::ofstream out(output);
  out << text;
  if (!out) throw Error(fmt::format("cannot write '{}'", output));
  fmt::print(stderr, "written to {}\n", output);
}

int command_report(const std::string& db, ReportRequest request, const std::string& format,
                   const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  emit(render_report(report_table(collect_groups(store, request), request), request, format), output);
  return kExitOk;
}

int command_sweep(const std::string& path, const std::vector<std::string>& overrides,
                  const std::vector<std::string>& launcher_settings, bool plan_only,
                  SweepOptions options) {
  const SweepPlan plan = expand_sweep(path, overrides, launcher_settings);
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
  if (plan.launcher.name == "slurm") return submit_slurm_sweep(plan, options);
  options.executable = std::filesystem::read_symlink("/proc/self/exe").string();
  const int code = run_sweep(plan, options);
  ReportRequest request;
  request.sweep = plan.name;
  Store store(plan.runs.front().config.db);
  const auto done = store.query(
      "SELECT COUNT(*) FROM runs r WHERE r.status = 'done' AND " MOELAB_RUN_IN_SWEEP_SQL, {plan.name});
  if (done.rows.at(0)[0].integer > 0) {
    const auto groups = collect_groups(store, request);  // the task's main test metric
    std::cout << render_report(report_table(groups, request), request, "text");
  }
  return code == 0 ? kExitOk : kExitRunFailed;
}

int command_robustness(const std::string& db, RobustnessRequest request, const std::string& format,
                       const std::string& output) {
  Store store(db, Store::Access::ReadOnly);
  const QueryResult table = robustness_report(store, request);
  ReportRequest rendering;
  rendering.group_by = request.group_by;
  rendering.baseline = request.baseline;
  rendering.metric = request.suite.empty()
                         ? std::string("robustness to attacks")
                         : fmt::format("robustness on {}{}", request.suite,
                                       request.by.empty() ? "" : " by " + request.by);
  emit(render_report(table, rendering, format), output);
  return kExitOk;
}

// Each subcommand registers its options and, once parsed, sets `command` to its work; the
// option values live in a shared struct the work reads after parsing.
using Command = std::function<int()>;

void add_run_command(CLI::App& app, Command& command) {
  struct Args {
    std::string config_path;
    std::vector<std::string> overrides;
    bool dump_config = false, resume = false;
    double stale_after = kDefaultStaleSeconds;
  };
  auto args = std::make_shared<Args>();
  auto* run = app.add_subcommand("run", "train and evaluate one run config");
  run->add_option("config", args->config_path, "run config YAML")->required()->check(CLI::ExistingFile);
  run->add_option("overrides", args->overrides, "key=value overrides with dotted keys (train.lr=3e-4)");
  run->add_flag("--dump-config", args->dump_config, "print the fully resolved config and exit");
  run->add_flag("--resume", args->resume,
                "continue this config's newest unfinished run from its checkpoint");
  run->add_option("--stale-after", args->stale_after,
                  "seconds without a heartbeat before a dense parent that another process "
                  "trains is taken over (>= 30)")
      ->check(CLI::Range(30.0, 1e9));
  run->callback([args, &command] {
    command = [args] {
      return command_run(args->config_path, args->overrides, args->dump_config, args->resume,
                         args->stale_after);
    };
  });
}

void add_list_command(CLI::App& app, Command& command) {
  struct Args {
    std::string what;
    bool verbose = false;
  };
  auto args = std::make_shared<Args>();
  auto* list = app.add_subcommand("list", "list routers, tasks or config keys");
  list->add_option("what", args->what, "routers | tasks | config")
      ->required()
      ->check(CLI::IsMember({"routers", "tasks", "config"}));
  list->add_flag("-v,--verbose", args->verbose, "show every plugin's parameters");
  list->callback([args, &command] { command = [args] { return command_list(args->what, args->verbose); }; });
}

void add_query_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, sql, preset;
    bool write = false, csv = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* query = app.add_subcommand("query", "run SQL on a results database");
  query->add_option("db", args->db, "results database")->required();
  auto* sql_option = query->add_option("sql", args->sql, "SQL statement");
  query->add_option("--preset", args->preset, fmt::format("{}", fmt::join(preset_names(), " | ")))
      ->check(CLI::IsMember(preset_names()))
      ->excludes(sql_option);
  query->add_flag("--write", args->write,
                  "open the database for writing (default: read-only, no change possible)");
  auto* csv_flag = query->add_flag("--csv", args->csv, "CSV output");
  query->add_flag("--json", args->json, "JSON output")->excludes(csv_flag);
  query->callback([args, &command] {
    command = [args] {
      if (args->sql.empty() && args->preset.empty()) throw ConfigError("query: give SQL or --preset");
      return command_query(args->db, args->preset.empty() ? args->sql : preset_sql(args->preset),
                           args->write, args->csv, args->json);
    };
  });
}

void add_route_command(CLI::App& app, Command& command) {
  auto request = std::make_shared<RouteRequest>();
  auto* route = app.add_subcommand(
      "route", "run a router's decision on logits from a .npy file [T, E] and print JSON");
  route->add_option("--router", request->router, "registered router name")->required();
  route->add_option("--logits", request->logits_path, "float32 .npy file [T, E]")
      ->required()
      ->check(CLI::ExistingFile);
  route->add_option("options", request->options, "router options as key=value (k=1 p=0.5)");
  route->add_flag("--training", request->training, "decide as in training (default: eval)");
  route->add_option("--seed", request->seed, "run seed (random draws)");
  route->add_option("--step", request->step, "training step (SSR's draw, schedules)");
  route->callback([request, &command] {
    command = [request] {
      std::cout << route_json(*request);
      return kExitOk;
    };
  });
}

void add_bench_command(CLI::App& app, Command& command) {
  struct Args {
    std::string what;
    BenchOptions options;
  };
  auto args = std::make_shared<Args>();
  BenchOptions& options = args->options;
  auto* bench = app.add_subcommand(
      "bench", "performance benchmarks: matmul | routers | sweep | moe | sinkhorn | lm | image | store");
  bench->add_option("what", args->what, "matmul | routers | sweep | moe | sinkhorn | lm | image | store")
      ->required()
      ->check(CLI::IsMember({"matmul", "routers", "sweep", "moe", "sinkhorn", "lm", "image", "store"}));
  bench->add_option("--device", options.device, "moe, sinkhorn, lm: cpu, cuda or cuda:N");
  bench->add_option("--dim", options.dim, "model width d");
  bench->add_option("--hidden", options.hidden, "expert hidden width");
  bench->add_option("--experts", options.experts, "experts E");
  bench->add_option("--k", options.k, "experts per token k");
  bench->add_option("--logit-std", options.logit_std, "sinkhorn: std of the random logits");
  bench->add_option("--batch", options.batch, "lm: sequences per step");
  bench->add_option("--seq-len", options.seq_len, "lm: tokens per sequence");
  bench->add_option("--depth", options.depth, "lm: blocks");
  bench->add_option("--heads", options.heads, "lm: attention heads");
  bench->add_option("--steps", options.steps, "lm, image: timed training steps per round")
      ->check(CLI::Range(1, 1000000));
  bench->add_option("--python", options.python,
                    "the Python (with torch) that runs the eager PyTorch reference");
  bench->add_flag("--json", options.json, "JSON output");
  bench->add_option("--threads", options.threads, "LibTorch threads");
  bench->add_option("--repeats", options.repeats, "repeats per measurement (lm, image: rounds)")
      ->check(CLI::Range(1, 1000000));
  bench->add_option("--tokens", options.tokens, "tokens T");
  bench->add_option("--postgres", options.postgres,
                    "store: an existing PostgreSQL database (URI) to measure beside SQLite");
  bench->add_option("--runs", options.store_runs, "store: runs queued per measurement")->check(CLI::Range(1, 100000));
  bench->add_option("--sweep", options.sweep_file, "bench sweep: the sweep file to run")
      ->check(CLI::ExistingFile);
  bench->callback([args, &command] {
    command = [args] {
      const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
      const BenchOptions& options = args->options;
      const std::string& what = args->what;
      if (what == "sweep") std::cout << bench_sweep_report(options, self);
      if (what == "store") std::cout << bench_store_report(options, self);
      if (what == "lm") std::cout << bench_lm_report(options, self);
      if (what == "image") std::cout << bench_image_report(options, self);
      if (what == "moe") std::cout << bench_moe_report(options);
      if (what == "sinkhorn") std::cout << bench_sinkhorn_report(options);
      if (what == "matmul") std::cout << bench_matmul_report(options);
      if (what == "routers") std::cout << bench_routers_report(options);
      fmt::print(options.json ? stderr : stdout,
                 "peak resident memory: {:.0f} MB this process, {:.0f} MB its largest child\n",
                 peak_resident_mb(), peak_child_resident_mb());
      return kExitOk;
    };
  });
}

void add_sweep_commands(CLI::App& app, Command& command) {
  struct Args {
    std::string path;
    std::vector<std::string> overrides, launcher_settings;
    SweepOptions options;
  };
  auto args = std::make_shared<Args>();
  auto* sweep = app.add_subcommand("sweep", "run a sweep file with worker processes (or: sweep plan FILE)");
  sweep->add_option("file", args->path, "sweep YAML")->check(CLI::ExistingFile);
  sweep->add_option("overrides", args->overrides,
                    "key=value for every run, key=a,b adds a grid axis (either replaces the file's axis for "
                    "that key), seeds=N or seeds=a,b sets the seeds");
  sweep->add_option("--workers", args->options.workers,
                    "worker processes (default: one per CPU this process may use, affinity and "
                    "cgroup quota counted, at most one per run)")
      ->check(CLI::Range(1, 256));
  sweep->add_option("--threads-per-worker", args->options.threads_per_worker,
                    "LibTorch threads per worker (default: the config's with --workers 1, else 1)")
      ->check(CLI::Range(1, 1024));
  sweep->add_flag("--retry-failed", args->options.retry_failed, "run failed and diverged runs again");
  sweep->add_flag("--force", args->options.force, "run done runs again (as new runs)");
  sweep->add_option("--stale-after", args->options.stale_after_seconds,
                    "seconds without a heartbeat before a running run is requeued (>= 30: the "
                    "heartbeat comes every 10 s)")
      ->check(CLI::Range(30.0, 1e9));
  // Launcher settings: over the sweep file's `launcher:` section (harness/sweep/launcher.h).
  const auto launcher_setting = [&](const std::string& flag, const std::string& key, const std::string& help) {
    sweep->add_option_function<std::string>(
        flag, [args, key](const std::string& value) { args->launcher_settings.push_back(key + "=" + value); },
        help);
  };
  launcher_setting("--launcher", "name", "local (worker processes here, the default) | slurm (one job array)");
  launcher_setting("--partition", "partition", "slurm: sbatch --partition");
  launcher_setting("--time", "time", "slurm: time limit per array task (sbatch --time, e.g. 04:00:00)");
  launcher_setting("--gres", "gres", "slurm: generic resources per array task (e.g. gpu:1)");
  launcher_setting("--cpus-per-task", "cpus_per_task", "slurm: CPUs per array task (the worker's threads)");
  launcher_setting("--mem", "mem", "slurm: memory per array task (sbatch --mem, e.g. 16G)");
  launcher_setting("--array-tasks", "array_tasks", "slurm: array tasks, one worker each (default: one per run)");
  launcher_setting("--array-parallel", "array_parallel", "slurm: at most this many array tasks at once");
  launcher_setting("--signal-seconds", "signal_seconds",
                   "slurm: seconds before the time limit to checkpoint and requeue (default 120)");
  launcher_setting("--sbatch-args", "sbatch_args", "slurm: more sbatch flags, space-separated");
  auto* plan = sweep->add_subcommand("plan", "expand and validate, print the runs, run nothing");
  plan->add_option("file", args->path, "sweep YAML")->required()->check(CLI::ExistingFile);
  plan->add_option("overrides", args->overrides, "as for sweep");
  auto* status = sweep->add_subcommand("status", "a sweep's runs by state beside its Slurm jobs");
  status->add_option("file", args->path, "sweep YAML")->required()->check(CLI::ExistingFile);
  status->add_option("overrides", args->overrides, "as for sweep (db=... names the database)");
  auto* cancel = sweep->add_subcommand(
      "cancel", "cancel a sweep's Slurm jobs and put the runs they held back to pending");
  cancel->add_option("file", args->path, "sweep YAML")->required()->check(CLI::ExistingFile);
  cancel->add_option("overrides", args->overrides, "as for sweep");
  status->callback([args, &command] {
    command = [args] { return slurm_sweep_status(expand_sweep(args->path, args->overrides)); };
  });
  cancel->callback([args, &command] {
    command = [args] { return slurm_sweep_cancel(expand_sweep(args->path, args->overrides)); };
  });
  sweep->callback([args, plan, status, cancel, &command] {
    if (status->parsed() || cancel->parsed()) return;
    command = [args, plan] {
      if (args->path.empty()) throw ConfigError("sweep: a sweep file is needed (moelab sweep FILE)");
      return command_sweep(args->path, args->overrides, args->launcher_settings, plan->parsed(),
                           args->options);
    };
  });

  struct WorkerArgs {
    std::string db, sweep;
    WorkerOptions options;
  };
  auto worker_args = std::make_shared<WorkerArgs>();
  auto* worker = app.add_subcommand("sweep-worker", "");  // started by `moelab sweep`
  worker->group("");
  worker->add_option("--db", worker_args->db)->required();
  worker->add_option("--sweep", worker_args->sweep)->required();
  worker->add_option("--threads", worker_args->options.threads);
  worker->add_option("--stale-after", worker_args->options.stale_after_seconds);
  worker->add_flag("--scheduled", worker_args->options.scheduled);
  worker->callback([worker_args, &command] {
    command = [worker_args] {
      return sweep_worker(worker_args->db, worker_args->sweep, worker_args->options);
    };
  });
}

void add_report_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, format = "text", output, group_by = "router";
    ReportRequest request;
  };
  auto args = std::make_shared<Args>();
  auto* report = app.add_subcommand("report", "a metric per group over seeds: mean, std, 95% CI, Welch p");
  report->add_option("db", args->db, "results database")->required();
  report->add_option("--sweep", args->request.sweep, "only this sweep's runs");
  report->add_option("--group-by", args->group_by, "config keys, comma separated (router = router.name)");
  report->add_option("--metric", args->request.metric,
                     "a summary name (SPLIT/METRIC); default: the runs' main test metric");
  report->add_option("--baseline", args->request.baseline, "the group to test the others against");
  report->add_option("--format", args->format, "text | md | csv | latex | json | html")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json", "html"}));
  report->add_option("-o,--output", args->output, "write to this file instead of stdout");
  report->callback([args, &command] {
    command = [args] {
      args->request.group_by = split_keys(args->group_by);
      return command_report(args->db, args->request, args->format, args->output);
    };
  });
}

void add_plot_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, group_by = "router";
    bool data_only = false;
    PlotRequest request;
  };
  auto args = std::make_shared<Args>();
  PlotRequest& request = args->request;
  auto* plot = app.add_subcommand("plot", "figures with gnuplot (PNG, SVG, data and script)");
  plot->add_option("db", args->db, "results database")->required();
  plot->add_option("--kind", request.kind, "curves | corruption | load | shares")
      ->check(CLI::IsMember({"curves", "corruption", "load", "shares"}));
  plot->add_option("--sweep", request.sweep, "only this sweep's runs");
  plot->add_option("--group-by", args->group_by, "config keys, comma separated (router = router.name)");
  plot->add_option("--metric", request.metric,
                   "curves: SPLIT/NAME (e.g. train/loss); default: the runs' main val metric. "
                   "load: a per-layer routing metric; default: load_max_over_mean");
  plot->add_option("--suite", request.suite,
                   "corruption: a suite with severities; default: the first declared one");
  plot->add_option("-o,--output-dir", request.output_dir, "folder for the files");
  plot->add_flag("--data-only", args->data_only, "write data and script, do not run gnuplot");
  plot->callback([args, &command] {
    command = [args] {
      args->request.render = !args->data_only;
      args->request.group_by = split_keys(args->group_by);
      Store store(args->db, Store::Access::ReadOnly);
      for (const auto& file : make_plot(store, args->request)) fmt::print("{}\n", file);
      return kExitOk;
    };
  });
}

void add_robustness_command(CLI::App& app, Command& command) {
  struct Args {
    std::string db, format = "text", output, group_by = "router";
    RobustnessRequest request;
  };
  auto args = std::make_shared<Args>();
  std::vector<std::string> suites;
  for (const TaskMetrics* task : all_task_metrics()) {
    for (const auto& suite : task->suites) suites.push_back(suite.name);
  }
  auto* robustness = app.add_subcommand(
      "robustness",
      "per group over seeds: clean error, corruption error, mCE, relative mCE, robust accuracy "
      "per attack (mean, 95% CI, Welch p against the baseline group)");
  robustness->add_option("db", args->db, "results database")->required();
  robustness->add_option("--sweep", args->request.sweep, "only this sweep's runs");
  robustness->add_option("--group-by", args->group_by,
                         "config keys, comma separated (router = router.name)");
  robustness->add_option("--suite", args->request.suite,
                         fmt::format("a corruption suite: {} (default: the one the runs have)",
                                     fmt::join(suites, " | ")))
      ->check(CLI::IsMember(suites));
  robustness->add_option("--baseline", args->request.baseline,
                         "the group in AlexNet's role (its errors averaged over its seeds); "
                         "default: the first group");
  robustness->add_option("--by", args->request.by,
                         "break down per corruption (error, CE) or per severity (error)")
      ->check(CLI::IsMember({"corruption", "severity"}));
  robustness->add_option("--format", args->format, "text | md | csv | latex | json | html")
      ->check(CLI::IsMember({"text", "md", "csv", "latex", "json", "html"}));
  robustness->add_option("-o,--output", args->output, "write to this file instead of stdout");
  robustness->callback([args, &command] {
    command = [args] {
      args->request.group_by = split_keys(args->group_by);
      return command_robustness(args->db, args->request, args->format, args->output);
    };
  });
}

void add_db_commands(CLI::App& app, Command& command) {
  auto* db = app.add_subcommand("db", "move results between databases: copy | merge");
  db->require_subcommand(1);
  struct CopyArgs {
    std::string source, destination;
  };
  auto copy_args = std::make_shared<CopyArgs>();
  auto* copy = db->add_subcommand("copy", "every run, with its id, into an empty database");
  copy->add_option("source", copy_args->source, "results database to read")->required();
  copy->add_option("destination", copy_args->destination, "database to create or fill (no runs yet)")
      ->required();
  copy->callback([copy_args, &command] {
    command = [copy_args] {
      const int64_t runs = copy_database(copy_args->source, copy_args->destination);
      fmt::print("copied {} run(s) from {} to {}\n", runs, copy_args->source, copy_args->destination);
      return kExitOk;
    };
  });
  struct MergeArgs {
    std::vector<std::string> inputs;
    std::string output;
  };
  auto merge_args = std::make_shared<MergeArgs>();
  auto* merge = db->add_subcommand(
      "merge", "runs from several databases into one: a done run whose config hash is already "
               "there done is kept once, differing summaries are reported as conflicts");
  merge->add_option("inputs", merge_args->inputs, "results databases to read, in order")->required();
  merge->add_option("-o,--output", merge_args->output, "database to create or add to")->required();
  merge->callback([merge_args, &command] {
    command = [merge_args] {
      std::cout << merge_databases(merge_args->inputs, merge_args->output).text();
      return kExitOk;
    };
  });
}

// CLI11 would call an unknown first word an unexpected argument: name it, and the nearest command.
void check_command_name(const CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](const CLI::App* candidate) {
         return !candidate->get_group().empty();
       })) {
    names.push_back(sub->get_name());
  }
  if (std::find(names.begin(), names.end(), word) != names.end() || word == "sweep-worker") return;
  const std::string hint = nearest_name(word, names);
  throw ConfigError(fmt::format("unknown command '{}'{}; commands: {}", word,
                                hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                                fmt::join(names, ", ")));
}

int run_cli(int argc, char** argv) {
  CLI::App app{"moelab: compare sparse mixture-of-experts routing strategies"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);
  Command command;
  add_run_command(app, command);
  add_list_command(app, command);
  add_query_command(app, command);
  add_route_command(app, command);
  add_bench_command(app, command);
  add_sweep_commands(app, command);
  add_report_command(app, command);
  add_plot_command(app, command);
  add_robustness_command(app, command);
  add_db_commands(app, command);
  if (argc > 1 && argv[1][0] != '-') check_command_name(app, argv[1]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  return command();
}

}  // namespace
}  // namespace moelab

int main(int argc, char** argv) {
  moelab::select_blas_kernels(argv);  // before anything else: may start this program again
  moelab::configure_cpu_memory();
  try {
    return moelab::run_cli(argc, argv);
  } catch (const moelab::ConfigError& e) {
    fmt::print(stderr, "moelab: error: {}\n", e.what());
    return moelab::kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moelab: error: {}\n", moelab::exception_text(e));
    return moelab::kExitRunFailed;
  }
}
