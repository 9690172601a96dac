// The training loop shared by every task: Adam/AdamW, linear warm-up then cosine decay,
// gradient clipping, task loss + router aux losses, periodic logging and evaluation,
// divergence detection and clean interruption.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/core/interrupt.h"
#include "harness/store/store.h"
#include "harness/train/run_spec.h"
#include "tasks/task.h"

namespace moelab {

// A NaN/Inf loss: the run is recorded as 'diverged', not as a crash.
class DivergedError : public Error {
 public:
  DivergedError(int64_t step, const std::string& what) : Error(what), step(step) {}
  int64_t step;
};

// Buffers metric rows and writes them in one transaction per flush (at logging steps, after
// every evaluation and before every checkpoint, so a checkpoint never covers unwritten rows).
class MetricLog {
 public:
  MetricLog(Store& store, int64_t run_id) : store_(store), run_id_(run_id) {}
  void add(int64_t step, const std::string& split, const std::string& name, double value) {
    rows_.push_back({step, split, name, value});
  }
  void flush() {
    const auto start = std::chrono::steady_clock::now();
    store_.log_metrics(run_id_, rows_);
    rows_.clear();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  double seconds() const { return seconds_; }  // time spent writing to the database
  // The rows written for (split, step), in logging order.
  std::vector<std::pair<std::string, double>> written(const std::string& split, int64_t step) {
    return store_.metrics_at(run_id_, split, step);
  }
  // Deletes the evaluation rows written at `step` (an interrupted final evaluation's).
  void delete_evaluations(int64_t step) { store_.delete_evaluations(run_id_, step); }

 private:
  Store& store_;
  int64_t run_id_;
  std::vector<MetricRow> rows_;
  double seconds_ = 0.0;
};

// What a run adds around the shared loop (the dense -> MoE conversion, harness/convert/conversion.h).
class TrainingHooks {
 public:
  virtual ~TrainingHooks() = default;
  // Before the optimizer exists and before a checkpoint is loaded (`resuming`).
  virtual void before_training(TaskModel& model, MetricLog& log, bool resuming) = 0;
  // Named, weighted extra losses on this step's predictions [N, C].
  virtual std::vector<NamedTensor> extra_losses(const Batch& batch,
                                                const torch::Tensor& logits) = 0;
  // After the final checkpoint, before the final evaluation.
  virtual void after_training(TaskModel& model) = 0;
  // Extra summaries, given the final evaluation's.
  virtual MetricValues summaries(TaskModel& model, const MetricValues& finals) = 0;
};

// Learning rate at 1-based step: linear warm-up to lr, then cosine down to lr*min_lr_ratio
// over the steps after warm-up.
double learning_rate(const TrainConfig& train, int64_t step);
// The same with the decay's progress given: `decay_done` in [0, 1] (clamped) is the share of
// the decay span behind the step (with train.budget: of the budget's cost after warm-up).
double learning_rate(const TrainConfig& train, int64_t step, double decay_done);

// Trains and evaluates; returns the summaries ("split/metric" -> value) on success.
// Checkpoints go to run.checkpoint; `resume` continues from the one there and
// leaves the same metric rows and summaries as the uninterrupted run (timings aside), from
// whichever moment the earlier attempt stopped at: its final checkpoint included, or part
// of the way through the final evaluation. The training-step summaries (train/loss,
// train/moe/*) are the rows logged at the last step; train/seconds adds up every attempt.
MetricValues train_and_evaluate(const RunSpec& run, Task& task, TaskModel& model,
                                MetricLog& log, torch::Device device, bool resume = false,
                                TrainingHooks* hooks = nullptr);

}  // namespace moelab
