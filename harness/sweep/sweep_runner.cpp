// Sweep queue, workers and supervisor.
#include "harness/sweep/sweep_runner.h"

#include <fmt/format.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "harness/core/cpus.h"
#include "harness/core/exception_text.h"
#include "harness/core/interrupt.h"
#include "harness/core/parse.h"
#include "harness/train/checkpoint.h"
#include "harness/train/provenance.h"
#include "harness/run/runner.h"
#include "harness/sweep/dense_parent.h"
#include "harness/train/trainer.h"

extern char** environ;

namespace moelab {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_supervisor_signal(int) { g_stop = true; }

// A process that exists and is not a zombie (a killed worker whose parent died stays a zombie
// in containers whose init does not reap).
bool process_alive(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return true;  // no /proc: trust kill()
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

// This supervisor's log folder, results/logs/<sweep>/<host>-<pid>: two supervisors of one
// sweep (two terminals, two nodes) never write into each other's worker logs.
std::string log_folder(const SweepPlan& plan) {
  return fmt::format("results/logs/{}/{}-{}", plan.name, host_name(), getpid());
}

std::string worker_log(const SweepPlan& plan, int64_t index) {
  const std::string folder = log_folder(plan);
  std::filesystem::create_directories(folder);
  return fmt::format("{}/worker-{}.log", folder, index);
}

// A fresh process: `moelab sweep-worker ...` (pays for loading LibTorch, about 0.4 s here).
pid_t exec_worker(const SweepPlan& plan, const SweepOptions& options, const std::string& db,
                  int64_t threads, const std::string& log, const sigset_t& mask) {
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigmask(&attributes, &mask);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<std::string> args = {options.executable, "sweep-worker", "--db", db,
                                   "--sweep", plan.name, "--threads", std::to_string(threads),
                                   "--stale-after", fmt::format("{}", options.stale_after_seconds)};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error =
      posix_spawn(&pid, options.executable.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw Error(fmt::format("cannot start a worker ({}): {}", options.executable, std::strerror(error)));
  return pid;
}

// Forked workers start while the supervisor writes the queue, so that their start-up (the
// fork, opening the database) overlaps it, and wait at this gate before claiming: released,
// they go on; cancelled (the queue could not be written), they leave without claiming.
class StartGate {
 public:
  StartGate() {
    if (pipe2(fds_, O_CLOEXEC) != 0) {
      throw Error(fmt::format("cannot start workers (pipe): {}", std::strerror(errno)));
    }
  }
  ~StartGate() { close_ends(); }
  StartGate(const StartGate&) = delete;
  StartGate& operator=(const StartGate&) = delete;

  // In the supervisor: lets `workers` waiting workers go on.
  void release(int64_t workers) {
    for (int64_t i = 0; i < workers; ++i) {
      if (write(fds_[1], "g", 1) != 1) break;  // a worker that gets nothing leaves
    }
    close_ends();
  }
  void cancel() { close_ends(); }
  // In a forked worker: blocks until the supervisor decides; true to go on.
  bool wait_in_worker() {
    close(fds_[1]);
    char go = 0;
    ssize_t got = 0;
    do {
      got = read(fds_[0], &go, 1);
    } while (got < 0 && errno == EINTR);
    close(fds_[0]);
    return got == 1;
  }

 private:
  void close_ends() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  int fds_[2] = {-1, -1};
};

// A copy of this process running the worker loop: starts in milliseconds. Safe only for
// single-threaded runs: GNU OpenMP cannot run parallel regions in a forked child of a
// process that used them, and with one thread ATen never enters one. The caller holds no
// SQLite connection across the fork (SQLite forbids using one in the child, and its
// per-process lock bookkeeping would be inherited); the child opens its own.
pid_t fork_worker(const SweepPlan& plan, const std::string& db, double stale_after_seconds,
                  const std::string& log,
                  const sigset_t& mask, StartGate* gate) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw Error(fmt::format("cannot start a worker (fork): {}", std::strerror(errno)));
  if (pid > 0) return pid;
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  int status = 1;
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    try {
      std::function<bool()> wait_for_queue;
      if (gate != nullptr) wait_for_queue = [gate] { return gate->wait_in_worker(); };
      status = sweep_worker(db, plan.name, {1, stale_after_seconds, false}, wait_for_queue);
    } catch (const std::exception& e) {
      fmt::print(stderr, "worker {}: {}\n", worker_id(), exception_text(e));
    }
  }
  std::fflush(nullptr);
  _exit(status);  // no destructors or atexit handlers of the parent's objects
}

// SIGCHLD blocked while the supervisor runs, so that it sleeps until a worker exits
// (sigtimedwait) instead of polling: a finished sweep or a free worker slot is noticed at once,
// and the waiting costs the workers no CPU. Workers start with the caller's signal mask.
class ChildExitWait {
 public:
  ChildExitWait() {
    sigemptyset(&child_);
    sigaddset(&child_, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &child_, &caller_mask_);
  }
  ~ChildExitWait() { pthread_sigmask(SIG_SETMASK, &caller_mask_, nullptr); }
  ChildExitWait(const ChildExitWait&) = delete;
  ChildExitWait& operator=(const ChildExitWait&) = delete;

