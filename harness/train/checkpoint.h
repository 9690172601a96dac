// Training checkpoints: model parameters and buffers, optimizer state and the number of
// completed steps in one LibTorch archive, written atomically (temporary file + rename) so a
// crash mid-write leaves the previous checkpoint intact. With the per-step RNG seeding of the
// trainer and the (seed, step)-determined data order, loading one continues a CPU run bit for
// bit.
#pragma once

#include <torch/torch.h>

#include <string>

#include "harness/config/config.h"

namespace moelab {

// results/checkpoints/<config hash>.pt (under config.checkpoint_dir).
std::string checkpoint_path(const RunConfig& config);
// The same, for a hash already at hand (computing one dumps the whole config).
std::string checkpoint_path(const std::string& checkpoint_dir, const std::string& config_hash);

void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, int64_t step);

// Restores model and optimizer in place; returns the number of completed steps.
int64_t load_checkpoint(const std::string& path, torch::nn::Module& model,
                        torch::optim::Optimizer& optimizer);

// Restores only the model (a frozen teacher, a dense parent); returns its step count.
int64_t load_model_weights(const std::string& path, torch::nn::Module& model);

// The number of completed steps recorded in a checkpoint, or -1 when there is none.
int64_t checkpoint_step(const std::string& path);

}  // namespace moelab
