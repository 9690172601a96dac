// Training checkpoints: model parameters and buffers, optimizer state, the number of completed
// steps and the training time so far in one LibTorch archive, written atomically (serialised
// in memory, written and fsync'ed to a temporary file, renamed) so that a crash or a full disk
// mid-write leaves the previous checkpoint intact and no temporary file behind. With the per-step RNG seeding of the
// trainer and the (seed, step)-determined data order, loading one continues a CPU run bit for
// bit.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <string>


namespace moelab {

// <checkpoint_dir>/<config hash>.pt (a run's is in its RunSpec, run_spec.h).
std::string checkpoint_path(const std::string& checkpoint_dir, const std::string& config_hash);

// Where training stands at a checkpoint.
struct TrainingProgress {
  int64_t step = 0;             // completed steps
  double train_seconds = 0.0;   // training time over all attempts up to `step`
  // The work of those steps (harness/model/flops.h): NaN when the checkpoint predates its
  // recording, so that a run resumed from one reports its compute as unknown, not too low.
  double flops = 0.0;
  double tokens = 0.0;  // tokens the backbone processed in training
  // With train.budget: the run's cost in the budget's unit when the learning-rate decay
  // began (after warm-up); NaN before that, and without a budget.
  double decay_start = std::nan("");
};

// Throws Error naming the path when the file cannot be written (full disk, permissions).
void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, const TrainingProgress& progress);

// Restores model and optimizer in place; returns where training stood.
TrainingProgress load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer);

// Restores only the model (a frozen teacher, a dense parent); returns its step count.
int64_t load_model_weights(const std::string& path, torch::nn::Module& model);

// The number of completed steps recorded in a checkpoint, or -1 when there is none.
int64_t checkpoint_step(const std::string& path);

}  // namespace moelab