  // Returns when a child exits, a signal handler ran (Ctrl-C) or `timeout` passed.
  void wait(std::chrono::milliseconds timeout) const {
    const auto nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    const timespec limit{static_cast<time_t>(nanoseconds / 1000000000),
                         static_cast<long>(nanoseconds % 1000000000)};
    siginfo_t info{};
    sigtimedwait(&child_, &info, &limit);
  }
  const sigset_t& caller_mask() const { return caller_mask_; }

 private:
  sigset_t child_{}, caller_mask_{};
};

// The running runs' progress and the mean length of a run of the sweep (its done runs', or
// else the running runs' projected length; 0 when neither is known yet).
std::pair<std::vector<RunProgress>, double> measured_progress(Store& store, const std::string& sweep) {
  const auto rows = store.query(fmt::format(R"sql(
SELECT (SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id AND m.split = 'train'),
       (SELECT CAST(value AS DOUBLE PRECISION) FROM params p WHERE p.run_id = r.id AND p.key = 'train.steps'),
       {}
FROM runs r WHERE r.sweep = ?1 AND r.status = 'running' AND r.started_at IS NOT NULL)sql",
                                            store.seconds_since("r.started_at")),
                                {sweep});
  std::vector<RunProgress> running;
  double projected = 0;
  for (const auto& row : rows.rows) {
    RunProgress run{row[0].number(), row[1].number(), row[2].number()};
    if (run.steps_done > 0 && run.seconds > 0) projected += run.seconds * run.steps_total / run.steps_done;
    running.push_back(run);
  }
  double run_seconds = store.query("SELECT AVG(wall_seconds) FROM runs WHERE sweep = ?1 AND "
                                   "status = 'done' AND wall_seconds > 0",
                                   {sweep})
                           .rows.at(0)[0]
                           .number();
  const auto measured = std::count_if(running.begin(), running.end(),
                                      [](const RunProgress& run) { return run.steps_done > 0; });
  if (run_seconds <= 0 && measured > 0) run_seconds = projected / static_cast<double>(measured);
  return {running, run_seconds};
}

void print_progress(Store& store, const std::string& sweep, const QueueCounts& c, int64_t total,
                    double seconds, int64_t workers, bool interactive) {
  const auto [running, run_seconds] = measured_progress(store, sweep);
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

}  // namespace

void requeue_dead_local_workers(Store& store, const std::string& sweep) {
  const std::string prefix = host_name() + ":";
  for (const auto& worker : store.running_workers(sweep)) {
    if (worker.rfind(prefix, 0) != 0) continue;
    const auto pid = static_cast<pid_t>(to_int64(worker.substr(prefix.size()), "worker pid"));
    if (pid != getpid() && !process_alive(pid)) store.requeue_worker(worker);
  }
}

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

QueueCounts sweep_counts(Store& store, const std::string& sweep) {
  const auto counts = store.status_counts(sweep);
  auto count = [&](const char* status) {
    auto found = counts.find(status);
    return found == counts.end() ? int64_t{0} : found->second;
  };
  return {count("pending"), count("running"), count("done"),
          count("failed"), count("diverged"), count("interrupted")};
}

std::vector<QueuedRun> queue_order(const SweepPlan& plan) {
  std::vector<QueuedRun> parents, runs;
  for (const auto& run : plan.runs) {
    if (run.config.convert.method != "none" && run.config.convert.parent == "auto") {
      parents.push_back({dense_parent_config(run.config), kDenseParentLabel, ""});
    }
    runs.push_back({run.config, run.label(), ""});
  }
  std::set<std::string> seen;
  std::vector<QueuedRun> order;
  for (auto* list : {&parents, &runs}) {
    for (auto& entry : *list) {
      entry.hash = config_hash(entry.config);
      if (seen.insert(entry.hash).second) order.push_back(std::move(entry));
    }
  }
  return order;
}

QueueCounts enqueue_sweep(Store& store, const SweepPlan& plan, const SweepOptions& options) {
  store.requeue_stale(plan.name, options.stale_after_seconds);
  requeue_dead_local_workers(store, plan.name);
  store.batch([&] {  // one transaction: all of the plan is queued, or none of it
    for (const QueuedRun& run : queue_order(plan)) {
      const RunSpec spec(run.config, plan.name, run.hash);
      const std::string& checkpoint = spec.checkpoint;
      const auto state = store.run_for_hash(run.hash);
      auto enqueue = [&] {
        RunRecord record = make_run_record(spec);
        record.axes = run.label;
        store.enqueue_run(record);
      };
      if (!state || (state->status == "done" && options.force)) {
        std::filesystem::remove(checkpoint);  // a new run starts from scratch
        enqueue();
      } else if (state->sweep != plan.name && state->status != "done") {
        enqueue();  // unfinished in another sweep: this sweep runs its own copy
      } else if (state->sweep != plan.name) {
        store.add_to_sweep(plan.name, state->run_id);  // done elsewhere: reused, and reported
      } else if ((state->status == "failed" || state->status == "diverged") &&
                 options.retry_failed) {
        std::filesystem::remove(checkpoint);  // retried from scratch
        store.requeue_run(state->run_id);
      } else if (state->status == "interrupted") {
        store.requeue_run(state->run_id);  // resumes from its checkpoint
      }
    }
  });
  return sweep_counts(store, plan.name);
}

