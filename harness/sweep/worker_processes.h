// The processes of a local sweep: its workers, forked (single-threaded runs: milliseconds to
// start) or exec'd as `moelab sweep-worker` (several threads), with their log files; the gate
// forked workers wait at until the queue is written; and the supervisor's sleep until a
// worker exits.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <string>

#include "harness/sweep/sweep.h"

namespace moelab {

// This supervisor's log folder, results/logs/<sweep>/<host>-<pid>: two supervisors of one
// sweep (two terminals, two nodes) never write into each other's worker logs.
std::string log_folder(const SweepPlan& plan);
// The log file of the supervisor's index-th worker (its folder created).
std::string worker_log(const SweepPlan& plan, int64_t index);

// What an exec'd worker is started with.
struct WorkerCommand {
  std::string executable;  // this moelab binary
  std::string db;
  int64_t threads = 1;
  double stale_after_seconds = 0;
};

// A fresh process: `moelab sweep-worker ...` (pays for loading LibTorch, about 0.4 s here),
// its output appended to `log`, with signal mask `mask`.
pid_t exec_worker(const SweepPlan& plan, const WorkerCommand& command, const std::string& log,
                  const sigset_t& mask);

// Forked workers start while the supervisor writes the queue, so that their start-up (the
// fork, opening the database) overlaps it, and wait at this gate before claiming: released,
// they go on; cancelled (the queue could not be written), they leave without claiming.
class StartGate {
 public:
  StartGate();
  ~StartGate();
  StartGate(const StartGate&) = delete;
  StartGate& operator=(const StartGate&) = delete;

  void release(int64_t workers);  // in the supervisor: lets `workers` waiting workers go on
  void cancel();
  bool wait_in_worker();  // in a forked worker: blocks until the supervisor decides; true: go

 private:
  void close_ends();
  int fds_[2] = {-1, -1};
};

// A copy of this process running the worker loop (single-threaded); it waits at `gate` when
// one is given. See the definition for when forking is safe.
pid_t fork_worker(const SweepPlan& plan, const std::string& db, double stale_after_seconds,
                  const std::string& log, const sigset_t& mask, StartGate* gate);

// SIGCHLD blocked while the supervisor runs, so that it sleeps until a worker exits
// (sigtimedwait) instead of polling: a finished sweep or a free worker slot is noticed at once,
// and the waiting costs the workers no CPU. Workers start with the caller's signal mask.
class ChildExitWait {
 public:
  ChildExitWait();
  ~ChildExitWait();
  ChildExitWait(const ChildExitWait&) = delete;
  ChildExitWait& operator=(const ChildExitWait&) = delete;

  // Returns when a child exits, a signal handler ran (Ctrl-C) or `timeout` passed.
  void wait(std::chrono::milliseconds timeout) const;
  const sigset_t& caller_mask() const { return caller_mask_; }

 private:
  sigset_t child_{}, caller_mask_{};
};

}  // namespace moelab
