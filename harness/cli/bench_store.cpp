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
constexpr int64_t kWorkerCounts[] = {1, 4};  // worker processes per measurement

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
    store.finish_run(claimed->run_id, RunStatus::Done, {{"test/accuracy", 0.5}});
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

// One engine's lines: per worker count, claim and batch latency, runs/s, metric rows/s.
std::string render_engine(const std::string& engine, const nlohmann::json& figures) {
  std::string text;
  for (int64_t workers : kWorkerCounts) {
    const nlohmann::json& w = figures[fmt::format("workers_{}", workers)];
    text += fmt::format("{:<10} {} worker(s): claim {:.2f} / {:.2f} ms, metric batch {:.2f} / "
                        "{:.2f} ms, {:.0f} runs/s, {:.0f} metric rows/s\n",
                        engine, workers, w["claim_ms_median"].get<double>(),
                        w["claim_ms_p95"].get<double>(), w["batch_ms_median"].get<double>(),
                        w["batch_ms_p95"].get<double>(), w["runs_per_second"].get<double>(),
                        w["metric_rows_per_second"].get<double>());
  }
  return text;
}

}  // namespace

nlohmann::json measure_store(const BenchOptions& options, const std::string& executable) {
  const ScratchDir dir("moelab-bench-store");
  std::vector<std::pair<std::string, std::string>> engines = {
      {"sqlite", (dir.path() / "store.db").string()}};
  if (!options.postgres.empty()) engines.emplace_back("postgresql", options.postgres);
  nlohmann::json out = {{"runs", options.store_runs}, {"rows_per_batch", kRowsPerBatch},
                        {"batches_per_run", kBatchesPerRun}};
  for (const auto& [engine, db] : engines) {
    for (int64_t workers : kWorkerCounts) {
      const std::string sweep = fmt::format("bench-store-{}-{}", getpid(), workers);
      const StoreTiming t = time_store(db, sweep, workers, options.store_runs, dir.path());
      out[engine][fmt::format("workers_{}", workers)] = {
          {"wall_seconds", t.wall},
          {"claim_ms_median", 1e3 * quantile(t.claim_seconds, 0.5)},
          {"claim_ms_p95", 1e3 * quantile(t.claim_seconds, 0.95)},
          {"batch_ms_median", 1e3 * quantile(t.batch_seconds, 0.5)},
          {"batch_ms_p95", 1e3 * quantile(t.batch_seconds, 0.95)},
          {"runs_per_second", static_cast<double>(options.store_runs) / t.wall},
          {"metric_rows_per_second", static_cast<double>(t.rows) / t.wall}};
    }
  }
  if (!find_program("sbatch").empty()) {
    const std::string& sweep = options.sweep_file;
    const double local = smoke_sweep_seconds(executable, sweep, dir.path() / "local", false);
    const double slurm = smoke_sweep_seconds(executable, sweep, dir.path() / "slurm", true);
    out["smoke_sweep"] = {{"sweep", sweep}, {"local_seconds", local}, {"slurm_seconds", slurm}};
  }
  return out;
}

std::string render_store(const nlohmann::json& result) {
  std::string text = fmt::format(
      "moelab bench store: {} queued runs, each claimed, logged ({} batches of {} metric rows) and "
      "ended by worker processes; claim and batch latency median / p95\n",
      result["runs"].get<int64_t>(), result["batches_per_run"].get<int64_t>(),
      result["rows_per_batch"].get<int64_t>());
  for (const char* engine : {"sqlite", "postgresql"}) {
    if (result.contains(engine)) text += render_engine(engine, result[engine]);
  }
  if (!result.contains("postgresql")) {
    text += "postgresql: not measured (give --postgres URI, an existing database)\n";
  }
  if (!result.contains("smoke_sweep")) {
    return text + "sweep through Slurm: not measured (sbatch is not on PATH)\n";
  }
  const nlohmann::json& sweep = result["smoke_sweep"];
  const double local = sweep["local_seconds"].get<double>();
  const double slurm = sweep["slurm_seconds"].get<double>();
  return text + fmt::format("{} with 2 workers: --launcher local {:.1f} s, --launcher slurm "
                            "(2-task array, submission to last run done) {:.1f} s: Slurm adds "
                            "{:.1f} s\n",
                            sweep["sweep"].get<std::string>(), local, slurm, slurm - local);
}

}  // namespace moelab
