// Executes one run and records its outcome, whatever happens inside it.
#include "harness/run/runner.h"

#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <memory>

#include "harness/convert/conversion.h"
#include "harness/core/cpu_memory.h"
#include "harness/core/exception_text.h"
#include "harness/core/failpoint.h"
#include "harness/core/file_cache.h"
#include "harness/core/rng.h"
#include "harness/core/sha256.h"
#include "harness/model/init_streams.h"
#include "harness/train/checkpoint.h"
#include "harness/train/provenance.h"
#include "harness/train/trainer.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

extern "C" void on_interrupt_signal(int) { request_interrupt(); }

// sha256 of the task's data files (cached per file stamp, see file_cache.h).
std::vector<std::pair<std::string, std::string>> hashed_files(const Task& task) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& path : task.data_paths()) {
    if (file_stamp(path).empty()) continue;
    files.emplace_back(path, file_sha256(path));
  }
  return files;
}

}  // namespace

RunHeartbeat::RunHeartbeat(const std::string& db, int64_t run_id)
    : thread_([this, db, run_id] {
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

RunHeartbeat::~RunHeartbeat() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

RunRecord make_run_record(const RunSpec& run) {
  const RunConfig& config = run.config;
  RunRecord record;
  record.config_hash = run.hash;
  record.sweep = run.sweep;
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
int64_t reopen_for_resume(Store& store, const RunSpec& run) {
  auto previous = store.latest_unfinished_run(run.hash);
  if (!previous) {
    throw ConfigError(fmt::format("--resume: '{}' has no unfinished run of config {}",
                                  run.config.db, run.hash.substr(0, 12)));
  }
  const int64_t step = checkpoint_step(run.checkpoint);
  if (step < 0) {
    throw ConfigError(fmt::format("--resume: run {} has no checkpoint ('{}' is missing)",
                                  *previous, run.checkpoint));
  }
  store.reopen_run(*previous, step, collect_provenance(run.config));
  return *previous;
}

// The status and error a run ends with when `error` escaped it.
void record_failure(std::exception_ptr error, RunOutcome& outcome) {
  try {
    std::rethrow_exception(error);
  } catch (const DivergedError& e) {
    outcome.status = RunStatus::Diverged;
    outcome.error = e.what();
  } catch (const InterruptedError& e) {
    outcome.status = RunStatus::Interrupted;
    outcome.error = e.what();
  } catch (const DatabaseError& e) {  // writing metrics: a full disk, an I/O error, a lost server
    outcome.status = RunStatus::Failed;
    outcome.error = e.what();  // names the database
  } catch (const std::exception& e) {
    outcome.status = RunStatus::Failed;
    outcome.error = exception_text(e);
  }
}

// Writes the run's resources and end in one transaction. When that fails (a full disk), the
// smallest record of the failure is tried; when even that fails, Error names the database,
// and the run stays 'running' with its checkpoint, for `--resume` or the next sweep.
void record_end(Store& store, RunOutcome& outcome, const std::vector<std::pair<std::string, std::string>>& files,
                double seconds) {
  try {
    store.batch([&] {
      store.record_resources(outcome.run_id, peak_resident_mb(), files);
      store.finish_run(outcome.run_id, outcome.status, outcome.summaries, outcome.error, seconds);
      failpoint("recording_end");  // before the commit: the run stays 'running', resumable
    });
    return;
  } catch (const DatabaseError& e) {
    outcome.error = fmt::format("the end of the run (status '{}') cannot be written: {}",
                                run_status_text(outcome.status), e.what());
    outcome.status = RunStatus::Failed;
    outcome.summaries.clear();
  }
  try {
    store.finish_run(outcome.run_id, outcome.status, {}, outcome.error, seconds);
  } catch (const DatabaseError&) {
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

RunOutcome execute_run(const RunConfig& config, bool resume, const RunSpec* parent) {
  check_runnable(config);
  apply_thread_settings(config);
  Store store(config.db);
  RunSpec run(config, "");
  run.run_id = resume ? reopen_for_resume(store, run) : store.create_run(make_run_record(run));
  return run_on_row(store, run, resume, parent);
}

RunOutcome run_on_row(Store& store, const RunSpec& run, bool resume, const RunSpec* parent) {
  const RunConfig& config = run.config;
  RunOutcome outcome;
  outcome.run_id = run.run_id;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, std::string>> files;
  try {
    MOELAB_CHECK((config.convert.method != "none") == (parent != nullptr),
                 "run {}: a converting run starts from its resolved dense parent, others from "
                 "none", run.run_id);
    RunHeartbeat heartbeat(store.path(), run.run_id);
    const torch::Device device = device_for(config);
    std::unique_ptr<Task> task;
    std::shared_ptr<TaskModel> model;
    {
      const InitStreams init_streams(config.seed);  // paired runs: docs/design.md#paired-runs
      task = make_task(config);
      model = task->build_model(config);
    }
    files = hashed_files(*task);
    std::unique_ptr<Conversion> conversion;
    if (parent) conversion = std::make_unique<Conversion>(run, *parent, *task, store, device);
    MetricLog log(store, run.run_id);
    outcome.summaries =
        train_and_evaluate(run, *task, *model, log, device, resume, conversion.get());
    outcome.status = RunStatus::Done;
  } catch (...) {
    record_failure(std::current_exception(), outcome);
  }
  record_end(store, outcome, files,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return outcome;
}

RunOutcome record_failed_start(Store& store, int64_t run_id, std::exception_ptr error) {
  RunOutcome outcome;
  outcome.run_id = run_id;
  record_failure(error, outcome);
  record_end(store, outcome, {}, 0.0);
  return outcome;
}

}  // namespace moelab
