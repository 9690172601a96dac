// The Slurm launcher: checks, the batch script, sbatch / squeue / scancel.
#include "harness/sweep/slurm.h"

#include <fmt/format.h>
#include <sys/statfs.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness/core/parse.h"
#include "harness/core/subprocess.h"
#include "harness/sweep/sweep_worker.h"

namespace moelab {
namespace {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::vector<std::string> blank_separated(const std::string& text) {
  std::vector<std::string> words;
  for (const std::string& part : split_text(text, ' ')) {
    if (!part.empty()) words.push_back(part);
  }
  return words;
}

const std::string& database_of(const SweepPlan& plan) { return plan.runs.front().config.db; }

// Where the sweep's batch scripts and task logs go: results/slurm/<sweep>/, absolute.
std::string slurm_folder(const SweepPlan& plan) {
  return (std::filesystem::absolute("results/slurm") / plan.name).string();
}

std::string moelab_binary(const LauncherOptions& launcher) {
  return launcher.moelab.empty() ? std::filesystem::read_symlink("/proc/self/exe").string()
                                 : launcher.moelab;
}

// SQLite is shared by the workers of one machine only, through its local disk.
void check_database_for_cluster(const std::string& db) {
  if (is_postgres_uri(db)) return;
  const std::string kind = network_filesystem_of(db);
  if (kind.empty()) return;
  throw ConfigError(fmt::format(
      "results database '{}' is an SQLite file on a network filesystem ({}): workers cannot share "
      "it safely there (SQLite's WAL needs shared memory between them, and file locks over a "
      "network filesystem are unreliable). Use a PostgreSQL database (db=postgresql://user@host/"
      "name, docs/cluster.md), or an SQLite file on this node's local disk",
      db, kind));
}

// The sweep's name goes into job names, file names and the batch script.
void check_sweep_name(const std::string& name) {
  const bool plain = !name.empty() && name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789._-") == std::string::npos;
  if (!plain) {
    throw ConfigError(fmt::format("sweep name '{}': --launcher slurm needs a name of letters, digits, "
                                  "'.', '_' and '-' (the sweep file's `name:`)",
                                  name));
  }
}

// This node's name as Slurm knows it: the host name without its domain.
std::string short_host_name() {
  const std::string host = host_name();
  return host.substr(0, host.find('.'));
}

void require_program(const std::string& name) {
  if (!find_program(name).empty()) return;
  throw ConfigError(fmt::format("{} is not on PATH: --launcher slurm needs the Slurm client "
                                "commands (a login node of the cluster; Debian: slurm-client). "
                                "--launcher local runs the sweep on this machine",
                                name));
}

// Now in UTC as 20261201-153215, for script names.
std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y%m%d-%H%M%S", &utc);
  return text;
}

// Writes the batch script (executable) and returns its path.
std::string write_script(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  out << text;
  if (!out.flush()) throw Error(fmt::format("cannot write the batch script '{}'", path));
  std::filesystem::permissions(path, std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
  return path;
}

// sbatch ARGS SCRIPT; ConfigError with Slurm's own message when it refuses.
std::string sbatch(const std::vector<std::string>& flags, const std::string& script) {
  std::vector<std::string> argv = {"sbatch"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.push_back(script);
  const CommandResult result = run_command(argv);
  if (result.exit_code != 0) {
    throw ConfigError(fmt::format("Slurm refused the sweep's job ({}): {}", script, trim_end(result.output)));
  }
  return trim_end(result.output);
}

}  // namespace

std::string network_filesystem_kind(unsigned long magic) {
  switch (magic) {
    case 0x6969: return "nfs";
    case 0xFF534D42: return "cifs";
    case 0xFE534D42: return "smb2";
    case 0x517B: return "smb";
    case 0x0BD00BD0: return "lustre";
    case 0x47504653: return "gpfs";
    case 0x19830326: return "beegfs";
    case 0x00C36400: return "ceph";
    case 0x65735546: return "fuse";
    case 0x013111A8: return "ibrix";
    case 0x6B414653: return "afs";
    case 0x73757245: return "coda";
    case 0x564C: return "ncp";
    default: return "";
  }
}

std::string network_filesystem_of(const std::string& path) {
  std::filesystem::path folder = std::filesystem::absolute(path);
  while (!std::filesystem::exists(folder) && folder.has_parent_path() && folder != folder.parent_path()) {
    folder = folder.parent_path();
  }
  struct statfs info {};
  if (statfs(folder.c_str(), &info) != 0) return "";
  return network_filesystem_kind(static_cast<unsigned long>(info.f_type));
}

std::string slurm_batch_script(const SweepPlan& plan, const SweepOptions& options, int64_t tasks,
                               const std::string& log_folder) {
  const LauncherOptions& l = plan.launcher;
  const std::string db = database_of(plan);
  std::string directives;
  const auto directive = [&](const std::string& flag) { directives += "#SBATCH " + flag + "\n"; };
  directive("--job-name=moelab-" + plan.name);
  directive(fmt::format("--array=1-{}{}", tasks, l.array_parallel > 0 ? fmt::format("%{}", l.array_parallel) : ""));
  directive(fmt::format("--cpus-per-task={}", l.cpus_per_task));
  directive("--ntasks=1");
  if (!l.partition.empty()) directive("--partition=" + l.partition);
  if (!l.time.empty()) directive("--time=" + l.time);
  if (!l.gres.empty()) directive("--gres=" + l.gres);
  if (!l.mem.empty()) directive("--mem=" + l.mem);
  // SQLite: every task on this node, the one whose local disk holds the file.
  if (!is_postgres_uri(db)) directive("--nodelist=" + short_host_name());
  directive(fmt::format("--signal=B:USR1@{}", l.signal_seconds));
  directive("--requeue");
  directive("--open-mode=append");
  directive(fmt::format("--output=\"{}/task-%A_%a.out\"", log_folder));
  directive(fmt::format("--chdir=\"{}\"", std::filesystem::current_path().string()));
  for (const std::string& flag : blank_separated(l.sbatch_args)) directive(flag);
  return fmt::format(R"(#!/bin/bash
# moelab sweep '{name}' on Slurm, written by `moelab sweep --launcher slurm`. Each array task is
# one worker that claims runs from the results database until the queue is empty, waiting
# while other tasks' runs are still running (and taking over those of dead tasks).
# Before the time limit Slurm sends SIGUSR1: the worker checkpoints its run, puts it back in
# the queue and exits {requeue}, and this task is requeued to carry on later.
{directives}set -u
# Signals are forwarded to the worker; the traps are set before it starts. The worker starts
# with SIGUSR1 ignored until it installs its own handler: a warning in its first moments is
# dropped instead of killing it.
worker=""
trap '[ -n "$worker" ] && kill -USR1 "$worker" 2>/dev/null' USR1
trap '[ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null' TERM
(trap '' USR1; exec {moelab} sweep-worker --db {db} --sweep {sweep} --threads {threads} --stale-after {stale} --scheduled) &
worker=$!
while kill -0 "$worker" 2>/dev/null; do
  wait "$worker"  # returns early when a trapped signal arrives
done
wait "$worker"
status=$?
if [ "$status" -eq {requeue} ]; then
  echo "moelab: time limit near: requeueing task ${{SLURM_ARRAY_JOB_ID:-}}_${{SLURM_ARRAY_TASK_ID:-}}"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
)",
                     fmt::arg("name", plan.name), fmt::arg("requeue", kExitRequeue),
                     fmt::arg("directives", directives), fmt::arg("moelab", shell_quote(moelab_binary(l))),
                     fmt::arg("db", shell_quote(db)), fmt::arg("sweep", shell_quote(plan.name)),
                     fmt::arg("threads", l.cpus_per_task),
                     fmt::arg("stale", fmt::format("{}", options.stale_after_seconds)));
}

int submit_slurm_sweep(const SweepPlan& plan, const SweepOptions& options) {
  check_sweep_name(plan.name);
  require_program("sbatch");
  check_database_for_cluster(database_of(plan));
  const std::string folder = slurm_folder(plan);
  const std::string script = folder + "/submit-" + timestamp() + ".sbatch";
  const int64_t planned = static_cast<int64_t>(queue_order(plan).size());
  const auto tasks_for = [&](int64_t runs) {
    return plan.launcher.array_tasks > 0 ? std::min(plan.launcher.array_tasks, runs) : runs;
  };
  Store store(database_of(plan));  // reachable, credentials accepted, schema current
  // Slurm checks the job (partition, limits, resources) before anything is queued.
  write_script(script, slurm_batch_script(plan, options, tasks_for(planned), folder));
  try {
    sbatch({"--test-only"}, script);
  } catch (const ConfigError&) {
    std::filesystem::remove(script);
    throw;
  }
  const QueueCounts queued = enqueue_sweep(store, plan, options);
  const int64_t to_do = sweep_counts(store, plan.name).pending;
  if (to_do == 0) {
    std::filesystem::remove(script);
    fmt::print(stderr, "sweep '{}': nothing to do ({} done, {} running); no job submitted\n",
               plan.name, queued.done, queued.running);
    return 0;
  }
  write_script(script, slurm_batch_script(plan, options, tasks_for(to_do), folder));
  const std::string job = split_text(sbatch({"--parsable"}, script), ';').at(0);
  store.record_launch(plan.name, {"slurm", job, script, ""});
  fmt::print(stderr,
             "sweep '{}': {} run(s) to do, submitted as Slurm job {} ({} array task(s) x {} CPU(s))\n"
             "  batch script: {}\n  task logs:    {}/task-{}_*.out\n"
             "  follow with `moelab sweep status FILE`, stop with `moelab sweep cancel FILE`\n",
             plan.name, to_do, job, tasks_for(to_do), plan.launcher.cpus_per_task, script, folder, job);
  return 0;
}

namespace {

void print_running_runs(Store& store, const std::string& sweep) {
  const auto rows = store.query(fmt::format("SELECT id, worker, {}, axes FROM runs WHERE sweep = ? "
                                            "AND status = 'running' ORDER BY id",
                                            store.seconds_since("heartbeat_at")),
                                {sweep});
  for (const auto& row : rows.rows) {
    fmt::print("  run {} [{}] on {}, last heartbeat {:.0f} s ago\n", row[0].integer, row[3].text,
               row[1].text, row[2].number());
  }
}

// squeue's rows for a job array (every task, ended ones while Slurm still lists them).
std::string squeue_rows(const std::string& job) {
  const CommandResult result =
      run_command({"squeue", "--noheader", "--states=all", "--jobs=" + job, "--format=%i %T %M %N %r"});
  const std::string rows = trim_end(result.output);
  if (result.exit_code != 0 || rows.empty()) return "ended (no longer listed by squeue)";
  return rows;
}

}  // namespace

int slurm_sweep_status(const SweepPlan& plan) {
  Store store(database_of(plan), Store::Access::ReadOnly);
  const QueueCounts c = sweep_counts(store, plan.name);
  fmt::print("sweep '{}' in {}: {} done | {} running | {} pending | {} failed | {} diverged | {} "
             "interrupted\n",
             plan.name, database_of(plan), c.done, c.running, c.pending, c.failed, c.diverged,
             c.interrupted);
  print_running_runs(store, plan.name);
  const auto launches = store.launches(plan.name);
  if (launches.empty()) {
    fmt::print("no Slurm job was submitted for this sweep\n");
    return 0;
  }
  const bool squeue = !find_program("squeue").empty();
  for (const Launch& launch : launches) {
    fmt::print("Slurm job {} (submitted {}, {}):\n", launch.job_id, launch.submitted_at, launch.script);
    const std::string rows = squeue ? squeue_rows(launch.job_id) : "squeue is not on PATH";
    for (const std::string& line : split_text(rows, '\n')) fmt::print("  {}\n", line);
  }
  return 0;
}

int slurm_sweep_cancel(const SweepPlan& plan) {
  require_program("scancel");
  Store store(database_of(plan));
  const auto launches = store.launches(plan.name);
  std::vector<std::string> jobs;
  for (const Launch& launch : launches) jobs.push_back(launch.job_id);
  if (jobs.empty()) throw ConfigError(fmt::format("sweep '{}': no Slurm job was submitted for it", plan.name));
  std::vector<std::string> argv = {"scancel"};
  argv.insert(argv.end(), jobs.begin(), jobs.end());
  const CommandResult cancelled = run_command(argv);
  if (cancelled.exit_code != 0) fmt::print(stderr, "scancel: {}\n", trim_end(cancelled.output));
  // The workers checkpoint and give their runs back on SIGTERM; wait for them to end.
  const std::string list = fmt::format("--jobs={}", fmt::join(jobs, ","));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  const auto jobs_active = [&] {
    const CommandResult active = run_command({"squeue", "--noheader", list, "--format=%i"});
    return active.exit_code == 0 && !trim_end(active.output).empty();
  };
  while (jobs_active()) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(fmt::format("sweep '{}': Slurm job(s) {} still listed 180 s after scancel; their "
                              "runs were left as they are (run `moelab sweep cancel` again once "
                              "squeue no longer lists them)",
                              plan.name, fmt::join(jobs, ", ")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  // Every running run of the sweep: its jobs' workers are gone (a local worker of the same
  // sweep loses its run too, and finds it pending).
  const int64_t requeued = store.requeue_sweep(plan.name, RunStatus::Running) +
                           store.requeue_sweep(plan.name, RunStatus::Interrupted);
  const QueueCounts c = sweep_counts(store, plan.name);
  fmt::print("sweep '{}': cancelled Slurm job(s) {}; {} run(s) put back to pending; now {} done, "
             "{} pending\n",
             plan.name, fmt::join(jobs, ", "), requeued, c.done, c.pending);
  return 0;
}

}  // namespace moelab
