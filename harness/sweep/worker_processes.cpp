// Starting a local sweep's worker processes (posix_spawn or fork), and waiting for them.
#include "harness/sweep/worker_processes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/exception_text.h"
#include "harness/store/store.h"
#include "harness/sweep/sweep_worker.h"

extern char** environ;

namespace moelab {

std::string log_folder(const SweepPlan& plan) {
  return fmt::format("results/logs/{}/{}-{}", plan.name, host_name(), getpid());
}

std::string worker_log(const SweepPlan& plan, int64_t index) {
  const std::string folder = log_folder(plan);
  std::filesystem::create_directories(folder);
  return fmt::format("{}/worker-{}.log", folder, index);
}

StartGate::StartGate() {
  if (pipe2(fds_, O_CLOEXEC) != 0) {
    throw Error(fmt::format("cannot start workers (pipe): {}", std::strerror(errno)));
  }
}

StartGate::~StartGate() { close_ends(); }

void StartGate::release(int64_t workers) {
  for (int64_t i = 0; i < workers; ++i) {
    if (write(fds_[1], "g", 1) != 1) break;  // a worker that gets nothing leaves
  }
  close_ends();
}

void StartGate::cancel() { close_ends(); }

bool StartGate::wait_in_worker() {
  close(fds_[1]);
  char go = 0;
  ssize_t got = 0;
  do {
    got = read(fds_[0], &go, 1);
  } while (got < 0 && errno == EINTR);
  close(fds_[0]);
  return got == 1;
}

void StartGate::close_ends() {
  for (int& fd : fds_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

ChildExitWait::ChildExitWait() {
  sigemptyset(&child_);
  sigaddset(&child_, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &child_, &caller_mask_);
}

ChildExitWait::~ChildExitWait() { pthread_sigmask(SIG_SETMASK, &caller_mask_, nullptr); }

void ChildExitWait::wait(std::chrono::milliseconds timeout) const {
  const auto nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  const timespec limit{static_cast<time_t>(nanoseconds / 1000000000),
                       static_cast<long>(nanoseconds % 1000000000)};
  siginfo_t info{};
  sigtimedwait(&child_, &info, &limit);
}

pid_t exec_worker(const SweepPlan& plan, const WorkerCommand& command, const std::string& log,
                  const sigset_t& mask) {
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigmask(&attributes, &mask);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<std::string> args = {command.executable, "sweep-worker", "--db", command.db,
                                   "--sweep", plan.name, "--threads", std::to_string(command.threads),
                                   "--stale-after", fmt::format("{}", command.stale_after_seconds)};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error =
      posix_spawn(&pid, command.executable.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw Error(fmt::format("cannot start a worker ({}): {}", command.executable, std::strerror(error)));
  return pid;
}

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

}  // namespace moelab
