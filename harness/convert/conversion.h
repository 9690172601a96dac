// Dense -> MoE conversion (docs/methods.md). A run with convert.method set (1) starts from its
// dense parent, a done run that the scheduler resolved before the run started
// (harness/sweep/dense_parent.h); (2) converts every FFN of model.moe.layers by the method's
// kind — splits its neurons into experts (MoEfication, DOT-MoE), upcycles it (upcycling.h) or
// prunes it (pruning.h) — and copies the rest of the parent's weights; (3) fine-tunes with KL
// distillation from the frozen parent, split layers in the masked-dense form (masked_dense.h);
// (4) exports the ordinary sparse MoE, which the final evaluation measures.
// Metrics: reconstruction error of each converted layer against its dense FFN (at conversion
// and after export), active-parameter fraction, retention of the parent's metrics.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/convert/masked_dense.h"
#include "harness/store/store.h"
#include "harness/train/run_spec.h"
#include "harness/train/trainer.h"
#include "tasks/task.h"
#include "tasks/task_metrics.h"

namespace moelab {

// The balanced split [H] (expert of each neuron) of the dense FFN (w1 [H, D], b1 [H]) by a
// heuristic method: random, weight_cluster or activation_cluster (`inputs` [N, D] are FFN
// inputs). dot_moe learns its split instead, optionally starting from one of these.
torch::Tensor heuristic_split(const std::string& method, const torch::Tensor& w1,
                              const torch::Tensor& b1, const torch::Tensor& inputs,
                              int64_t experts, int64_t kmeans_iters, uint64_t seed);

// Relative squared error ||y - dense||^2 / ||dense||^2 on x [N, D] of a split layer whose
// tokens each go to the k experts of largest output norm (the split's quality whatever the
// router); `split` [E*s]: the layer's neuron split (masked_dense.h).
double oracle_reconstruction_error(MoELayer layer, const torch::Tensor& split,
                                   torch::nn::Sequential dense, const torch::Tensor& x, int64_t k);

// "retention/SPLIT/METRIC": the share of the dense parent's quality a converted run keeps,
// for every val and test metric and every corruption suite's mean error the two share:
// moe / dense for a higher-is-better metric, dense / moe otherwise (the task's declaration).
MetricValues retention(const TaskMetrics& metrics, const std::map<std::string, double>& dense,
                       const MetricValues& converted);

class Conversion : public TrainingHooks {
 public:
  // Loads the dense parent's model (a done run) as the frozen teacher and captures
  // calibration inputs.
  Conversion(const RunSpec& run, const RunSpec& parent, Task& task, Store& store,
             torch::Device device);

  void before_training(TaskModel& model, MetricLog& log, bool resuming) override;
  std::vector<NamedTensor> extra_losses(const Batch& batch, const torch::Tensor& logits) override;
  void after_training(TaskModel& model) override;
  MetricValues summaries(TaskModel& model, const MetricValues& finals) override;

 private:
  // Puts every MoE layer in the masked-dense training form (forms_).
  void install_forms(TaskModel& model);
  void convert(TaskModel& model);
  void split_layer(MoELayer layer, size_t block);
  void upcycle_layer(MoELayer layer, size_t block);
  // "l{i}/{what}" per converted layer and their mean "{what}": the error of the converted FFN
  // as it routes ("recon_err", with `with_routed`) and, for splits, with the oracle's experts.
  MetricValues measure(TaskModel& model, const std::string& prefix, bool with_routed);
  // The converted FFN's output on the calibration inputs of `block`. [N, D]
  torch::Tensor converted_output(TaskModel& model, size_t block);

  RunConfig config_;
  ConversionKind kind_;
  std::vector<int64_t> blocks_;  // the converted blocks (model.moe.layers)
  int64_t parent_run_id_;
  Store& store_;
  int64_t run_id_;
  torch::Device device_;
  std::shared_ptr<TaskModel> teacher_;
  std::vector<torch::Tensor> calibration_;  // per block: the parent's FFN inputs [N, D]
  MetricValues at_conversion_;
  std::vector<MaskedDense> forms_;  // per block, empty for dense blocks; none once exported
};

}  // namespace moelab
