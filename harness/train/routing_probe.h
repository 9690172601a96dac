// The routing probe (docs/methods.md, "Specialisation, collapse and routing traces"): a fixed
// set of eval.probe_examples val examples, chosen by the run seed (Task::probe_batch), that the
// trainer routes at the end of training and, with train.trace_every, at step 0 and every that
// many steps. From each probe forward it logs, under split "probe", per MoE layer
// ("moe/l<block>/<name>") and as the mean over the layers ("moe/<name>"):
//   spec_nmi             NMI between the experts a token chose and the label it predicts
//   expert_cosine        mean pairwise cosine of the FFN experts' outputs on the probe tokens
//   routing_fluctuation  share of probe tokens whose selected set changed since the last
//                        traced step (traces on)
// With traces on it writes every token's selected experts and gates per layer to files in the
// run's trace folder (named by its config hash, beside its checkpoint) and logs
// "moe/l<block>/trace_tokens", the rows by which `moelab trace` finds them.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

#include "harness/train/run_spec.h"
#include "harness/train/trainer.h"

namespace moelab {

// The run's trace folder: <checkpoint_dir>/<config hash>.trace
std::string trace_dir(const std::string& checkpoint_dir, const std::string& config_hash);

// One traced layer at one step. Row t is probe token t (row-major [example, position]).
struct LayerTrace {
  torch::Tensor experts;  // [T, S] int64, ascending per row, -1 where a token chose fewer
  torch::Tensor gates;    // [T, S] float32, the combine weight of each selected expert (0 at -1)
  torch::Tensor labels;   // [T] int64, the label each token's example predicts
};

// Reads what the probe wrote for (step, layer) in `dir`; ConfigError naming the file when it
// is missing or malformed.
LayerTrace read_layer_trace(const std::string& dir, int64_t step, int64_t layer);

class RoutingProbe {
 public:
  RoutingProbe(const RunSpec& run, Task& task, MetricLog& log, torch::Device device);

  bool tracing() const { return trace_every_ > 0; }
  // Whether training step `step` is traced (the final step is probed by the end's call).
  bool due(int64_t step) const { return tracing() && step % trace_every_ == 0; }

  // Before training: a fresh run starts its trace folder over; a resumed one drops the traces
  // after its checkpoint (the metric rows of those steps are gone too).
  void start(bool resuming, int64_t resumed_step);

  // Routes the probe examples with the model as it is at `step` (eval mode, no gradients),
  // logs the measures and, when tracing, writes the traces. Returns the rows as summaries
  // ("probe/moe/...").
  MetricValues measure(TaskModel& model, int64_t step);

 private:
  // The label of every probe token: the example's target, repeated over an image's patches.
  torch::Tensor token_labels(int64_t tokens) const;
  void write_trace(int64_t step, const LayerProbe& probe, const torch::Tensor& experts);
  // The latest step before `step` with traces in the folder (the fluctuation's reference).
  std::optional<int64_t> last_traced_before(int64_t step) const;

  const RunConfig& config_;
  MetricLog& log_;
  torch::Device device_;
  int64_t trace_every_;
  std::string dir_;
  Batch batch_;
};

}  // namespace moelab
