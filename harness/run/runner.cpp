// Executes one run and records its outcome, whatever happens inside it.
#include "harness/run/runner.h"

#include <fmt/format.h>

#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "harness/train/checkpoint.h"
#include "harness/convert/conversion.h"
#include "harness/run/dense_parent.h"
#include "harness/core/exception_text.h"
#include "harness/core/failpoint.h"
#include "harness/core/file_cache.h"
#include "harness/core/rng.h"
#include "harness/train/provenance.h"
#include "harness/core/sha256.h"
#include "harness/train/trainer.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

extern "C" void on_interrupt_signal(int) { request_interrupt(); }

// Refreshes a run's heartbeat every 10 s from its own connection while the run trains or
// evaluates, so that supervisors can tell a live run from one whose process died.
class HeartbeatThread {
 public:
  HeartbeatThread(const std::string& db, int64_t run_id) : thread_([this, db, run_id] {
      std::unique_lock<std::mutex> lock(mutex_);
      try {
        Store store(db);
        while (!stop_) {
          if (wake_.wait_for(lock, std::chrono::seconds(10), [this] { return stop_; })) break;
          store.heartbeat(run_id);
        }
      } catch (const std::exception& e) {  // the run itself meets the same database error
        fmt::print(stderr, "warning: run {}: heartbeat stopped: {}\n", run_id, e.what());
      }
    }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// sha256 of the task's data files (cached per file stamp, see file_cache.h).
std::vector<std::pair<std::string, std::string>> hashed_files(const Task& task) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& path : task.data_paths()) {
    if (file_stamp(path).empty()) continue;
    files.emplace_back(path, file_sha256(path));
  }
  return files;
}

double peak_rss_mb() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

}  // namespace

RunRecord make_run_record(const RunConfig& config, const std::string& sweep) {
  return make_run_record(config, sweep, config_hash(config));
}

RunRecord make_run_record(const RunConfig& config, const std::string& sweep,
                          const std::string& config_hash) {
  RunRecord record;
  record.config_hash = config_hash;
  record.sweep = sweep;
  record.name = config.name;
  record.task = config.task.name;
  record.router = config.router.name;
  record.seed = config.seed;
  record.config_yaml = canonical_yaml(config);
  for (const auto& row : list_fields(const_cast<RunConfig&>(config))) {
    record.params.emplace_back(row.path, row.value);
  }
  record.provenance = collect_provenance(config);
  return record;
}

namespace {

torch::Device device_for(const RunConfig& config) {
  torch::Device device(config.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    throw ConfigError(fmt::format("device = \"{}\": this LibTorch has no usable CUDA device",
                                  config.device));
  }
  return device;
}

// The run to continue: the newest unfinished one of this config, reopened at its checkpoint.
int64_t reopen_for_resume(Store& store, const RunConfig& config) {
  const std::string hash = config_hash(config);
  const std::string checkpoint = checkpoint_path(config.checkpoint_dir, hash);
  auto previous = store.latest_unfinished_run(hash);
  if (!previous) {
    throw ConfigError(fmt::format("--resume: '{}' has no unfinished run of config {}",
                                  config.db, hash.substr(0, 12)));
  }
  const int64_t step = checkpoint_step(checkpoint);
  if (step < 0) {
    throw ConfigError(fmt::format("--resume: run {} has no checkpoint ('{}' is missing)",
                                  *previous, checkpoint));
  }
  store.reopen_run(*previous, step, collect_provenance(config));
  return *previous;
}

std::string database_path(Store& store) { return store.database().getFilename(); }

// Writes the run's resources and end in one transaction. When that fails (a full disk), the
// smallest record of the failure is tried; when even that fails, Error names the database,
// and the run stays 'running' with its checkpoint, for `--resume` or the next sweep.
void record_end(Store& store, RunOutcome& outcome, const std::vector<std::pair<std::string, std::string>>& files,
                double seconds) {
  try {
    store.batch([&] {
      store.record_resources(outcome.run_id, peak_rss_mb(), files);
      store.finish_run(outcome.run_id, outcome.status, outcome.summaries, outcome.error, seconds);
      failpoint("recording_end");  // before the commit: the run stays 'running', resumable
    });
    return;
  } catch (const SQLite::Exception& e) {
    outcome.error = fmt::format("results database '{}': the end of the run (status '{}') cannot be "
                                "written: {}",
                                database_path(store), outcome.status, e.what());
    outcome.status = "failed";
    outcome.summaries.clear();
  }
  try {
    store.finish_run(outcome.run_id, outcome.status, {}, outcome.error, seconds);
  } catch (const SQLite::Exception&) {
    throw Error(outcome.error + fmt::format("; run {} stays 'running' (`moelab run --resume` "
                                            "continues it from its last checkpoint, a sweep "
                                            "requeues it)",
                                            outcome.run_id));
  }
}

}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_interrupt_signal);
  std::signal(SIGTERM, on_interrupt_signal);
}

void check_runnable(const RunConfig& config) {
  device_for(config);
  check_task(config);
}

RunOutcome execute_run(const RunConfig& config, const std::string& sweep, bool resume) {
  check_runnable(config);
  apply_thread_settings(config);
  Store store(config.db);
  const int64_t run_id = resume ? reopen_for_resume(store, config)
                                : store.create_run(make_run_record(config, sweep));
  return run_on_row(store, run_id, config, resume);
}

RunOutcome run_on_row(Store& store, int64_t run_id, const RunConfig& config, bool resume,
                      double stale_after_seconds) {
  RunOutcome outcome;
  outcome.run_id = run_id;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<std::pair<std::string, std::string>> files;
  try {
    HeartbeatThread heartbeat(store.database().getFilename(), run_id);
    // A converted run's dense parent runs first (before this run's seeding, so that its own
    // initialisation does not depend on whether the parent had to be trained).
    std::optional<DenseParent> parent;
    if (config.convert.method != "none") {
      const auto state = store.run_state(run_id);
      const std::string sweep = state ? state->sweep : "";
      parent = resolve_dense_parent(config, store, sweep, /*retry_failed=*/sweep.empty(),
                                    stale_after_seconds);
    }
    torch::manual_seed(derived_seed({static_cast<uint64_t>(config.seed), fnv1a("init")}));
    const torch::Device device = device_for(config);
    auto task = make_task(config);
    files = hashed_files(*task);
    auto model = task->build_model(config);
    std::unique_ptr<Conversion> conversion;
    if (parent) {
      conversion = std::make_unique<Conversion>(config, *parent, *task, store, run_id, device);
    }
    MetricLog log(store, outcome.run_id);
    outcome.summaries =
        train_and_evaluate(config, *task, *model, log, device, resume, conversion.get());
    outcome.status = "done";
  } catch (const DivergedError& e) {
    outcome.status = "diverged";
    outcome.error = e.what();
  } catch (const InterruptedError& e) {
    outcome.status = "interrupted";
    outcome.error = e.what();
  } catch (const SQLite::Exception& e) {  // writing metrics: a full disk, an I/O error
    outcome.status = "failed";
    outcome.error = fmt::format("results database '{}': {}", database_path(store), e.what());
  } catch (const std::exception& e) {
    outcome.status = "failed";
    outcome.error = exception_text(e);
  }
  record_end(store, outcome, files, elapsed());
  return outcome;
}

}  // namespace moelab
