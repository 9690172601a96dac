// The task interface: a task owns its data, builds its model around the shared transformer
// backbone (and so around the configured router), serves training batches in a
// seed-determined order, and evaluates its metrics on named splits.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "harness/config/config.h"
#include "harness/model/transformer.h"

namespace moelab {

struct Batch {
  torch::Tensor input;   // task-specific, on the CPU as served
  torch::Tensor target;
};

using MetricValues = std::vector<std::pair<std::string, double>>;

class TaskModel : public torch::nn::Module {
 public:
  // One row of class logits per prediction of the batch: [N, C] (an image, a next token).
  virtual torch::Tensor predict(const Batch& batch, const RouteContext& ctx) = 0;
  virtual Transformer backbone() = 0;
};

// The run's backbone: the model config, routers built by the registry from the run's router
// choice (seeded by the run seed, one per MoE block), and for convert.method = prune dense
// FFNs of pruned_ffn_hidden neurons in the blocks of model.moe.layers.
Transformer backbone_for(const RunConfig& config, bool causal);

// Mean cross-entropy of predict()'s logits [N, C] against the batch targets (any shape with
// N elements). Router aux losses are added by the trainer.
inline torch::Tensor task_loss(const torch::Tensor& logits, const Batch& batch) {
  return torch::nn::functional::cross_entropy(logits, batch.target.reshape({-1}));
}

class Task {
 public:
  virtual ~Task() = default;
  virtual std::shared_ptr<TaskModel> build_model(const RunConfig& config) = 0;
  // Batch number `step` (0-based) of the run's data order; depends only on (seed, step).
  virtual Batch train_batch(int64_t step, int64_t batch_size) = 0;
  // The routing probe's examples (harness/train/routing_probe.h): `count` examples of the val
  // split (fewer when it has fewer) chosen by the run seed alone, so every router and every
  // call gets the same ones; targets as in train batches.
  virtual Batch probe_batch(int64_t count) = 0;
  // Metrics on a split ("val", "test", ...), model in eval mode, no gradients.
  virtual MetricValues evaluate(TaskModel& model, const std::string& split,
                                const RunConfig& config, torch::Device device) = 0;
  // Splits evaluated periodically during training and at the end.
  virtual std::vector<std::string> periodic_splits() const { return {"val"}; }
  virtual std::vector<std::string> final_splits() const { return {"val", "test"}; }
  // Summaries computed from the final ones ("split/metric" -> value), e.g. the mean error
  // over a corruption suite.
  virtual MetricValues derived_summaries(const MetricValues& /*finals*/) const { return {}; }
  // Every data file the task read (hashed into the run's provenance by the runner).
  virtual std::vector<std::string> data_paths() const { return {}; }
};

}  // namespace moelab
