// A local sweep's supervisor: enqueues the plan, starts workers (forked, or exec'd when they
// run several threads), reaps them, requeues what dead or stale workers held, prints progress.
#include "harness/sweep/sweep_runner.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <optional>

#include "harness/core/cpus.h"
#include "harness/sweep/progress.h"
#include "harness/sweep/worker_processes.h"
#include "harness/train/provenance.h"

namespace moelab {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_supervisor_signal(int) { g_stop = true; }

// The supervisor of one sweep: starts workers (forked, or exec'd when they run several threads),
// reaps them, requeues what dead or stale workers held, and prints progress.
class Supervisor {
 public:
  Supervisor(const SweepPlan& plan, const SweepOptions& options, const ChildExitWait& child_exits)
      : plan_(plan), options_(options), child_exits_(child_exits), db_(plan.runs.front().config.db),
        threads_(options.threads_per_worker > 0 ? options.threads_per_worker
                 : options.workers == 1         ? plan.runs.front().config.threads
                                                : 1),
        // Single-threaded runs get forked workers, which need no LibTorch start-up; the
        // supervisor holds no database connection across a fork (see fork_worker).
        fork_workers_(threads_ == 1) {
    if (fork_workers_) set_thread_counts(1, 1);  // inherited by the workers (see there)
  }

  // Forked workers start before the queue is written and wait at the gate; then the queue.
  QueueCounts start() {
    StartGate gate;
    if (fork_workers_) {
      const auto first = std::min<int64_t>(options_.workers, static_cast<int64_t>(plan_.runs.size()));
      while (started_ < first) start_worker(&gate);
    }
    store_.emplace(db_);
    QueueCounts counts;
    try {
      counts = enqueue_sweep(*store_, plan_, options_);
    } catch (...) {
      gate.cancel();
      for (const auto& [pid, id] : workers_) waitpid(pid, nullptr, 0);
      throw;
    }
    gate.release(counts.pending > 0 ? started_ : 0);
    return counts;
  }

  // Until the queue is empty, nothing can be started, or Ctrl-C: the final counts.
  QueueCounts supervise(QueueCounts counts, int64_t total) {
    const int64_t max_starts = options_.workers * 3 + total;
    const bool interactive = isatty(fileno(stderr)) != 0;
    int64_t last_print = -1;
    auto next_stale_check = start_;
    while (true) {
      reap();
      // Staleness is measured in tens of seconds: checking it once a second spares the
      // workers a competing write transaction every poll.
      if (std::chrono::steady_clock::now() >= next_stale_check) {
        store_->requeue_stale(plan_.name, options_.stale_after_seconds);
        next_stale_check = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      }
      counts = sweep_counts(*store_, plan_.name);
      if (g_stop) break;
      if (counts.pending == 0 && workers_.empty() && counts.running == 0) break;
      fill(counts, max_starts);
      // With no worker of ours left, runs still running are held by processes we do not own
      // (another supervisor): wait for them or their staleness; otherwise nothing is left.
      if (workers_.empty() && counts.running == 0) break;
      const double seconds = elapsed();
      const auto tick = static_cast<int64_t>(seconds) / (interactive ? 1 : 30);
      if (tick != last_print) {
        print_progress(*store_, plan_.name, counts, total, seconds, options_.workers, interactive);
        last_print = tick;
      }
      // Nothing to do before a worker exits, Ctrl-C, or the next whole second (progress line,
      // staleness check): sleep until the first of them.
      const auto into_second = static_cast<int64_t>(seconds * 1000) % 1000;
      child_exits_.wait(std::chrono::milliseconds(1000 - into_second));
    }
    if (g_stop) counts = stop_workers();
    print_progress(*store_, plan_.name, counts, total, elapsed(), options_.workers, false);
    return counts;
  }

  int64_t threads() const { return threads_; }

 private:
  void start_worker(StartGate* gate) {
    const std::string log = worker_log(plan_, started_++);
    const pid_t pid =
        fork_workers_ ? fork_worker(plan_, db_, options_.stale_after_seconds, log,
                                    child_exits_.caller_mask(), gate)
                      : exec_worker(plan_, {options_.executable, db_, threads_, options_.stale_after_seconds},
                                    log, child_exits_.caller_mask());
    workers_[pid] = fmt::format("{}:{}", host_, pid);
  }

  // Reaps exited workers; one that died mid-run gives its run back at once.
  void reap() {
    for (auto it = workers_.begin(); it != workers_.end();) {
      int status = 0;
      if (waitpid(it->first, &status, WNOHANG) == it->first) {
        store_->requeue_worker(it->second);
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Starts workers while runs are pending, up to --workers at once and max_starts in all.
  void fill(const QueueCounts& counts, int64_t max_starts) {
    auto may_start = [&] {
      return counts.pending > 0 && static_cast<int64_t>(workers_.size()) < options_.workers &&
             started_ < max_starts;
    };
    if (!may_start()) return;
    if (fork_workers_) store_.reset();
    while (may_start()) start_worker(nullptr);
    if (!store_) store_.emplace(db_);
  }

  // Ctrl-C: the workers stop and mark their runs interrupted; what a dead one held goes back.
  QueueCounts stop_workers() {
    fmt::print(stderr, "\nsweep: stopping the workers (their runs are marked interrupted)\n");
    for (const auto& [pid, id] : workers_) kill(pid, SIGINT);
    for (const auto& [pid, id] : workers_) {
      int status = 0;
      waitpid(pid, &status, 0);
      store_->requeue_worker(id);  // only if it died without recording its run
    }
    return sweep_counts(*store_, plan_.name);
  }

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  const SweepPlan& plan_;
  const SweepOptions& options_;
  const ChildExitWait& child_exits_;
  const std::string db_;
  const int64_t threads_;
  const bool fork_workers_;
  const std::string host_ = host_name();
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::map<pid_t, std::string> workers_;  // pid -> worker id
  int64_t started_ = 0;
  std::optional<Store> store_;
};

}  // namespace

// --workers left out: as many single-threaded workers as the CPUs this process may use (the
// affinity mask and cgroup quota, as a container or a Slurm allocation sets them), at most one
// per run; with --threads-per-worker T, usable / T of them.
SweepOptions with_default_workers(const SweepPlan& plan, SweepOptions options) {
  if (options.workers > 0) return options;
  const CpuBudget cpus = cpu_budget();
  const int64_t threads = std::max<int64_t>(options.threads_per_worker, 1);
  options.workers = std::clamp<int64_t>(cpus.usable() / threads, 1,
                                        std::max<int64_t>(static_cast<int64_t>(plan.runs.size()), 1));
  fmt::print(stderr, "sweep: {} worker(s) x {} thread(s) for {} (set --workers to choose)\n",
             options.workers, threads, cpus.describe());
  return options;
}

int run_sweep(const SweepPlan& plan, const SweepOptions& requested) {
  const SweepOptions options = with_default_workers(plan, requested);
  g_stop = false;
  std::signal(SIGINT, on_supervisor_signal);
  std::signal(SIGTERM, on_supervisor_signal);
  const ChildExitWait child_exits;
  Supervisor supervisor(plan, options, child_exits);
  const QueueCounts queued = supervisor.start();
  const int64_t total = queued.total();
  fmt::print(stderr, "sweep '{}': {} runs, {} to do; {} worker(s) x {} thread(s); logs in {}/\n",
             plan.name, total, queued.pending, options.workers, supervisor.threads(),
             log_folder(plan));
  const QueueCounts counts = supervisor.supervise(queued, total);
  return counts.done == total ? 0 : 1;
}

}  // namespace moelab
