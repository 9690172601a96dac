// The sweep's progress line and its ETA (list scheduling of the remaining runs).
#include "harness/sweep/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace moelab {
namespace {

// The mean length of a run of the sweep: its done runs', or else the running runs' projected
// length (from their step rates); 0 when neither is known yet.
double run_seconds_estimate(Store& store, const std::string& sweep,
                            const std::vector<RunProgress>& running) {
  const double done = store.mean_done_seconds(sweep);
  if (done > 0) return done;
  double projected = 0;
  int64_t measured = 0;
  for (const auto& run : running) {
    if (run.steps_done <= 0 || run.seconds <= 0) continue;
    projected += run.seconds * run.steps_total / run.steps_done;
    ++measured;
  }
  return measured > 0 ? projected / static_cast<double>(measured) : 0.0;
}

}  // namespace

double estimate_eta(const std::vector<RunProgress>& running, int64_t pending, double run_seconds,
                    int64_t workers) {
  std::vector<double> free_at(static_cast<size_t>(std::max<int64_t>(workers, 1)), 0.0);
  size_t worker = 0;
  for (const auto& run : running) {
    double left = run_seconds > 0 ? std::max(run_seconds - run.seconds, 0.0) : -1.0;
    if (run.steps_done > 0 && run.seconds > 0) {
      left = (run.steps_total - run.steps_done) * run.seconds / run.steps_done;
    }
    if (left < 0) return -1.0;  // not measured yet
    free_at[worker % free_at.size()] = std::max(free_at[worker % free_at.size()], left);
    ++worker;
  }
  if (pending > 0 && run_seconds <= 0) return -1.0;
  for (int64_t i = 0; i < pending; ++i) {
    auto first_free = std::min_element(free_at.begin(), free_at.end());
    *first_free += run_seconds;
  }
  return *std::max_element(free_at.begin(), free_at.end());
}

void print_progress(Store& store, const std::string& sweep, const QueueCounts& c, int64_t total,
                    double seconds, int64_t workers, bool interactive) {
  const std::vector<RunProgress> running = store.running_progress(sweep);
  const double run_seconds = run_seconds_estimate(store, sweep, running);
  const double eta = c.pending + c.running > 0 ? estimate_eta(running, c.pending, run_seconds, workers) : 0.0;
  const std::string line = fmt::format(
      "sweep: {}/{} done | {} running | {} pending | {} failed | {} diverged | {} interrupted | "
      "{:.0f}s{}",
      c.done, total, c.running, c.pending, c.failed, c.diverged, c.interrupted, seconds,
      eta >= 0 ? fmt::format(" | ETA {:.0f}s", eta) : "");
  if (interactive) {
    fmt::print(stderr, "\r{}\x1b[K", line);
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

}  // namespace moelab
