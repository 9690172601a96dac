// `moelab bench sweep`: the sweep runner on a sweep file with 1 and 2 workers: its overhead
// beyond the runs' own time, metric logging's share of run time, and 2 workers' throughput.
#include <fmt/format.h>

#include <map>

#include "harness/cli/bench.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep_runner.h"

namespace moelab {
namespace {

constexpr int64_t kWorkerCounts[] = {1, 2};
constexpr int64_t kThreadsPerRun = 1;

// One sweep's wall time, and its runs' summed wall and metric-logging seconds.
struct SweepTiming {
  double wall = 0, run_seconds = 0, log_seconds = 0;
  double overhead(int64_t workers) const {  // wall time beyond the runs' own, per worker
    return (wall - run_seconds / static_cast<double>(workers)) / wall;
  }
};

// Runs options.sweep_file with `workers` workers into a fresh database under `dir`.
SweepTiming time_sweep(const BenchOptions& options, const std::string& executable,
                       const std::filesystem::path& dir, int64_t workers, int64_t repeat) {
  const std::string db = (dir / fmt::format("w{}-{}.db", workers, repeat)).string();
  SweepPlan plan = expand_sweep(options.sweep_file,
                                {"db=" + db, "checkpoint_dir=" + (dir / "ckpt").string(),
                                 fmt::format("threads={}", kThreadsPerRun)});
  plan.name = fmt::format("bench{}", workers);
  SweepOptions sweep;
  sweep.workers = workers;
  sweep.threads_per_worker = kThreadsPerRun;
  sweep.executable = executable;
  { Store create(db); }  // an existing database, as for every sweep but a project's first
  SweepTiming timing;
  timing.wall = seconds_of([&] { run_sweep(plan, sweep); });
  Store store(db);
  auto totals = store.query(
      "SELECT SUM(r.wall_seconds), SUM(s.value) FROM runs r JOIN summaries s ON "
      "s.run_id = r.id AND s.name = 'train/log_seconds' WHERE r.status = 'done'");
  timing.run_seconds = totals.rows[0][0].real;
  timing.log_seconds = totals.rows[0][1].real;
  return timing;
}

// Spreads over the repeats of `workers` workers' timings; speed-ups against the same repeat's
// 1-worker wall time.
nlohmann::json summarize(const std::map<int64_t, std::vector<SweepTiming>>& timings,
                         int64_t workers) {
  std::vector<double> wall, overhead, logging, speedup;
  const auto& mine = timings.at(workers);
  for (size_t i = 0; i < mine.size(); ++i) {
    wall.push_back(mine[i].wall);
    overhead.push_back(mine[i].overhead(workers));
    logging.push_back(mine[i].log_seconds / mine[i].run_seconds);
    speedup.push_back(timings.at(1)[i].wall / mine[i].wall);
  }
  return {{"wall_seconds", spread(wall)}, {"runner_overhead", spread(overhead)},
          {"logging_share", spread(logging)}, {"throughput_vs_1_worker", spread(speedup)}};
}

}  // namespace

nlohmann::json measure_sweep(const BenchOptions& options, const std::string& executable) {
  const ScratchDir dir("moelab-bench-sweep");
  // Alternating 1 and 2 workers, so drift on the machine affects both alike.
  std::map<int64_t, std::vector<SweepTiming>> timings;
  for (int64_t repeat = 0; repeat < options.repeats; ++repeat) {
    for (int64_t workers : kWorkerCounts) {
      timings[workers].push_back(time_sweep(options, executable, dir.path(), workers, repeat));
    }
  }
  nlohmann::json out = {{"sweep", options.sweep_file},
                        {"runs", expand_sweep(options.sweep_file).runs.size()},
                        {"repeats", options.repeats},
                        {"threads_per_run", kThreadsPerRun}};
  for (int64_t workers : kWorkerCounts) {
    out[fmt::format("workers_{}", workers)] = summarize(timings, workers);
  }
  return out;
}

std::string render_sweep(const nlohmann::json& result) {
  std::string text = fmt::format(
      "moelab bench sweep: {} ({} runs), {} LibTorch thread per run, {} repeats: median "
      "(min-max)\n",
      result["sweep"].get<std::string>(), result["runs"].get<int64_t>(),
      result["threads_per_run"].get<int64_t>(), result["repeats"].get<int64_t>());
  for (int64_t workers : kWorkerCounts) {
    const nlohmann::json& w = result[fmt::format("workers_{}", workers)];
    text += fmt::format("{} worker(s): wall {}, runner overhead {}, metric logging {} of run time",
                        workers, spread_text(w["wall_seconds"], 1, "s"),
                        spread_text(w["runner_overhead"], 100, "%"),
                        spread_text(w["logging_share"], 100, "%"));
    text += workers == 1 ? "\n"
                         : fmt::format(", throughput {} of 1 worker\n",
                                       spread_text(w["throughput_vs_1_worker"], 1, "x"));
  }
  return text;
}

}  // namespace moelab
