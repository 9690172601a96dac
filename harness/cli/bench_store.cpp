// `moelab bench store`: the results store under concurrent workers, SQLite beside PostgreSQL in
// one invocation (claim latency, metric-logging throughput, with 1 and 4 worker processes),
// and the overhead of a smoke sweep through Slurm against local workers.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness/cli/bench.h"
#include "harness/core/subprocess.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep.h"
#include "harness/sweep/sweep_runner.h"

namespace moelab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What the workers of one measurement did.
struct StoreTiming {
  std::vector<double> claim_seconds;  // each claim, every worker
  std::vector<double> batch_seconds;  // each metric batch, every worker
  double wall = 0;
  int64_t rows = 0;
};

constexpr int64_t kBatchesPerRun = 5, kRowsPerBatch = 20;

// One worker: claims until the queue is empty; per run, kBatchesPerRun metric batches and the
// run's end. Writes "claim S" and "batch S" lines to `out`.
void store_worker(const std::string& db, const std::string& sweep, const std::string& out) {
  Store store(db);
  std::ofstream log(out);
  const std::string id = worker_id();
  while (true) {
    const auto start = Clock::now();
    const auto claimed = store.claim_run(sweep, id);
    log << "claim " << seconds_since(start) << "\n";
    if (!claimed) break;
    for (int64_t batch = 0; batch < kBatchesPerRun; ++batch) {
      std::vector<MetricRow> rows;
      for (int64_t i = 0; i < kRowsPerBatch; ++i) rows.push_back({batch, "train", fmt::format("m{}", i), 0.5 * i});
      const auto logged = Clock::now();
      store.log_metrics(claimed->run_id, rows);
      log << "batch " << seconds_since(logged) << "\n";
    }
    store.finish_run(claimed->run_id, "done", {{"test/accuracy", 0.5}});
  }
}

StoreTiming time_store(const std::string& db, const std::string& sweep, int64_t workers, int64_t runs,
                       const std::filesystem::path& dir) {
  {
    Store store(db);
    store.batch([&] {
      for (int64_t i = 0; i < runs; ++i) {
        RunRecord record;
        record.config_hash = fmt::format("{}-{}", sweep, i);
        record.sweep = sweep;
        record.task = "bench";
        record.router = "none";
        record.config_yaml = "{}";
        record.params = {{"seed", "0"}, {"router.name", "none"}};
        store.enqueue_run(record);
      }
    });
  }
  StoreTiming timing;
  const auto start = Clock::now();
  std::vector<pid_t> children;
  for (int64_t w = 0; w < workers; ++w) {
    const std::string out = (dir / fmt::format("{}-{}.txt", sweep, w)).string();
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) throw Error("bench store: fork failed");
    if (pid == 0) {
      int status = 0;
      try {
        store_worker(db, sweep, out);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench store worker: %s\n", e.what());
        status = 1;
      }
      _exit(status);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw Error("bench store: a worker failed");
  }
  timing.wall = seconds_since(start);
  for (int64_t w = 0; w < workers; ++w) {
    std::ifstream in(dir / fmt::format("{}-{}.txt", sweep, w));
    std::string kind;
    for (double seconds = 0; in >> kind >> seconds;) {
      (kind == "claim" ? timing.claim_seconds : timing.batch_seconds).push_back(seconds);
    }
  }
  timing.rows = static_cast<int64_t>(timing.batch_seconds.size()) * kRowsPerBatch;
  Store store(db);  // the bench's rows leave the database as they came
  store.query("DELETE FROM runs WHERE sweep = ?", {sweep});
  return timing;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(q * static_cast<double>(values.size() - 1))];
}

