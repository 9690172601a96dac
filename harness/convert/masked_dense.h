// The masked-dense training form of a converted layer (DOT-MoE §5.3), installed on the MoE
// layer by the conversion: the experts' E*s neurons run as one dense FFN whose hidden units
// are masked per token by R_STE M_STE^T, R_STE = one-hot(router's top-k) + (P - stopgrad P)
// and M the neuron split (fixed: neuron e*s+j in expert e; learned: from affinities, see
// learned_split). Exactly the MoE's output, with the router's gradient reaching every expert.
// export_split() turns the layer into the ordinary sparse MoE.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"

namespace moelab {

struct MaskedDenseOptions {
  bool learn_split = false;     // dot_moe: affinities [E*s, E] are parameters
  double tau_start = 1.0, tau_end = 0.1;
  int64_t anneal_steps = 0;     // tau falls linearly from tau_start to tau_end over these
  int64_t sinkhorn_iters = 30;
  double affinity_std = 0.01;
  double affinity_scale = 1.0;  // affinities = scale x parameter: scale x the step Adam takes
  bool unrolled = false;        // differentiate through the Sinkhorn iterations

  static MaskedDenseOptions from(const RunConfig& config);
  double tau(int64_t step) const;
};

class MaskedDenseImpl : public TrainingForm {
 public:
  // Learned split: affinities drawn from N(0, affinity_std^2) with LibTorch's generator.
  MaskedDenseImpl(int64_t experts, int64_t expert_hidden, const MaskedDenseOptions& options);

  // x [T, D] -> y [T, D]: needs a token-choice route with probabilities (dot_moe).
  FormOutput combine(const torch::Tensor& x, const RouteResult& route, const RouteContext& ctx,
                     const ExpertWeights& experts) override;

  // Learned split: adds `margin` to the affinity of each neuron's expert in `assignment` [H],
  // so that the split starts there.
  void seed_affinity(const torch::Tensor& assignment, double margin);
  // The current neuron split [E*s] int64 over the stored neuron order (learned: rounded at
  // tau_end, the export temperature).
  torch::Tensor split() const;

 private:
  torch::Tensor affinities() const { return affinity_ * options_.affinity_scale; }  // [E*s, E]

  int64_t experts_, expert_hidden_;
  MaskedDenseOptions options_;
  torch::Tensor affinity_;  // [E*s, E] / affinity_scale, with options_.learn_split
};
TORCH_MODULE(MaskedDense);

// Installs a masked-dense form on `layer` (on the layer's device) and returns it.
MaskedDense install_masked_dense(MoELayerImpl& layer, const MaskedDenseOptions& options);

// Loads a dense FFN (w1 [H, D], b1 [H], w2 [D, H], b2 [D], torch Linear layout) into the
// layer's experts with its neurons in `order` [H] (expert e gets order[e*s .. e*s+s-1]); each
// expert's output bias is b2 / k, so the k chosen experts add b2 once.
void load_dense(MoELayerImpl& layer, const torch::Tensor& w1, const torch::Tensor& b1,
                const torch::Tensor& w2, const torch::Tensor& b2, const torch::Tensor& order,
                int64_t k);

// Lays the experts' neurons out by form.split() and removes the form: the ordinary sparse MoE.
void export_split(MoELayerImpl& layer, const MaskedDenseImpl& form);

// Outputs of every expert on x [T, D] with the neurons grouped by `split` [E*s] (the
// expert-major identity split once exported), each including its b_out: [E, T, D].
torch::Tensor all_expert_outputs(const MoELayerImpl& layer, const torch::Tensor& x,
                                 const torch::Tensor& split);

// The identity split of an exported (or never masked) layer: neuron e*s+j in expert e. [E*s]
torch::Tensor contiguous_split(const MoELayerImpl& layer);

}  // namespace moelab