namespace {

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
                      : exec_worker(plan_, options_, db_, threads_, log, child_exits_.caller_mask());
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
  const int64_t total = queued.pending + queued.running + queued.done + queued.failed +
                        queued.diverged + queued.interrupted;
  fmt::print(stderr, "sweep '{}': {} runs, {} to do; {} worker(s) x {} thread(s); logs in {}/\n",
             plan.name, total, queued.pending, options.workers, supervisor.threads(),
             log_folder(plan));
  const QueueCounts counts = supervisor.supervise(queued, total);
  return counts.done == total ? 0 : 1;
}

namespace {

// Runs a claimed run, after resolving its dense parent when it converts (the claimed run's
// heartbeat stays fresh meanwhile, so that no supervisor requeues it).
RunOutcome run_claimed(Store& store, const RunSpec& run, bool resume, double stale_after_seconds) {
  if (run.config.convert.method == "none") return run_on_row(store, run, resume, nullptr);
  std::optional<RunSpec> parent;
  try {
    RunHeartbeat heartbeat(store.path(), run.run_id);
    parent = resolve_dense_parent(run.config, store, run.sweep, /*retry_failed=*/false,
                                  stale_after_seconds);
  } catch (...) {
    return record_failed_start(store, run.run_id, std::current_exception());
  }
  return run_on_row(store, run, resume, &*parent);
}

}  // namespace

namespace {

std::atomic<bool> g_time_limit_warning{false};
extern "C" void on_time_limit_warning(int) {
  g_time_limit_warning = true;
  request_interrupt();
}

// A scheduled worker with nothing to claim: true while runs of the sweep are still running
// elsewhere (after taking back those of dead or stale workers and the interrupted ones),
// having waited a little.
bool others_still_running(Store& store, const std::string& sweep, double stale_after_seconds) {
  requeue_dead_local_workers(store, sweep);
  store.requeue_stale(sweep, stale_after_seconds);
  // A task killed between recording its run interrupted and giving it back.
  store.requeue_sweep(sweep, "interrupted");
  const QueueCounts counts = sweep_counts(store, sweep);
  if (counts.pending > 0) return true;  // claim it at once
  if (counts.running == 0) return false;
  for (int tick = 0; tick < 20 && !interrupt_requested(); ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return !interrupt_requested();
}

}  // namespace

int sweep_worker(const std::string& db, const std::string& sweep, const WorkerOptions& options,
                 const std::function<bool()>& wait_for_queue) {
  install_interrupt_handlers();
  if (options.scheduled) std::signal(SIGUSR1, on_time_limit_warning);
  Store store(db);
  if (wait_for_queue && !wait_for_queue()) return 0;
  const std::string id = worker_id();
  while (!interrupt_requested()) {
    auto claimed = store.claim_run(sweep, id);
    if (!claimed) {
      if (options.scheduled && others_still_running(store, sweep, options.stale_after_seconds)) continue;
      break;
    }
    // Reading the config or the checkpoint can fail too: record that as the run's failure
    // instead of losing the worker (and having the run requeued forever).
    std::optional<RunSpec> run;
    int64_t step = -1;
    try {
      run.emplace(parse_run_config(claimed->config_yaml, fmt::format("run {}", claimed->run_id),
                                   {fmt::format("threads={}", options.threads)}),
                  sweep, claimed->config_hash);
      run->run_id = claimed->run_id;
      step = checkpoint_step(run->checkpoint);
    } catch (const std::exception& e) {
      store.finish_run(claimed->run_id, "failed", {}, exception_text(e));
      fmt::print(stderr, "worker {}: run {} failed: {}\n", id, claimed->run_id, exception_text(e));
      continue;
    }
    apply_thread_settings(run->config);
    // Metrics after the checkpoint (or all of them, without one) are logged again.
    store.reopen_run(run->run_id, step, collect_provenance(run->config));
    fmt::print(stderr, "worker {}: run {} [{}]{}\n", id, run->run_id, run->config.name,
               step >= 0 ? fmt::format(" resuming at step {}", step) : "");
    const RunOutcome outcome = run_claimed(store, *run, step >= 0, options.stale_after_seconds);
    fmt::print(stderr, "worker {}: run {} {}{}\n", id, outcome.run_id, outcome.status,
               outcome.error.empty() ? "" : ": " + outcome.error);
    // Resumed from its checkpoint by whichever task claims it (unless one already has).
    if (options.scheduled && outcome.status == "interrupted" && store.requeue_if(outcome.run_id, "interrupted")) {
      fmt::print(stderr, "worker {}: run {} is back in the queue\n", id, outcome.run_id);
    }
  }
  std::fflush(stderr);
  return options.scheduled && g_time_limit_warning ? kExitRequeue : 0;
}

}  // namespace moelab