// A smoke sweep's wall time from the command to its last run done: local workers, or a
// 2-task Slurm array (polling the database).
double smoke_sweep_seconds(const std::string& executable, const std::string& sweep_file,
                           const std::filesystem::path& dir, bool slurm) {
  const std::string db = (dir / (slurm ? "slurm.db" : "local.db")).string();
  const std::vector<std::string> overrides = {"db=" + db, "checkpoint_dir=" + (dir / "ckpt").string()};
  const SweepPlan plan = expand_sweep(sweep_file, overrides);
  std::vector<std::string> argv = {executable, "sweep", sweep_file};
  argv.insert(argv.end(), overrides.begin(), overrides.end());
  if (slurm) {
    argv.insert(argv.end(), {"--launcher", "slurm", "--array-tasks", "2"});
  } else {
    argv.insert(argv.end(), {"--workers", "2"});
  }
  const auto start = Clock::now();
  const CommandResult result = run_command(argv);
  if (result.exit_code != 0) throw Error(fmt::format("bench store: {} failed: {}", fmt::join(argv, " "), result.output));
  while (slurm) {
    Store store(db, Store::Access::ReadOnly);
    const QueueCounts counts = sweep_counts(store, plan.name);
    if (counts.pending + counts.running == 0) break;
    if (seconds_since(start) > 600) throw Error("bench store: the Slurm sweep did not end within 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return seconds_since(start);
}

}  // namespace

std::string bench_store_report(const BenchOptions& options, const std::string& executable) {
  const auto dir = std::filesystem::temp_directory_path() /
                   fmt::format("moelab-bench-store-{}", static_cast<long>(getpid()));
  std::filesystem::create_directories(dir);
  struct RemovedAtExit {  // also when a measurement throws
    std::filesystem::path path;
    ~RemovedAtExit() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } removed{dir};
  std::vector<std::pair<std::string, std::string>> engines = {{"sqlite", (dir / "store.db").string()}};
  if (!options.postgres.empty()) engines.emplace_back("postgresql", options.postgres);
  nlohmann::json out = {{"runs", options.store_runs}, {"rows_per_batch", kRowsPerBatch},
                        {"batches_per_run", kBatchesPerRun}};
  std::string text = fmt::format(
      "moelab bench store: {} queued runs, each claimed, logged ({} batches of {} metric rows) and "
      "ended by worker processes; claim and batch latency median / p95\n",
      options.store_runs, kBatchesPerRun, kRowsPerBatch);
  for (const auto& [engine, db] : engines) {
    for (int64_t workers : {1, 4}) {
      const std::string sweep = fmt::format("bench-store-{}-{}", getpid(), workers);
      const StoreTiming t = time_store(db, sweep, workers, options.store_runs, dir);
      const double claims_per_second = static_cast<double>(options.store_runs) / t.wall;
      const double rows_per_second = static_cast<double>(t.rows) / t.wall;
      out[engine][fmt::format("workers_{}", workers)] = {
          {"wall_seconds", t.wall},
          {"claim_ms_median", 1e3 * quantile(t.claim_seconds, 0.5)},
          {"claim_ms_p95", 1e3 * quantile(t.claim_seconds, 0.95)},
          {"batch_ms_median", 1e3 * quantile(t.batch_seconds, 0.5)},
          {"runs_per_second", claims_per_second},
          {"metric_rows_per_second", rows_per_second}};
      text += fmt::format("{:<10} {} worker(s): claim {:.2f} / {:.2f} ms, metric batch {:.2f} / {:.2f} ms, "
                          "{:.0f} runs/s, {:.0f} metric rows/s\n",
                          engine, workers, 1e3 * quantile(t.claim_seconds, 0.5),
                          1e3 * quantile(t.claim_seconds, 0.95), 1e3 * quantile(t.batch_seconds, 0.5),
                          1e3 * quantile(t.batch_seconds, 0.95), claims_per_second, rows_per_second);
    }
  }
  if (options.postgres.empty()) text += "postgresql: not measured (give --postgres URI, an existing database)\n";
  if (!find_program("sbatch").empty()) {
    const double local = smoke_sweep_seconds(executable, options.sweep_file, dir / "local", false);
    const double slurm = smoke_sweep_seconds(executable, options.sweep_file, dir / "slurm", true);
    out["smoke_sweep"] = {{"local_seconds", local}, {"slurm_seconds", slurm}};
    text += fmt::format("{} with 2 workers: --launcher local {:.1f} s, --launcher slurm (2-task array, "
                        "submission to last run done) {:.1f} s: Slurm adds {:.1f} s\n",
                        options.sweep_file, local, slurm, slurm - local);
  } else {
    text += "sweep through Slurm: not measured (sbatch is not on PATH)\n";
  }
  return options.json ? out.dump(2) + "\n" : text;
}

}  // namespace moelab
