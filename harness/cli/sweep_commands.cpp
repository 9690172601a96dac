// `moelab sweep` (plan, run, status, cancel; local workers or Slurm) and the sweep worker.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "harness/cli/commands.h"
#include "harness/config/config.h"
#include "harness/report/report.h"
#include "harness/report/table.h"
#include "harness/store/store.h"
#include "harness/sweep/dense_parent.h"
#include "harness/sweep/slurm.h"
#include "harness/sweep/sweep_runner.h"
#include "harness/sweep/sweep_worker.h"

namespace moelab {
namespace {

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

}  // namespace

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

}  // namespace moelab
